"""Recurrences (5-field cron, --every 5s/10m/1h/1d) and the scheduler's tick.

Policy (stated in `opml pipeline schedule --help` and the README):
- a fire that finds the schedule's previous run still going is skipped, and the skip is logged;
- fires missed while the control plane was down are coalesced into one catch-up run when it starts,
  then the schedule resumes at its next regular time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from opml.errors import OpmlError
from opml.naming import check_name
from opml.pipelines import registry
from opml.pipelines.registry import Schedule
from opml.pipelines.spec import resolve_parameters
from opml.workspace.workspace import Workspace

EVERY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 6))
ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
           "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
NAMES = {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10,
         "nov": 11, "dec": 12, "sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


def parse_every(text: str) -> float:
    m = EVERY_RE.match(text or "")
    if not m:
        raise OpmlError(f"invalid interval {text!r}", "write a number and a unit: 5s, 10m, 1h or 1d")
    seconds = float(m.group(1)) * UNITS[m.group(2)]
    if seconds < 1:
        raise OpmlError(f"interval {text!r} is shorter than 1 s")
    return seconds


class Cron:
    """A 5-field cron expression (minute hour day-of-month month day-of-week), UTC."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        text = ALIASES.get(expr.strip().lower(), expr)
        parts = text.split()
        if len(parts) != 5:
            raise OpmlError(f"invalid cron expression {expr!r}: expected 5 fields (minute hour day month weekday)",
                            'e.g. --cron "0 6 * * 1-5"')
        self.sets = [self._field(p, *spec) for p, spec in zip(parts, FIELDS, strict=True)]
        self.sets[4] = {d % 7 for d in self.sets[4]}  # 7 is Sunday too
        self.dom_any, self.dow_any = parts[2] == "*", parts[4] == "*"

    def _field(self, text: str, label: str, lo: int, hi: int) -> set[int]:
        hi_ok = 7 if label == "day of week" else hi
        out: set[int] = set()
        for item in text.lower().split(","):
            base, _, step_s = item.partition("/")
            try:
                step = int(step_s) if step_s else 1
                if base == "*":
                    a, b = lo, hi
                elif "-" in base:
                    a_s, b_s = base.split("-", 1)
                    a, b = self._num(a_s), self._num(b_s)
                else:
                    a = self._num(base)
                    b = hi if step_s else a
                if step < 1 or not (lo <= a <= hi_ok and lo <= b <= hi_ok) or a > b:
                    raise ValueError
            except ValueError:
                raise OpmlError(f"invalid cron expression {self.expr!r}: bad {label} field {text!r}",
                                f"use numbers {lo}-{hi_ok}, *, ranges a-b, lists a,b and steps */n") from None
            out.update(range(a, b + 1, step))
        return out

    @staticmethod
    def _num(s: str) -> int:
        return NAMES[s] if s in NAMES else int(s)

    def _day_ok(self, t: datetime) -> bool:
        dom = t.day in self.sets[2]
        dow = (t.isoweekday() % 7) in self.sets[4]
        if self.dom_any or self.dow_any:
            return dom and dow
        return dom or dow

    def next_after(self, ts: float) -> float:
        """The first matching minute strictly after `ts` (searched up to 5 years ahead)."""
        t = datetime.fromtimestamp(ts, UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=366 * 5)
        minutes, hours, _, months, _ = self.sets
        while t < limit:
            if t.month not in months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_ok(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if t.minute not in minutes:
                t += timedelta(minutes=1)
                continue
            return t.timestamp()
        raise OpmlError(f"cron expression {self.expr!r} never fires")


def next_fire(cron: str | None, interval_s: float | None, after: float, *, anchor: float) -> float:
    """The next fire time strictly after `after`. Intervals keep their phase from `anchor` (creation)."""
    if cron:
        return Cron(cron).next_after(after)
    assert interval_s
    k = int((after - anchor) // interval_s) + 1
    return anchor + k * interval_s


def recurrence(cron: str | None, every: str | None) -> tuple[str | None, float | None]:
    """Check `--cron EXPR` / `--every INTERVAL` (exactly one) -> (cron, interval in seconds)."""
    if bool(cron) == bool(every):
        raise OpmlError("pass exactly one of --cron EXPR and --every INTERVAL")
    interval = parse_every(every) if every else None
    if cron:
        Cron(cron)
    return cron, interval


def create(ws: Workspace, ref: str, *, cron: str | None, interval_s: float | None, params: dict[str, Any],
           experiment: str | None) -> Schedule:
    """Schedule pipeline `ref` (a checked `recurrence`); its parameters and experiment name are validated now,
    not at the first fire."""
    if experiment is not None:
        check_name(experiment, "experiment")
    pipeline = registry.get_pipeline(ws, ref)
    values = resolve_parameters(pipeline.spec, params, strict=False)
    now = time.time()
    first = next_fire(cron, interval_s, now, anchor=now)
    return registry.create_schedule(ws, pipeline, cron=cron, interval_s=interval_s, values=values,
                                    experiment=experiment, next_fire_at=first)


def disable(ws: Workspace, sid: str) -> Schedule:
    """Stop a schedule from firing."""
    registry.get_schedule(ws, sid)
    registry.update_schedule(ws, sid, status="Disabled")
    return registry.get_schedule(ws, sid)


def tick(ws, now: float, *, is_active: Callable[[str], bool], fire: Callable, log: Callable[[str], None]) -> int:
    """Fire every due schedule once. Returns how many runs were started."""
    started = 0
    for s in registry.list_schedules(ws):
        if s.status != "Active" or s.next_fire_at > now:
            continue
        anchor = _anchor(s)
        missed = 0
        if not s.cron and s.interval_s:
            missed = int((now - s.next_fire_at) // s.interval_s)
        nxt = next_fire(s.cron, s.interval_s, now, anchor=anchor)
        note = None
        if s.last_run_id and is_active(s.last_run_id):
            note = f"skipped the fire due {_fmt(s.next_fire_at)}: run {s.last_run_id} is still going"
            log(f"schedule {s.id}: {note}")
            registry.update_schedule(ws, s.id, next_fire_at=nxt, last_note=note)
            continue
        try:
            run_id = fire(s)
        except OpmlError as exc:
            note = f"fire due {_fmt(s.next_fire_at)} failed: {exc.line()}"
            log(f"schedule {s.id}: {note}")
            registry.update_schedule(ws, s.id, next_fire_at=nxt, last_note=note)
            continue
        note = f"catch-up: {missed + 1} missed fires coalesced into run {run_id}" if missed else f"fired run {run_id}"
        log(f"schedule {s.id}: {note}")
        registry.update_schedule(ws, s.id, next_fire_at=nxt, last_fire_at=now, last_run_id=run_id, last_note=note)
        started += 1
    return started


def _anchor(s) -> float:
    return datetime.fromisoformat(s.created_at).timestamp()


def _fmt(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def now() -> float:
    return time.time()
