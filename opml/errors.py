"""User-facing errors: one line saying what is wrong and how to fix it."""

from __future__ import annotations


class OpmlError(Exception):
    """A failure the user can cause and fix. The CLI prints it as one line and exits 2."""

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        text = " ".join(self.message.split())
        if self.fix:
            text += f"; {self.fix}"
        return text


class ConfigError(OpmlError):
    """A YAML config file is missing, malformed or holds a bad value."""


class WorkspaceError(OpmlError):
    """The workspace is missing, unreadable or from a newer opml."""


class AuthError(OpmlError):
    """Bad credentials or token."""


class DataError(OpmlError):
    """A dataset cannot be read, downloaded or validated."""


class NotFoundError(OpmlError):
    """A named object (dataset, identity, run, model) does not exist."""
