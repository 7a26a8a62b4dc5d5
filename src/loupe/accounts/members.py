"""Who belongs to an app, with which role; a server admin acts as an owner of every app."""

from __future__ import annotations

import time

import msgspec

from loupe.errors import InvalidArgument, NotFound
from loupe.store import ReadTxn, Store
from loupe.store.records import CLI, Actor, App, Member, Role, User


class AppRole(msgspec.Struct):
    app: App
    role: Role
    input_count: int
    concept_count: int
    model_count: int


class Members:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, app_id: str, user: str, role: Role | str, *, by: Actor = CLI) -> Member:
        """Add a member, or change an existing member's role."""
        try:
            role = Role(role)
        except ValueError:
            raise InvalidArgument(f"role must be one of {', '.join(r.value for r in Role)}, got {role!r}") from None
        with self._store.write(by) as tx:
            if tx.get_app(app_id) is None:
                raise NotFound("app", app_id)
            if tx.get_user(user) is None:
                raise NotFound("user", user)
            old = tx.get_member(app_id, user)
            if old is not None and old.role is Role.OWNER and role is not Role.OWNER:
                self._keep_an_owner(tx, app_id, user)
            member = Member(app_id=app_id, user=user, role=role, added_at=time.time(),
                            added_by=by.id or by.kind.value)
            tx.put_member(member)
        return member

    @staticmethod
    def _keep_an_owner(tx: ReadTxn, app_id: str, leaving: str) -> None:
        if not any(m.role is Role.OWNER and m.user != leaving for m in tx.iter_members(app_id)):
            raise InvalidArgument(f"{leaving!r} is the last owner of app {app_id!r}: make someone else owner first")

    def of_app(self, app_id: str) -> list[Member]:
        with self._store.read() as tx:
            if tx.get_app(app_id) is None:
                raise NotFound("app", app_id)
            return sorted(tx.iter_members(app_id), key=lambda m: m.added_at)

    def remove(self, app_id: str, user: str, *, by: Actor = CLI) -> None:
        with self._store.write(by) as tx:
            member = tx.get_member(app_id, user)
            if member is None:
                raise NotFound("member", user, f"{user!r} is not a member of app {app_id!r}")
            if member.role is Role.OWNER:
                self._keep_an_owner(tx, app_id, user)
            tx.delete_member(app_id, user)

    def role_of(self, user: User, app_id: str) -> Role | None:
        """The user's role in the app (owner for a server admin), None when not a member or no app."""
        with self._store.read() as tx:
            if tx.get_app(app_id) is None:
                return None
            if user.admin:
                return Role.OWNER
            member = tx.get_member(app_id, user.name)
        return None if member is None else member.role

    def apps_of(self, user: User) -> list[AppRole]:
        """The apps the user may see (every app for a server admin), with counts, by app id."""
        with self._store.read() as tx:
            if user.admin:
                pairs = [(app, Role.OWNER) for app in tx.list_apps()]
            else:
                pairs = [(app, m.role) for m in tx.memberships(user.name) if (app := tx.get_app(m.app_id)) is not None]
            return sorted((AppRole(app, role, tx.count_inputs(app.id), sum(1 for _ in tx.iter_concepts(app.id)),
                                   sum(1 for _ in tx.iter_models(app.id))) for app, role in pairs),
                          key=lambda a: a.app.id)
