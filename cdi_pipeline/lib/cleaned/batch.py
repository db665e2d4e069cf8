"""The cleaned layer's step: raw source tables in, checked records, events and quarantine out.

A batch is any set of raw tables: every source of the registry (the full refresh) or a new
delivery of a few (an incremental refresh). Each identity source is cleaned and checked on its
own (`clean_records`), so a caller can stage one source's records before it reads the next;
behavioural sources give events (`clean_events`); `assemble_batch` puts the parts together and
checks the whole. `clean_batch` does all three for a batch held in memory.

Nothing is written here, and nothing is lost silently: a batch that breaks its contract raises
ContractViolation, and one whose rows do not add up (raw = kept + held back, per source)
raises RowsLost.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

import pandera.polars as pa
import polars as pl

from cdi_pipeline.lib.cleaned.activities import clean_activity, empty_events, event_conservation
from cdi_pipeline.lib.cleaned.records import clean_source, conservation
from cdi_pipeline.lib.contracts import (
    ACTIVITY_COLUMNS,
    CUSTOMER_RECORD_COLUMNS,
    IDENTIFIER_PREFIX,
    QUARANTINE_COLUMNS,
    activities_schema,
    customer_records_schema,
    describe,
    empty_frame,
    failure_summary,
    quarantine_schema,
)
from cdi_pipeline.lib.registry import Registry, Source
from cdi_pipeline.lib.storage import TableWrite, frame_to_markdown


class ContractViolation(ValueError):
    """A cleaned batch breaks its Pandera contract; it is not written."""


class RowsLost(RuntimeError):
    """Raw rows reached neither the cleaned tables nor the quarantine; nothing is written."""


def validate(schema: pa.DataFrameSchema, frame: pl.DataFrame, table: str) -> None:
    """Raise ContractViolation, with failure counts per check and a few examples (values by
    shape), when `frame` breaks `schema`."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        counts, sample = failure_summary(exc)
        raise ContractViolation(
            f"{table} breaks its contract, nothing was written. Failures per check: {counts}\n"
            f"Examples:\n{sample}"
        ) from None


def record_identifiers(registry: Registry) -> list[str]:
    """Names of the identifiers any identity source carries: cleaned.customer_records has an
    `id_<name>` column for each, null in the records of sources without it."""
    return sorted({n for s in registry.identity_sources for n in s.identifiers})


def record_columns(registry: Registry) -> list[str]:
    """The columns of cleaned.customer_records, in table order."""
    identifiers = record_identifiers(registry)
    return [*CUSTOMER_RECORD_COLUMNS, *(IDENTIFIER_PREFIX + n for n in identifiers)]


@dataclass(frozen=True)
class CleanedRecords:
    """One identity source cleaned and checked: its records in the table's columns, sorted by
    record id; the quarantine rows of its values and records; its balance row."""

    source: str
    records: pl.DataFrame
    quarantine: pl.DataFrame
    balance: pl.DataFrame
    raw_rows: int
    cleaned_rows: int
    held_back: int

    @property
    def values_nulled(self) -> int:
        """Values that failed their rule and were nulled (their records were kept)."""
        return self.quarantine.height - self.held_back

    @property
    def summary(self) -> str:
        """One line for the run log."""
        return (f"{self.source}: {self.raw_rows} raw rows -> {self.cleaned_rows} cleaned, "
                f"{self.held_back} held back, {self.values_nulled} values nulled")

    def without_records(self) -> CleanedRecords:
        """The same result with no record rows (once the caller has staged them): its
        quarantine and counts are all `assemble_batch` needs."""
        return replace(self, records=self.records.clear())


