"""The benchmarks' comma-separated name lists (argparse types)."""

from __future__ import annotations

import argparse


def names(value: str, known: dict, what: str = "name") -> list[str]:
    """A comma-separated list of names from `known`; argparse reports any other as unknown."""
    out = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in out if v not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown)} (known: {', '.join(known)})")
    return out
