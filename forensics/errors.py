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