def clean_records(
    raw: pl.DataFrame, source: Source, registry: Registry, run_id: str, today: date | None = None,
) -> CleanedRecords:
    """Clean one identity source's raw rows (all of raw.<source>, or a new delivery) under the
    source's gates, with `today` as the latest valid birth date (None: the calendar).

    Returns the records with every identifier column of the registry, checked against the
    cleaned.customer_records contract (ContractViolation), and the source's balance of raw,
    cleaned and held-back rows (RowsLost when it does not add up).
    """
    result = clean_source(raw, source, run_id=run_id, today=today,
                          gates=registry.gates_for(source))
    columns = record_columns(registry)
    records = result.records.with_columns(
        pl.lit(None, pl.String).alias(c) for c in columns if c not in result.records.columns
    ).select(columns).sort("source_record_id")
    validate(customer_records_schema(record_identifiers(registry)), records,
             "cleaned.customer_records")
    balance = conservation({source.name: result.raw_rows}, records, result.quarantine)
    if not balance.get_column("holds").all():
        raise RowsLost("rows were lost in cleaning, nothing was written:\n"
                       + frame_to_markdown(balance))
    return CleanedRecords(
        source=source.name, records=records, quarantine=result.quarantine, balance=balance,
        raw_rows=result.raw_rows, cleaned_rows=records.height, held_back=result.rejected_records,
    )


@dataclass(frozen=True)
class CleanedEvents:
    """One behavioural source cleaned: its events and the quarantine rows of events held back
    and values nulled."""

    source: str
    kind: str
    events: pl.DataFrame
    quarantine: pl.DataFrame
    raw_rows: int
    held_back: int

    @property
    def summary(self) -> str:
        """One line for the run log."""
        return (f"{self.source}: {self.raw_rows} raw rows -> {self.events.height} {self.kind} "
                f"events, {self.held_back} held back")


def clean_events(raw: pl.DataFrame, source: Source, registry: Registry,
                 run_id: str) -> CleanedEvents:
    """Clean one behavioural source's raw rows (all of raw.<source>, or a new delivery) under
    the source's earliest valid event date. Checked as part of a batch (`assemble_batch`)."""
    result = clean_activity(raw, source, run_id=run_id,
                            earliest=registry.gates_for(source).event_date_earliest)
    return CleanedEvents(
        source=source.name, kind=source.activity.kind, events=result.events,
        quarantine=result.quarantine, raw_rows=result.raw_rows,
        held_back=result.rejected_events,
    )


@dataclass(frozen=True)
class CleanedBatch:
    """A cleaned batch: identity records, behavioural events, the quarantine of both, and the
    per-source balances that show every raw row went to exactly one place.

    `records` is empty when the caller staged each source's records as they came (see
    `CleanedRecords.without_records`); the balances still count them.
    """

    records: pl.DataFrame
    events: pl.DataFrame
    quarantine: pl.DataFrame
    record_balance: pl.DataFrame
    event_balance: pl.DataFrame

    @property
    def records_cleaned(self) -> int:
        """Records kept, over all identity sources of the batch."""
        return int(self.record_balance.get_column("cleaned").sum())

    @property
    def records_held_back(self) -> int:
        """Records held back whole, over all identity sources of the batch."""
        return int(self.record_balance.get_column("quarantined").sum())

    @property
    def values_nulled(self) -> int:
        """Values nulled (records and events), each with a quarantine row."""
        return self.quarantine.filter(pl.col("scope") == "value").height

    @property
    def events_held_back(self) -> int:
        """Events held back whole, over all behavioural sources of the batch."""
        return int(self.event_balance.get_column("held_back").sum())

    def rows_per_rule(self) -> pl.DataFrame:
        """Quarantine rows per source, scope and rule, most frequent first."""
        return (
            self.quarantine.group_by("source", "scope", "rule")
            .agg(pl.len().alias("rows"))
            .sort("source", "scope", "rows", descending=[False, False, True])
        )

    def events_per_source(self) -> pl.DataFrame:
        """The event balance with each source's kind, date range and amount total."""
        per_kind = self.events.group_by("source", "kind").agg(
            pl.len().alias("events"),
            pl.col("occurred_at").min().alias("first"),
            pl.col("occurred_at").max().alias("last"),
            pl.col("amount").sum().round(2).alias("amount_total"),
        ).sort("source")
        return self.event_balance.join(per_kind, on="source", how="left")


