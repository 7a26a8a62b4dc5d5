"""Typed errors of the core, one tree. Each carries a message a user can act on plus structured fields
(resource, id, reason); the service maps them to HTTP by type, never by parsing the message."""

from __future__ import annotations

import copy
from enum import StrEnum


class LoupeError(Exception):
    """Base of every error the core raises on purpose."""

    def __init__(self, message: str, *, resource: str = "", id: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.resource = resource  # "input", "model", "concept", ... when the error is about one
        self.id = id
        self.reason = reason  # a short machine-readable cause, when there is one
        self.plain = message  # the message without what it is about (see `about`)

    def about(self, who: str) -> LoupeError:
        """The same error, its message prefixed with what it is about (e.g. "input 3 (id)"); `plain`
        keeps the message alone, for reports that name the thing themselves."""
        named = copy.copy(self)
        named.message = f"{who}: {self.plain}"
        named.args = (named.message,)
        return named


class InvalidArgument(LoupeError):
    """The caller asked for something malformed (bad id, bad option, bad page)."""


class NotFound(LoupeError):
    """A named app, input, concept, model, version or workflow does not exist (in this app)."""

    def __init__(self, resource: str, id: str, message: str | None = None) -> None:
        super().__init__(message or f"{resource} {id!r} does not exist", resource=resource, id=id)


class Conflict(LoupeError):
    """The request collides with stored state (duplicate id, app already exists)."""


class ImageError(InvalidArgument):
    """The bytes given as an image cannot be used; the subclass says why."""


class NotAnImage(ImageError):
    pass


class UnsupportedFormat(ImageError):
    pass


class ImageTooLarge(ImageError):
    pass


class CorruptImage(ImageError):
    pass


class VideoError(InvalidArgument):
    """The bytes given as a video cannot be used (not a video, damaged, over a limit); says why."""


class FetchOutcome(StrEnum):
    """How a URL fetch ended (what `loupe_url_fetches_total` counts); a UrlFetchError carries one."""

    FETCHED = "fetched"
    REFUSED = "refused"  # malformed, not http(s), or resolving to a non-public address
    UNRESOLVED = "unresolved"
    TIMEOUT = "timeout"
    HTTP_ERROR = "http_error"  # an answer other than 200 (after redirects), or too many redirects
    NOT_MEDIA = "not_media"  # the answer is not an image (or video)
    TOO_LARGE = "too_large"
    FAILED = "failed"  # the connection failed
    BUSY = "busy"  # too many fetches in flight: not attempted


class UrlFetchError(InvalidArgument):
    """An image URL could not be fetched (refused address, timeout, HTTP error, not an image)."""

    def __init__(self, message: str, outcome: FetchOutcome = FetchOutcome.FAILED) -> None:
        super().__init__(message, reason=outcome)
        self.outcome = outcome


class ModelNotTrained(InvalidArgument):
    """Prediction or evaluation asked of a model (or version) that is not trained."""


class TrainFailure(StrEnum):
    """Why a version failed to train (the API maps each to its own status code)."""

    NONE = ""
    NO_DATA = "no_data"
    NO_POSITIVES = "no_positives"
    ERROR = "error"  # anything else: an interrupted train, a bug; the detail says what


class TrainingFailed(LoupeError):
    """A train could not produce a version for a reason the user can fix (`failure`)."""

    def __init__(self, failure: TrainFailure, message: str) -> None:
        super().__init__(message, reason=failure)
        self.failure = failure

    @property
    def detail(self) -> str:
        return self.message


class BackboneUnavailable(LoupeError):
    """The backbone an app is pinned to cannot be loaded here (unknown id, weights missing)."""


class CapabilityMissing(InvalidArgument):
    """The app's backbone cannot do what was asked (e.g. text search without a text tower)."""


class Busy(LoupeError):
    """Too much of this kind of work is already waiting; the client should retry after a while."""

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message, reason="busy")
        self.retry_after = retry_after


class QuotaExceeded(LoupeError):
    """An app holds as many of something (e.g. feedback records) as it may."""


class TooLong(LoupeError):
    """A request ran past its deadline and was stopped (it changed nothing)."""


class StoreTooNew(LoupeError):
    """The data dir's store was written by a newer Loupe (a higher schema): refused, not migrated."""


class StorageFull(LoupeError):
    """The disk (or the store's map) is full: the write was not made; reads still work."""


class Unauthenticated(LoupeError):
    """No credential, or one that is wrong, expired or revoked (401)."""


class Forbidden(LoupeError):
    """The caller is known but may not do this (403): a role without the permission, a missing CSRF token."""
