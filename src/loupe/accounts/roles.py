"""What each role may do. Every API route names the one permission it needs (service/auth.py refuses to
build a route table where one does not), so the table below is the whole access policy."""

from __future__ import annotations

from enum import StrEnum

from loupe.store.records import Role, Scope


class Permission(StrEnum):
    READ = "read"  # list and get, predict, search, run workflows, thumbnails
    LABEL = "label"  # add inputs, edit labels and concepts, create models, train, evaluate, feedback
    MANAGE = "manage"  # change or delete models, versions, workflows; delete inputs; keys; the audit log
    OWN = "own"  # members and roles; delete the app


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.LABELER: frozenset({Permission.READ, Permission.LABEL}),
    Role.ADMIN: frozenset({Permission.READ, Permission.LABEL, Permission.MANAGE}),
    Role.OWNER: frozenset(Permission),
}

# An app key acts in its app with this role ('all' keys did everything but members before roles existed).
SCOPE_ROLE: dict[Scope, Role] = {Scope.ALL: Role.ADMIN, Scope.LABEL: Role.LABELER, Scope.PREDICT: Role.VIEWER}


def allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]
