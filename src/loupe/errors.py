"""Typed errors of the core. Each carries a message a user can act on; the service maps kinds to HTTP."""

from __future__ import annotations


class LoupeError(Exception):
    """Base of every error the core raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(LoupeError):
    """The caller asked for something malformed (bad id, bad option, bad page)."""


class NotFound(LoupeError):
    """A named app, input, concept, model or version does not exist (in this app)."""


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


class BackboneUnavailable(LoupeError):
    """The backbone an app is pinned to cannot be loaded here (unknown id, weights missing)."""


class CapabilityMissing(InvalidArgument):
    """The app's backbone cannot do what was asked (e.g. text search without a text tower)."""
