"""Read a CSV file strictly and profile it: rows, columns, inferred types, missing values, label distribution."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opml.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

FIX_CSV = "pass a comma-separated file whose first line names the columns"


def read_csv(path: Path, shown: str | Path | None = None) -> pd.DataFrame:
    """Load a CSV file, turning every way it can be wrong into a one-line DataError that names `shown` (else `path`)."""
    import pandas as pd

    file, path = path, shown or path
    try:
        with file.open("rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head.strip():
        raise DataError(f"{path} is empty", FIX_CSV)
    if b"\0" in head:
        raise DataError(f"{path} is not a CSV text file (binary content)", FIX_CSV)
    try:
        df = pd.read_csv(file, low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path} is not valid CSV ({first})", FIX_CSV) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty", FIX_CSV) from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if df.shape[1] < 2:
        raise DataError(f"{path} does not look like CSV: found a single column", FIX_CSV)
    if df.shape[0] == 0:
        raise DataError(f"{path} has a header but no rows", "pass a file with data rows")
    header = next(csv.reader(io.StringIO(head.decode("utf-8", "replace").splitlines()[0])))
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise DataError(f"{path} repeats column names ({', '.join(dupes)})", "give each column a unique name")
    return df


def check_label(df: pd.DataFrame, label: str, path: str | Path) -> None:
    if label not in df.columns:
        cols = ", ".join(map(str, df.columns[:30]))
        raise DataError(
            f"label column {label!r} not found in {path} (columns: {cols})",
            "set dataset.label_column in automl.yaml or pass --label",
        )


def infer_type(series: pd.Series) -> str:
    import pandas as pd

    s = series.dropna()
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series) or (
        pd.api.types.is_float_dtype(series) and len(s) and (s == s.round()).all() and s.abs().max() < 2**53
        and series.isna().any()
    ):
        return "integer"
    if pd.api.types.is_numeric_dtype(series):
        return "float"
    if len(s) == 0:
        return "empty"
    n_unique = s.nunique()
    if n_unique <= max(50, int(0.05 * len(s))):
        return "categorical"
    return "text"


def profile(df: pd.DataFrame, label: str) -> dict[str, Any]:
    """A JSON-serialisable description of the frame, with the label's class distribution."""
    columns = []
    for name in df.columns:
        col = df[name]
        kind = infer_type(col)
        entry: dict[str, Any] = {
            "name": str(name),
            "type": kind,
            "missing": int(col.isna().sum()),
            "unique": int(col.nunique(dropna=True)),
        }
        if kind in ("integer", "float") and entry["missing"] < len(col):
            entry.update(min=_num(col.min()), max=_num(col.max()), mean=round(float(col.mean()), 6))
        elif kind in ("categorical", "boolean"):
            top = col.astype("string").value_counts(dropna=True).head(5)
            entry["top"] = {str(k): int(v) for k, v in top.items()}
        columns.append(entry)
    counts = df[label].astype("string").value_counts(dropna=True)
    total = int(counts.sum())
    distribution = {str(k): {"count": int(v), "share": round(int(v) / total, 4)} for k, v in counts.items()}
    return {
        "rows": int(df.shape[0]),
        "columns": int(df.shape[1]),
        "schema": columns,
        "label": {"column": label, "classes": len(distribution), "distribution": distribution,
                  "missing": int(df[label].isna().sum())},
    }


def _num(v: Any) -> float | int:
    f = float(v)
    return int(f) if f.is_integer() else round(f, 6)
