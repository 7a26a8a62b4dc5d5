"""Typed errors of the core, one tree. Each carries a message a user can act on plus structured fields
(resource, id, reason); the service maps them to HTTP by type, never by parsing the message."""

from __future__ import annotations


class LoupeError(Exception):
    """Base of every error the core raises on purpose."""

    def __init__(self, message: str, *, resource: str = "", id: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.resource = resource  # "input", "model", "concept", ... when the error is about one
        self.id = id
        self.reason = reason  # a short machine-readable cause, when there is one


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


class UrlFetchError(InvalidArgument):
    """An image URL could not be fetched (refused address, timeout, HTTP error, not an image)."""


class ModelNotTrained(InvalidArgument):
    """Prediction or evaluation asked of a model (or version) that is not trained."""


class TrainingFailed(LoupeError):
    """A train could not produce a version; `reason` is "no_data" or "no_positives" (API codes)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)

    @property
    def failure(self) -> str:
        return self.reason

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


class StorageFull(LoupeError):
    """The disk (or the store's map) is full: the write was not made; reads still work."""
