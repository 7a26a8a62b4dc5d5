"""Configuration: one immutable struct, built from defaults, a TOML file, environment (LOUPE_*) and CLI flags."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_type_hints

import msgspec

from loupe.errors import InvalidArgument


class ImageLimits(msgspec.Struct, frozen=True):
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


class VideoLimits(msgspec.Struct, frozen=True):
    """Video predictions: one frame every sample_ms is embedded; everything a client can send is bounded."""

    max_bytes: int = 48 * 1024 * 1024  # what base64 in a 64 MB body can carry
    max_seconds: float = 600.0  # by the container's header, and again by decoded timestamps
    max_frames: int = 600  # sampled frames per video
    max_pixels: int = 8_294_400  # per frame (4K UHD)
    decode_seconds: float = 60.0  # wall time to decode one video
    min_sample_ms: int = 100


class AccountLimits(msgspec.Struct, frozen=True):
    """Sessions of the page, sign-in throttling and the audit trail's retention."""

    session_idle_seconds: float = 8 * 3600.0  # a session unused this long is gone
    session_max_seconds: float = 7 * 86400.0  # and any session this old, used or not
    # Failed sign-ins within the window: more than these per user name or per address get 429.
    login_failures_per_user: int = 5
    login_failures_per_address: int = 20
    login_window_seconds: float = 900.0
    audit_max_entries: int = 100_000  # per app; the oldest go first
    audit_max_age_days: float = 365.0
    # Secure cookies: "auto" sets Secure when public_url is https (or the request came over https).
    cookie_secure: str = "auto"


class Config(msgspec.Struct, frozen=True):
    data_dir: Path = Path("loupe-data")
    # LMDB reserves address space, not disk: a large map costs nothing until used.
    lmdb_map_size: int = 64 * 1024**3
    torch_threads: int = max(1, os.cpu_count() or 1)
    embed_batch_size: int = 32
    # What runs the backbones: "openvino" (compiled once per backbone into DATA_DIR/compiled) or
    # "torch" (the reference). Precision "auto": bf16 where the CPU has native bf16, else f32.
    runtime: str = "openvino"
    precision: str = "auto"
    runtime_mode: str = "latency"  # OpenVINO's performance hint: "latency" or "throughput"
    backbone_idle_seconds: float = 1800.0  # a backbone unused this long is unloaded (not the default one)
    embed_concurrency: int = max(2, os.cpu_count() or 1)  # requests decoding + embedding new images at once
    decode_workers: int = max(2, os.cpu_count() or 1)  # threads decoding and preprocessing images
    # Exact search streams every vector per query (66 MB at 12.9k x 1280 fp32: ~5 ms, memory-bound);
    # above this many vectors an IVF index scans about a quarter of them.
    approx_index_threshold: int = 10_000
    # Above this many an app's index keeps 128-byte codes instead of vectors (IVF-PQ, ~150 MB per million
    # inputs instead of 5 GB) and re-ranks its candidates with the vectors in LMDB.
    compressed_index_threshold: int = 100_000
    images: ImageLimits = ImageLimits()
    videos: VideoLimits = VideoLimits()
    accounts: AccountLimits = AccountLimits()
    # Trains with at most this many examples finish within the request; larger ones are queued.
    sync_train_max_examples: int = 20_000
    max_concurrent_trainings: int = 1
    # Trains and evaluations queued or running: per app (more get 429), and in all (readiness turns false).
    training_queue_per_app: int = 4
    training_queue_total: int = 64
    # After label edits, models that asked for it retrain once the labels have been quiet this long.
    auto_retrain: bool = True
    # Trains may learn from the app's unlabeled inputs too (self-training, used only when validation on
    # the labeled inputs says it helps; loupe.semi_supervised).
    semi_supervised: bool = True
    retrain_delay_seconds: float = 2.0
    # Versions kept per model: the newest this many, plus the newest trained one, any being trained or
    # evaluated, and any a workflow names; older ones go after each train (~52 kB each at 10 concepts,
    # and every debounced auto-retrain adds one). 0 keeps every version. `loupe models prune` applies it.
    keep_versions: int = 20
    # URL inputs: hosts that may resolve to private/loopback addresses (empty: none may).
    url_allow_hosts: tuple[str, ...] = ()
    # A search (predicted-concept filters score every input once per model version and labels) stops here.
    search_deadline_seconds: float = 10.0
    url_timeout_seconds: float = 10.0  # one URL, connect to last byte, redirects included
    url_request_seconds: float = 30.0  # all the URLs of one request together
    url_max_concurrent: int = 8  # URL downloads in flight; beyond, requests get 429 (a stalled host holds a slot)
    # Where clients reach this server (image URLs in answers are built from it, not from Host headers);
    # empty: `loupe serve` uses its bind address.
    public_url: str = ""
    # Feedback (Clarifai's feedback routes; any key of the app may send it): per record and per app.
    max_feedback_bytes: int = 64 * 1024
    max_feedback_per_app: int = 10_000
    # Local weight files per backbone id (e.g. {"clip-vit-b-32": "/models/clip.pt"}).
    weights: dict[str, str] = {}
    clip_pretrained_tag: str = "laion2b_s34b_b79k"

    @property
    def lmdb_path(self) -> Path:
        return Path(self.data_dir) / "store.lmdb"

    @property
    def compiled_dir(self) -> Path:
        return Path(self.data_dir) / "compiled"

    @property
    def index_dir(self) -> Path:
        return Path(self.data_dir) / "indexes"


