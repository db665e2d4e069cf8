"""Files stewards edit under version control (match overrides, erasure requests): read the
same way, every value as text, with the line number a steward sees in an editor."""

from pathlib import Path

import polars as pl


def read_governed_csv(
    path: Path, required: tuple[str, ...], optional: tuple[str, ...], error: type[Exception],
) -> pl.DataFrame | None:
    """The file's `required` and `optional` columns, stripped, plus `line` (2 = first data
    line); None when the file does not exist. An unreadable file or a missing required
    column raises `error` naming the file and the expected header."""
    if not path.is_file():
        return None
    try:
        raw = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=False)
    except pl.exceptions.PolarsError as exc:
        raise error(f"{path}: not a readable CSV: {exc}") from None
    missing = [c for c in required if c not in raw.columns]
    if missing:
        extra = f" (and optionally {', '.join(optional)})" if optional else ""
        raise error(f"{path}: missing column(s) {missing}; expected header "
                    f"{','.join(required)}{extra}")
    raw = raw.with_columns(pl.lit(None, pl.String).alias(c) for c in optional
                           if c not in raw.columns)
    return raw.select(*required, *optional).with_columns(
        pl.col(c).str.strip_chars() for c in (*required, *optional)
    ).with_row_index("line", offset=2)
