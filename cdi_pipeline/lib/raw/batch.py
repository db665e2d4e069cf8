"""From a loaded source file to the rows stored as raw.<source>, with what describes them.

The file itself is read and checked by `load_source`; here its rows are held to the raw
contract and the rows of erased persons are dropped, so a reload cannot bring them back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from cdi_pipeline.lib.contracts import ROW_KEYS, failure_summary, raw_schema
from cdi_pipeline.lib.governance.erasure import drop_suppressed
from cdi_pipeline.lib.privacy import PERSONAL_FIELDS
from cdi_pipeline.lib.raw.sources import LINEAGE_COLUMNS, RawLoad, SourceFileError
from cdi_pipeline.lib.registry import Source
from cdi_pipeline.lib.storage import frame_to_markdown


@dataclass(frozen=True)
class RawBatch:
    """The rows of one source file to store, and the file they came from."""

    frame: pl.DataFrame
    load: RawLoad
    suppressed: int

    @property
    def rows_in_file(self) -> int:
        """Data rows the file held, suppressed ones included."""
        return self.load.frame.height


def check_raw_contract(source: Source, load: RawLoad) -> None:
    """Raise SourceFileError, naming the failing checks, when the file's rows break the raw
    contract (`raw_schema`); record ids are shown as they are, other values by shape."""
    try:
        raw_schema(source).validate(load.frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        counts, sample = failure_summary(exc, visible=ROW_KEYS | {source.record_id})
        raise SourceFileError(
            f"source {source.name!r}: file {load.path} breaks the raw contract, nothing was "
            f"written: {counts}\n{sample}"
        ) from None


def prepare_raw_batch(
    load: RawLoad, source: Source, suppression: pl.DataFrame | None, key: Callable[[], str],
) -> RawBatch:
    """The rows of a loaded source file (`load_source`) that go into raw.<source>.

    Takes the load, its source, the suppression list (`read_suppression_list`; None before
    any erasure) and a function giving the pseudonymisation key (asked for only when the list
    has entries). Raises SourceFileError when the rows break the raw contract; returns the
    rows without those of erased persons, and how many of those there were.
    """
    check_raw_contract(source, load)
    kept = drop_suppressed(load.frame, source, suppression, key)
    return RawBatch(frame=kept.frame, load=load, suppressed=kept.suppressed)


def raw_description(source: Source) -> str:
    """What raw.<source> holds, for the asset and the table comment."""
    return (
        f"{source.description or 'Source ' + source.name} "
        f"Raw copy of {source.path} ({source.format}), every column as delivered plus lineage."
    )


def raw_column_descriptions(source: Source, frame: pl.DataFrame) -> dict[str, str]:
    """A description of every column of raw.<source>: the registry key that maps it, or that
    it is unmapped, plus the lineage columns."""
    described = {source.record_id: f"Record id in {source.name} (registry key record_id)."}
    for field, col in source.fields.items():
        described.setdefault(col, f"Source column mapped to canonical field {field}.")
    for name, col in source.identifiers.items():
        described.setdefault(col, f"Source identifier {name}.")
    for col in source.attributes:
        described.setdefault(col, "Attribute carried to the golden record.")
    if source.activity is not None:
        for col in source.activity.columns():
            described.setdefault(col, f"Behavioural column ({source.activity.kind}).")
    described.update(LINEAGE_COLUMNS)
    return {
        c: described.get(c, "Unmapped source column, kept as delivered.") for c in frame.columns
    }


def masked_preview(source: Source, frame: pl.DataFrame, rows: int = 5) -> str:
    """The first rows as markdown, personal fields masked: Dagster's event log is not the
    place for them."""
    personal = {col for field, col in source.fields.items() if field in PERSONAL_FIELDS}
    head = frame.head(rows).drop(list(LINEAGE_COLUMNS))
    masked = head.with_columns(
        (pl.col(c).cast(pl.String).str.slice(0, 1) + pl.lit("***")).alias(c)
        for c in head.columns
        if c in personal
    )
    return frame_to_markdown(masked)