def parse_hosts(text: str) -> tuple[str, ...]:
    """A comma-separated host list (`--url-allow-hosts`, LOUPE_URL_ALLOW_HOSTS), lower-cased."""
    return tuple(h.strip().lower() for h in text.split(",") if h.strip())


ENV_PREFIX = "LOUPE_"
# Kept from before every field was read by its name: LOUPE_CLIP_WEIGHTS is the CLIP weights file.
CLIP_WEIGHTS_ENV = "LOUPE_CLIP_WEIGHTS"


def env_name(*path: str) -> str:
    """The variable a field is read from: LOUPE_ + its path in upper case (LOUPE_IMAGES_MAX_BYTES)."""
    return ENV_PREFIX + "_".join(path).upper()


def _from_text(text: str, kind: Any, name: str) -> Any:
    """A variable's text as the field's type: numbers and booleans as written, tuples comma-separated,
    dicts as JSON."""
    try:
        if kind is Path:
            return Path(text)
        origin = getattr(kind, "__origin__", None)
        if origin is tuple:
            return msgspec.convert([part.strip() for part in text.split(",") if part.strip()], kind, strict=False)
        if origin is dict:
            return msgspec.json.decode(text, type=kind)
        return msgspec.convert(text, kind, strict=False)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidArgument(f"{name}={text!r} is not a valid {getattr(kind, '__name__', kind)} ({exc})") from None


Path_ = tuple[str, ...]  # a field's path: ("images", "max_bytes")


class Setting(msgspec.Struct, frozen=True):
    path: str  # dotted: images.max_bytes
    value: Any
    source: str  # default | file | env | flag


class ResolvedConfig(msgspec.Struct, frozen=True):
    config: Config
    settings: list[Setting]  # every field, with where its value came from


def _fields(cls: type[msgspec.Struct], path: Path_ = ()) -> dict[Path_, Any]:
    """Every leaf field of the Config definition, by path, with its type (nested limits included)."""
    out: dict[Path_, Any] = {}
    hints = get_type_hints(cls)
    for field in msgspec.structs.fields(cls):
        kind = hints[field.name]
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            out.update(_fields(kind, (*path, field.name)))
        else:
            out[(*path, field.name)] = kind
    return out


FIELDS = _fields(Config)


