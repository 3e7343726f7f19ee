"""The one rule for names a user chooses: endpoints, datasets, models, pipelines, experiments, service
principals, schedules. Checked at every entry point (CLI options, YAML, REST bodies, pipeline step
settings) before a name reaches a path, a row or a process argument.

A name is 1 to 64 characters: a letter or digit, then letters, digits, `-`, `_` or `.`. That keeps it one
path component (no `/`, no `..`, no leading dot or dash), printable, and within what Azure ML accepts for
asset names.
"""

from __future__ import annotations

import re

from opml.errors import OpmlError

MAX_LEN = 64
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
RULE = "1-64 characters: a letter or digit, then letters, digits, '-', '_' or '.'"


def is_name(value: object) -> bool:
    """Whether `value` is a valid name (any type accepted, so REST bodies can be checked as they come)."""
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def check_name(value: object, kind: str = "name") -> str:
    """`value` if it is a valid `kind` name, else an OpmlError naming the problem and the rule."""
    if is_name(value):
        return value  # type: ignore[return-value]
    shown = repr(value) if not isinstance(value, str) or len(value) <= MAX_LEN else repr(value[:MAX_LEN]) + "..."
    raise OpmlError(f"invalid {kind} name {shown}", f"use {RULE}")