def assemble_batch(
    records: Sequence[CleanedRecords], events: Sequence[CleanedEvents], registry: Registry,
) -> CleanedBatch:
    """Put cleaned sources together as one batch and check the whole.

    Takes the identity sources' results in source-name order (records may have been dropped
    already, see `CleanedRecords.without_records`) and the behavioural sources' results.
    Returns records, events sorted by (source, event_id) and the quarantine sorted by source,
    scope, row and field; raises ContractViolation or RowsLost.
    """
    record_frames = [r.records for r in records] or [
        empty_frame(CUSTOMER_RECORD_COLUMNS).with_columns(
            pl.lit(None, pl.String).alias(IDENTIFIER_PREFIX + n)
            for n in record_identifiers(registry))]
    record_balance = (
        pl.concat([r.balance for r in records]).sort("source") if records
        else conservation({}, record_frames[0], empty_frame(QUARANTINE_COLUMNS))
    )
    event_frames = pl.concat([empty_events(), *(e.events for e in events)]).sort(
        "source", "event_id"
    )
    quarantine = pl.concat(
        [*(r.quarantine for r in records), *(e.quarantine for e in events)]
        or [empty_frame(QUARANTINE_COLUMNS)],
        how="vertical_relaxed",
    ).sort("source", "scope", "source_row_number", "field", nulls_last=False)
    validate(activities_schema(), event_frames, "cleaned.activities")
    validate(quarantine_schema(), quarantine, "cleaned.quarantine")
    event_balance = event_conservation(
        {e.source: e.raw_rows for e in events}, event_frames, quarantine
    )
    if not event_balance.get_column("holds").all():
        raise RowsLost(
            "rows were lost in cleaning, nothing was written:\n"
            + frame_to_markdown(event_balance.filter(~pl.col("holds")))
        )
    return CleanedBatch(
        records=pl.concat(record_frames, how="vertical_relaxed"),
        events=event_frames,
        quarantine=quarantine,
        record_balance=record_balance,
        event_balance=event_balance,
    )


def clean_batch(
    raw_by_source: Mapping[str, pl.DataFrame], registry: Registry, run_id: str,
    today: date | None = None,
) -> CleanedBatch:
    """Clean a batch held in memory: raw rows (lineage columns included) by source name.

    Identity sources give records (`clean_records`, in source-name order), behavioural sources
    give events (`clean_events`, in registry order), and a source that is both gives both.
    Returns the checked batch (`assemble_batch`): records in the columns and order of
    cleaned.customer_records, events, quarantine and the balances.
    """
    identity = sorted((s for s in registry.identity_sources if s.name in raw_by_source),
                      key=lambda s: s.name)
    behaviour = [s for s in registry.sources
                 if s.activity is not None and s.name in raw_by_source]
    return assemble_batch(
        [clean_records(raw_by_source[s.name], s, registry, run_id, today) for s in identity],
        [clean_events(raw_by_source[s.name], s, registry, run_id) for s in behaviour],
        registry,
    )


def records_write(registry: Registry, batches: Iterator[pl.DataFrame]) -> TableWrite:
    """cleaned.customer_records written from record batches (one per source, say): the first
    is taken now and gives the columns, the rest are appended as they come."""
    return TableWrite(
        "cleaned",
        "customer_records",
        next(batches),
        "Every usable identity record of every source in the canonical shape.",
        describe(CUSTOMER_RECORD_COLUMNS, record_identifiers(registry)),
        more=batches,
    )


def events_write(batch: CleanedBatch) -> TableWrite:
    """cleaned.activities from a batch."""
    return TableWrite(
        "cleaned",
        "activities",
        batch.events,
        "Every usable behavioural event with the identity record it belongs to.",
        describe(ACTIVITY_COLUMNS),
    )


def quarantine_write(batch: CleanedBatch) -> TableWrite:
    """cleaned.quarantine from a batch."""
    return TableWrite(
        "cleaned",
        "quarantine",
        batch.quarantine,
        "Values nulled and records held back by cleaning rules, with reasons.",
        describe(QUARANTINE_COLUMNS),
    )
