"""Records kept in LMDB, msgspec-encoded. Adding a field with a default keeps old records readable."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from loupe.errors import TrainFailure
from loupe.learning.values import BlendParams, ConceptThreshold, Evaluation

__all__ = ["BlendParams", "ConceptThreshold", "Evaluation"]  # kept with the records that hold them


class VersionStatus(StrEnum):
    UNTRAINED = "untrained"
    QUEUED = "queued"
    TRAINING = "training"
    TRAINED = "trained"
    FAILED = "failed"


class App(msgspec.Struct, kw_only=True):
    id: str
    backbone: str
    created_at: float
    # Input sequence numbers are never reused: they are the vector-index ids and the list order.
    next_seq: int = 1
    # Bumped by every write to the app's inputs or labels, so a process can tell that another one
    # (e.g. `loupe import` next to `loupe serve`) changed what its in-memory caches mirror.
    generation: int = 0
    # Runtime/precision of what embedded the app's images ("openvino/bf16", "torch/fp32", ...); more
    # than one means its vectors come from several (each validated against the torch fp32 reference).
    embedders: list[str] = []
    # Bumped by every write to the app's models or versions, so a server notices a model that another
    # process (e.g. `loupe models train`) created, trained or deleted, and drops what it cached of them.
    model_generation: int = 0


class GeoPoint(msgspec.Struct, frozen=True):
    longitude: float
    latitude: float


class BoundingBox(msgspec.Struct, frozen=True):
    """Fractions of the image's height (rows) and width (cols), as Clarifai's regions."""

    top_row: float
    left_col: float
    bottom_row: float
    right_col: float


class RegionConcept(msgspec.Struct, frozen=True):
    id: str
    value: float = 1.0


class Region(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    box: BoundingBox
    concepts: list[RegionConcept] = []


class Input(msgspec.Struct, kw_only=True):
    id: str
    seq: int
    sha256: str
    source: str = ""
    metadata: dict[str, Any] = {}
    concepts: list[str] = []
    not_concepts: list[str] = []
    created_at: float
    width: int = 0
    height: int = 0
    geo: GeoPoint | None = None
    regions: list[Region] = []
    # The crop ([top, left, bottom, right] fractions) the client asked for when adding: the stored image
    # is the cropped one; the crop is kept to echo it, as Clarifai does.
    crop: list[float] = []


class Concept(msgspec.Struct, kw_only=True):
    id: str
    name: str
    created_at: float


class Serving(StrEnum):
    """Which version answers a prediction that names none."""

    LATEST = "latest"  # the newest trained one (Clarifai's behaviour, the default)
    PUBLISHED = "published"  # the one published; new versions are candidates until published


class Publication(msgspec.Struct, frozen=True, kw_only=True):
    version_id: str  # published ("" : unpublished)
    previous: str  # what was published before ("" : nothing)
    by: str  # the actor, as the audit trail names it
    at: float
    rollback: bool = False


MAX_PUBLICATIONS = 50  # kept per model, newest last
DEFAULT_TARGET_PRECISION = 0.9


class Model(msgspec.Struct, kw_only=True):
    id: str
    name: str
    concept_ids: list[str] = []
    mutually_exclusive: bool = False
    # True: only inputs labeled with the model's concepts train it. False: inputs labeled with none
    # of them serve as negatives too.
    closed_environment: bool = False
    # Retrain in the background after label edits (debounced), once the model has been trained.
    auto_retrain: bool = True
    created_at: float
    next_version: int = 1
    # New on every create: a version records the incarnation it was started for, so a train still
    # running when its model was deleted (and the id re-used) cannot write into the new model.
    incarnation: str = ""
    # Clarifai's output_config.hyper_params: stored and echoed (Loupe's trainer chooses its own).
    hyper_params: dict[str, Any] = {}
    serving: Serving = Serving.LATEST
    published: str = ""  # the published version's id (Serving.PUBLISHED)
    publications: list[Publication] = []
    # The precision each concept's threshold is chosen for (per concept, else the model's).
    target_precision: float = DEFAULT_TARGET_PRECISION
    concept_precision: dict[str, float] = {}


class ModelVersion(msgspec.Struct, kw_only=True):
    id: str
    seq: int
    model_id: str
    created_at: float
    status: VersionStatus
    detail: str = ""
    failure: TrainFailure = TrainFailure.NONE  # maps to API codes
    concept_ids: list[str] = []
    mutually_exclusive: bool = False
    closed_environment: bool = False
    model_incarnation: str = ""  # Model.incarnation when this version was made
    backbone: str = ""
    dim: int = 0
    weights: bytes = b""  # float32 [len(concept_ids), dim]
    bias: bytes = b""  # float32 [len(concept_ids)]
    blend: BlendParams | None = None
    l2: float = 0.0
    train_size: int = 0
    positives: dict[str, int] = {}
    negatives: dict[str, int] = {}
    train_seconds: float = 0.0
    trained_at: float = 0.0
    # Self-training from the app's unlabeled inputs: how many it saw, how many became pseudo-labels
    # (0 when validation said they would not help), at what weight and strength (loupe.semi_supervised).
    unlabeled_seen: int = 0
    # Examples the head was fitted on, when fewer than train_size (a stratified sample of a huge set).
    sampled_examples: int = 0
    pseudo_labels: int = 0
    pseudo_label_weight: float = 0.0
    self_training_strength: int = 0
    # What this version made of the inputs with no label for it (loupe.training_set.UnlabeledRule) and
    # why; "" on versions from before the rule was chosen (open models then took them as negatives).
    unlabeled_rule: str = ""
    unlabeled_reason: str = ""
    evaluation: Evaluation | None = None
    thresholds: list[ConceptThreshold] = []  # per concept, in concept order ([] before thresholds existed)
    # A prediction whose nearest labeled example is less similar than this is out of scope ("unsure"):
    # the 5th percentile of each labeled example's similarity to its nearest other one. 0: not measured.
    scope_similarity: float = 0.0


class TrainLease(msgspec.Struct, kw_only=True):
    """Who is training a model now: server workers share one data dir, and a model trains in one at a time."""

    version_id: str
    host: str
    pid: int
    token: str  # this process's random token: a reused pid is not mistaken for the holder
    acquired_at: float


class JobKind(StrEnum):
    TRAIN = "train"
    EVALUATE = "evaluate"
    ADVICE = "advice"
    SUGGESTIONS = "suggestions"


class Owner(msgspec.Struct, frozen=True):
    """A process that queues and runs jobs: pid on a host, and a random token so a reused pid is not
    mistaken for it."""

    host: str
    pid: int
    token: str


class Job(msgspec.Struct, kw_only=True):
    """A train, evaluation or quality job queued or running in some process over this data dir: counted
    against the app's cap in every process, and failed by any process that finds its owner dead."""

    id: str
    kind: JobKind
    model_id: str
    version_id: str = ""
    owner: Owner
    created_at: float