def _from_env(env: Mapping[str, str]) -> dict[Path_, Any]:
    found = {path: _from_text(env[env_name(*path)], kind, env_name(*path))
             for path, kind in FIELDS.items() if env_name(*path) in env}
    if CLIP_WEIGHTS_ENV in env:
        found[("weights",)] = {**found.get(("weights",), {}), "clip-vit-b-32": env[CLIP_WEIGHTS_ENV]}
    return found


def _from_file(file: Path) -> dict[Path_, Any]:
    """A TOML file whose keys are Config's fields (nested limits as tables: [images] max_bytes = ...).
    Unknown keys and values that do not fit their field are refused, naming the key."""
    import tomllib

    try:
        data = tomllib.loads(Path(file).read_text())
    except FileNotFoundError:
        raise InvalidArgument(f"config file {file} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"config file {file} is not valid TOML: {exc}") from None
    found: dict[Path_, Any] = {}

    def walk(table: dict[str, Any], path: Path_) -> None:
        for key, value in table.items():
            here = (*path, key)
            if here in FIELDS:
                kind = FIELDS[here]
                try:
                    found[here] = Path(value) if kind is Path else msgspec.convert(value, kind, strict=False)
                except (msgspec.ValidationError, TypeError) as exc:
                    raise InvalidArgument(f"{file}: {'.'.join(here)} = {value!r} is not valid ({exc})") from None
            elif isinstance(value, dict) and any(p[:len(here)] == here for p in FIELDS):
                walk(value, here)
            else:
                known = sorted({".".join(p) for p in FIELDS})
                raise InvalidArgument(f"{file}: unknown setting {'.'.join(here)!r} (known: {', '.join(known)})")

    walk(data, ())
    return found


def _build(values: dict[Path_, Any]) -> Config:
    def make(cls: type[msgspec.Struct], path: Path_) -> Any:
        hints = get_type_hints(cls)
        kwargs = {}
        for field in msgspec.structs.fields(cls):
            here, kind = (*path, field.name), hints[field.name]
            if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
                if any(p[:len(here)] == here for p in values):
                    kwargs[field.name] = make(kind, here)
            elif here in values:
                kwargs[field.name] = values[here]
        return cls(**kwargs)

    return make(Config, ())


def resolve_config(env: Mapping[str, str] | None = None, file: Path | str | None = None,
                   **overrides: object) -> ResolvedConfig:
    """Defaults, then the TOML file (`file`, else LOUPE_CONFIG), then LOUPE_* environment variables (every
    field, by its name: see `env_name`), then explicit overrides (flags; None means unset). A value that
    does not fit its field raises InvalidArgument naming it; so does an unknown key in the file."""
    env = os.environ if env is None else env
    file = file or env.get(ENV_PREFIX + "CONFIG") or None
    layers: list[tuple[str, dict[Path_, Any]]] = [
        ("file", _from_file(Path(file)) if file else {}), ("env", _from_env(env)),
        ("flag", {(k,): v for k, v in overrides.items() if v is not None})]
    values: dict[Path_, Any] = {}
    source: dict[Path_, str] = {}
    for name, layer in layers:
        values.update(layer)
        source.update(dict.fromkeys(layer, name))
    if ("url_allow_hosts",) in values:
        values[("url_allow_hosts",)] = parse_hosts(",".join(values[("url_allow_hosts",)]))
    if ("data_dir",) in values:
        values[("data_dir",)] = Path(str(values[("data_dir",)]))
    config = _build(values)

    def value_of(path: Path_) -> Any:
        item: Any = config
        for part in path:
            item = getattr(item, part)
        return item

    return ResolvedConfig(config, [Setting(".".join(p), value_of(p), source.get(p, "default")) for p in FIELDS])


def config_from_env(env: Mapping[str, str] | None = None, **overrides: object) -> Config:
    """The effective Config (see resolve_config)."""
    return resolve_config(env, None, **overrides).config
