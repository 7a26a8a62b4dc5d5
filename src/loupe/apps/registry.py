"""Apps: create, list, delete (with everything they hold)."""

from __future__ import annotations

import time

import msgspec

from loupe.apps.context import AppContext
from loupe.backbones.registry import BACKBONE_IDS, DEFAULT_BACKBONE
from loupe.errors import Conflict, InvalidArgument
from loupe.ids import check_id
from loupe.store.records import CLI, Actor, App, Member, Role


class AppSummary(msgspec.Struct):
    app: App
    input_count: int
    concept_count: int


class Apps:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._store = context.store

    def create(self, app_id: str, backbone: str | None = None, *, owner: str = "", by: Actor = CLI) -> App:
        """A new app; `owner` (a user) becomes its first owner in the same transaction."""
        check_id("app", app_id)
        backbone = backbone or DEFAULT_BACKBONE
        if backbone not in BACKBONE_IDS:
            raise InvalidArgument(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONE_IDS)}")
        self._context.backbones.get(backbone)  # refuse an app whose backbone cannot be loaded here
        with self._store.write(by) as tx:
            if tx.get_app(app_id) is not None:
                raise Conflict(f"app {app_id!r} already exists")
            app = App(id=app_id, backbone=backbone, created_at=time.time())
            tx.put_app(app)
            tx.note_app_created(app_id)
            if owner:
                if tx.get_user(owner) is None:
                    raise InvalidArgument(f"no user {owner!r} to own the app")
                tx.put_member(Member(app_id=app_id, user=owner, role=Role.OWNER, added_at=app.created_at,
                                     added_by=by.id or by.kind.value))
        return app

    def get(self, app_id: str) -> App:
        """The app's record as stored (NotFound if none); the services sync their caches themselves."""
        return self._context.get(app_id)

    def summaries(self) -> list[AppSummary]:
        with self._store.read() as tx:
            return [AppSummary(app, tx.count_inputs(app.id), sum(1 for _ in tx.iter_concepts(app.id)))
                    for app in tx.list_apps()]

    def delete(self, app_id: str, *, by: Actor = CLI) -> None:
        """The app and everything it holds (keys, members and audit trail too), in one transaction;
        then its caches go."""
        self._context.sync(app_id)
        with self._context.indexes.lock(app_id), self._store.write(by) as tx:
            for record in list(tx.iter_inputs(app_id)):
                tx.delete_input(app_id, record)
            for concept in list(tx.iter_concepts(app_id)):
                tx.delete_concept(app_id, concept.id)
            for model in list(tx.iter_models(app_id)):
                tx.delete_model(app_id, model.id)
            tx.delete_feedback(app_id)
            tx.delete_dismissals(app_id)
            for workflow_id in tx.workflow_ids(app_id):
                tx.delete_workflow(app_id, workflow_id)
            tx.delete_app(app_id)
        self._context.forget(app_id)