class DriftDay(msgspec.Struct, frozen=True, kw_only=True):
    """One model's predictions on one UTC day (loupe.models.drift)."""

    day: str  # YYYY-MM-DD
    predictions: int = 0
    out_of_scope: int = 0  # nearest labeled example below the version's scope similarity
    unsure: int = 0  # in scope, but no concept met its threshold
    nearest_sum: float = 0.0  # similarities of the nearest labeled example, summed (for the mean)
    nearest_count: int = 0

    def plus(self, other: DriftDay) -> DriftDay:
        return DriftDay(day=self.day, predictions=self.predictions + other.predictions,
                        out_of_scope=self.out_of_scope + other.out_of_scope, unsure=self.unsure + other.unsure,
                        nearest_sum=self.nearest_sum + other.nearest_sum,
                        nearest_count=self.nearest_count + other.nearest_count)


class OutOfScope(msgspec.Struct, frozen=True, kw_only=True):
    """A predicted image unlike every labeled example: worth labeling."""

    sha256: str = ""  # an uploaded image (served for an hour at /v2/loupe/recent-images/{sha256})
    input_id: str = ""  # or a stored input
    url: str = ""  # or the URL it came from
    nearest: float | None = None
    at: float = 0.0


# ---- people, keys and the audit trail ----------------------------------------------------------------

