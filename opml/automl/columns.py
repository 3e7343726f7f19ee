"""Column kinds (numeric or categorical) and coercion of raw frames to those kinds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opml.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

# Strings that mean "no value" in hand-made CSVs; they are treated as missing, not as bad numbers.
MISSING_TOKENS = frozenset({"", "?", "na", "n/a", "nan", "null", "none", "-"})
# A text column is numeric when at least this share of its non-missing values parse as numbers.
NUMERIC_SHARE = 0.9


def _missing_mask(s: pd.Series) -> pd.Series:
    text = s.astype("string").str.strip().str.lower()
    return s.isna() | text.isin(MISSING_TOKENS).fillna(False).astype(bool)


def infer_kinds(df: pd.DataFrame) -> dict[str, str]:
    """Map each column to "numeric" or "categorical".

    Numeric dtypes (and booleans) are numeric. A text column is numeric when at least 90% of its
    non-missing values parse as numbers; otherwise it is categorical.
    """
    import pandas as pd

    kinds: dict[str, str] = {}
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            kinds[col] = "numeric"
            continue
        present = s[~_missing_mask(s)]
        if present.empty:
            kinds[col] = "categorical"
            continue
        parsed = pd.to_numeric(present.astype("string").str.strip(), errors="coerce")
        kinds[col] = "numeric" if parsed.notna().mean() >= NUMERIC_SHARE else "categorical"
    return kinds


def to_numeric(s: pd.Series, name: str) -> pd.Series:
    """A float64 copy of `s`; missing tokens become NaN, anything else unparsable is a DataError."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(s):
        return s.astype("float64")
    if pd.api.types.is_numeric_dtype(s):
        return s.astype("float64")
    missing = _missing_mask(s)
    parsed = pd.to_numeric(s.astype("string").str.strip().where(~missing), errors="coerce")
    bad = parsed.isna() & ~missing
    if bad.any():
        sample = s[bad].iloc[0]
        raise DataError(
            f"column {name!r} is numeric but holds a non-numeric value {sample!r} "
            f"({int(bad.sum())} such row(s))",
            f"fix or blank those values in {name!r}",
        )
    return parsed.astype("float64")


def to_categorical(s: pd.Series) -> pd.Series:
    """`s` as strings (numbers given for a categorical column become their text); missing stays NA."""
    import pandas as pd

    if pd.api.types.is_string_dtype(s) and not pd.api.types.is_object_dtype(s):
        return s
    return s.astype("string")
