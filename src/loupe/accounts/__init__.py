"""People and their access: users, app membership and roles, sessions, keys, the audit trail."""
