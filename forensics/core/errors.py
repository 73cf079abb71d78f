"""Errors that carry a one-line message meant for the person who supplied the input."""

from __future__ import annotations


class ForensicsError(Exception):
    """Base class: ``str(err)`` is one line that names the input and the problem."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class MediaError(ForensicsError):
    """An image or video could not be read, or breaks a limit."""


class DetectorError(ForensicsError):
    """A detector could not be found, loaded or run."""


class JobError(ForensicsError):
    """A background job could not be submitted, found, cancelled, resumed or deleted."""


class ArchiveError(ForensicsError):
    """An uploaded archive is unsafe (paths outside its folder, links, too large, too many files) or broken."""


class HubError(ForensicsError):
    """A Hugging Face Hub push or pull failed (offline, no token, refused weights, HTTP error)."""


class AccessError(ForensicsError):
    """An action that needs the admin credential was asked for without it."""
