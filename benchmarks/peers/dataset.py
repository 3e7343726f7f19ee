"""The benchmarks' dataset: --data, else opml's reference copy ($OPML_TEST_DATA, ../shared/data/, else downloaded
once, sha256-checked); a problem is a one-line exit."""

from __future__ import annotations

from pathlib import Path


def dataset(given: Path | None, repo: Path) -> Path:
    """`given`, or the reference CSV found from `repo`; SystemExit with one line when there is none."""
    if given is None:
        from opml.data.reference import reference_csv
        from opml.errors import OpmlError

        try:
            given = reference_csv(repo)
        except OpmlError as exc:
            raise SystemExit(f"{exc.line()}; or pass --data PATH") from None
    if not given.is_file():
        raise SystemExit(f"dataset not found at {given}; pass --data PATH")
    return given