class Role(StrEnum):
    """A user's role in one app (docs/security.md has the table of what each may do)."""

    OWNER = "owner"  # everything, incl. members and deleting the app
    ADMIN = "admin"  # models, versions, workflows, keys, deletes of inputs, the audit log
    LABELER = "labeler"  # add inputs, label, create models and train them; no deletes, no keys
    VIEWER = "viewer"  # read, predict, search


class Scope(StrEnum):
    """What an app key may do: the role it acts with in its one app."""

    ALL = "all"  # as an admin of the app
    LABEL = "label"  # as a labeler
    PREDICT = "predict"  # as a viewer: predict, search and read
    # A server admin's personal access token that reads /metrics and nothing else: a scraper's credential.
    METRICS = "metrics"


class KeyRecord(msgspec.Struct, kw_only=True):
    """An app key (app_id set) or a personal access token (user set, app_id empty); stored by its hash."""

    digest: str  # sha256 of the key
    app_id: str = ""
    scope: Scope = Scope.ALL
    created_at: float
    hint: str  # the key's first characters, to tell keys apart in listings
    name: str = ""
    created_by: str = ""  # who made it: "user:NAME", "key:ID" or "cli"
    user: str = ""  # a personal access token acts as this user
    last_used_at: float = 0.0  # written at most once a minute per key

    @property
    def id(self) -> str:
        """A stable public id (the hash's first 16 hex digits say nothing of the key)."""
        return self.digest[:16]


class User(msgspec.Struct, kw_only=True):
    name: str
    password_hash: str  # argon2id, PHC string
    admin: bool = False  # a server admin sees and manages every app
    created_at: float
    password_changed_at: float = 0.0


class Member(msgspec.Struct, kw_only=True):
    app_id: str
    user: str
    role: Role
    added_at: float
    added_by: str = ""


class Session(msgspec.Struct, kw_only=True):
    """A signed-in browser: stored by the cookie's hash, revocable, with idle and absolute expiry."""

    digest: str
    user: str
    csrf_token: str
    created_at: float
    last_seen_at: float
    address: str = ""


class ActorKind(StrEnum):
    USER = "user"  # a person: a session or a personal access token
    KEY = "key"  # an app key
    CLI = "cli"  # a command on the server
    SYSTEM = "system"  # Loupe itself (a background train finishing, an automatic retrain)


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    kind: ActorKind
    id: str = ""  # user name or key id
    via: str = ""  # for a user: "session" or the token's id


SYSTEM = Actor(kind=ActorKind.SYSTEM)
CLI = Actor(kind=ActorKind.CLI)


class Resource(StrEnum):
    APP = "app"
    INPUT = "input"
    CONCEPT = "concept"
    MODEL = "model"
    VERSION = "version"
    WORKFLOW = "workflow"
    KEY = "key"
    MEMBER = "member"
    FEEDBACK = "feedback"
    DISMISSAL = "dismissal"


class AuditOp(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Labels(msgspec.Struct, frozen=True):
    concepts: list[str] = []
    not_concepts: list[str] = []


class Change(msgspec.Struct, frozen=True, kw_only=True):
    op: AuditOp
    resource: Resource
    id: str
    before: Labels | None = None  # an input's labels before and after (create: after only; delete: before)
    after: Labels | None = None
    detail: str = ""  # e.g. a version's status, a member's role


class AuditEntry(msgspec.Struct, kw_only=True):
    """One write transaction's changes to one app, stored in that transaction: no write without its
    entry, no entry without its write."""

    seq: int
    at: float
    actor: Actor
    changes: list[Change]  # the first MAX_AUDIT_CHANGES of them
    counts: dict[str, int] = {}  # every change, as "resource.op" -> count
