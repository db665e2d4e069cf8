"""golden.customers and golden.field_lineage built in passes over customer_id ranges.

Survivorship only ever looks inside one customer, so passes over contiguous customer_id
ranges give what one pass over everyone would, with only one range's records in memory.
`build_golden` is the step for a given set of records (an incremental refresh calls it on the
affected customers); `write_golden` runs it pass by pass over the whole identity map, stages
the rows and swaps both tables in at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import polars as pl

from cdi_pipeline.lib.golden.survivorship import (
    CUSTOMER_COLUMNS,
    FIELD_LINEAGE_COLUMNS,
    GOLDEN_INPUT_COLUMNS,
    GoldenResult,
    build_golden,
)
from cdi_pipeline.lib.registry import GoldenConfig
from cdi_pipeline.lib.storage import (
    ROWS_PER_COMMIT,
    Staging,
    TableWrite,
    quote_identifier,
    registered,
    replace_tables,
)

# The fields whose rules the golden asset shows (the others decide by agreement alone).
SHOWN_RULE_FIELDS = ("first_name", "last_name", "email", "phone", "address")


def customer_ranges(
    con: duckdb.DuckDBPyConnection, per_pass: int
) -> list[tuple[str | None, str | None]]:
    """Contiguous [low, high) customer_id ranges of matching.customer_xref holding `per_pass`
    customers each (None: open end). No customers at all still gives one range, so an empty
    pass gives the tables their columns."""
    bounds = [r[0] for r in con.sql(
        "SELECT customer_id FROM (SELECT customer_id, row_number() OVER "
        "(ORDER BY customer_id) AS rn FROM (SELECT DISTINCT customer_id FROM "
        "matching.customer_xref)) WHERE (rn - 1) % $n = 0 ORDER BY customer_id",
        params={"n": per_pass}).fetchall()]
    if not bounds:
        return [(None, None)]
    return list(zip(bounds, [*bounds[1:], None], strict=True))


@dataclass(frozen=True)
class GoldenInputs:
    """What survivorship reads for a set of customers: their cleaned records (the golden
    input columns), their identity-map rows and the records' own events."""

    records: pl.DataFrame
    xref: pl.DataFrame
    events: pl.DataFrame


def read_golden_inputs(
    con: duckdb.DuckDBPyConnection, low: str | None = None, high: str | None = None
) -> GoldenInputs:
    """The inputs of `build_golden` for the customers with low <= customer_id < high (None:
    open end), read from cleaned.customer_records, cleaned.activities and
    matching.customer_xref."""
    in_range = ("($low IS NULL OR x.customer_id >= $low) AND "
                "($high IS NULL OR x.customer_id < $high)")
    span = {"low": low, "high": high}
    wanted = ", ".join(f"c.{quote_identifier(c)}" for c in GOLDEN_INPUT_COLUMNS)
    # One read: the records with their customer; the map is derived from it.
    records = con.sql(
        f"SELECT {wanted}, x.customer_id, x.match_confidence FROM "
        "cleaned.customer_records c JOIN matching.customer_xref x "
        f"USING (source, source_record_id) WHERE {in_range}", params=span).pl()
    xref = records.select("source", "source_record_id", "customer_id", "match_confidence")
    events = con.sql(
        "SELECT a.source, a.event_id, a.customer_source, a.customer_record_id, "
        "a.occurred_at FROM cleaned.activities a JOIN matching.customer_xref x "
        "ON x.source = a.source AND x.source_record_id = a.event_id "
        f"WHERE a.customer_source = a.source AND {in_range}", params=span).pl()
    return GoldenInputs(records.drop("customer_id", "match_confidence"), xref, events)


@dataclass
class GoldenSummary:
    """Statistics of golden.customers gathered pass by pass (the passes' frames are gone)."""

    passes: int = 0
    customers: int = 0
    multi_source: int = 0
    preview: pl.DataFrame | None = None
    _sizes: list[pl.DataFrame] = field(default_factory=list)
    _filled: list[pl.DataFrame] = field(default_factory=list)
    _rules: list[pl.DataFrame] = field(default_factory=list)

    def add(self, result: GoldenResult) -> None:
        """Count one pass."""
        customers = result.customers
        self.passes += 1
        self.customers += customers.height
        self.multi_source += customers.filter(pl.col("sources") > 1).height
        self._sizes.append(customers.group_by("records").len())
        self._filled.append(customers.select(
            pl.col(c).is_not_null().sum() for c in customers.columns))
        self._rules.append(result.rule_counts)
        if self.preview is None:
            # Ids and counts only: Dagster's event log is no place for personal data.
            self.preview = customers.select("customer_id", "records", "sources",
                                            "source_list", "gender", "country").head(10)

    def records_per_customer(self) -> pl.DataFrame:
        """Customers per number of records."""
        return (pl.concat(self._sizes).group_by("records")
                .agg(pl.col("len").sum().alias("customers")).sort("records"))

    def filled_share(self) -> pl.DataFrame:
        """Share of customers with a value, per golden column."""
        return pl.concat(self._filled).sum().select(
            (pl.all() / max(self.customers, 1)).round(4)
        ).unpivot(variable_name="column", value_name="filled_share")

    def deciding_rules(self) -> pl.DataFrame:
        """Per field, the customers whose value each rule decided."""
        return (pl.concat(self._rules, how="diagonal_relaxed").fill_null(0)
                .group_by("field").sum().sort("field"))


@dataclass(frozen=True)
class GoldenTables:
    """golden.customers and golden.field_lineage as written: the writes (their columns and
    descriptions), the statistics of the passes, and the lineage's row counts."""

    customers: TableWrite
    lineage: TableWrite
    summary: GoldenSummary
    lineage_rows: int
    contested: int


def write_golden(
    con: duckdb.DuckDBPyConnection, config: GoldenConfig,
    log: Callable[[str], None] = lambda message: None,
) -> GoldenTables:
    """Build golden.customers and golden.field_lineage from cleaned.customer_records,
    cleaned.activities and matching.customer_xref, `config.batch_customers` customers per pass
    (`build_golden` on each range), and replace both tables in one transaction.

    Each pass's rows are staged before the next pass is read; a failure drops the staging
    tables and leaves the previous tables. `log` gets one line per pass.
    """
    ranges = customer_ranges(con, config.batch_customers)
    # About a million rows per commit rather than one commit per field and pass: fewer
    # commits write faster; the price is the rows held until then (a million and one batch).
    customers_staging = Staging(con, "golden", "customers", rows_per_commit=ROWS_PER_COMMIT)
    lineage_staging = Staging(con, "golden", "field_lineage", rows_per_commit=ROWS_PER_COMMIT)
    summary = GoldenSummary()
    templates: dict[str, pl.DataFrame] = {}
    try:
        for i, (low, high) in enumerate(ranges, start=1):
            inputs = read_golden_inputs(con, low, high)
            log(f"survivorship pass {i}/{len(ranges)}: {inputs.records.height:,} records")
            result = build_golden(inputs.records, inputs.xref, inputs.events, config)
            del inputs
            customers_staging.append(result.customers)
            for batch in result.lineage_batches():
                lineage_staging.append(batch)
                templates.setdefault("lineage", batch.clear())
            # Lineage held over would sit in memory through the next pass's build.
            lineage_staging.flush()
            templates.setdefault("customers", result.customers.clear())
            summary.add(result)
            del result
        customers_staging.flush()
        # The rows are staged; the frames only carry the columns to describe.
        writes = [
            TableWrite("golden", "customers", templates["customers"],
                       "One golden record per customer (survivorship per field).",
                       CUSTOMER_COLUMNS),
            TableWrite("golden", "field_lineage", templates["lineage"],
                       "Where every golden value came from and which rule chose it.",
                       FIELD_LINEAGE_COLUMNS),
        ]
        replace_tables(con, writes, staged={
            "golden.customers": customers_staging.name,
            "golden.field_lineage": lineage_staging.name,
        })
    except BaseException:
        customers_staging.drop()
        lineage_staging.drop()
        raise
    lineage_rows, contested = con.sql(
        "SELECT count(*), count(runner_up_source) FROM golden.field_lineage"
    ).fetchall()[0]
    return GoldenTables(writes[0], writes[1], summary, lineage_rows, contested)


def survivorship_rules(config: GoldenConfig) -> dict[str, str]:
    """The rules of the shown fields as numbered lists, for people to read."""
    return {
        name: "\n".join(f"{i + 1}. {r}" for i, r in enumerate(config.rules_for(name)))
        for name in SHOWN_RULE_FIELDS
    }


def read_batch_inputs(
    con: duckdb.DuckDBPyConnection, records: pl.DataFrame, event_owners: pl.DataFrame,
    fresh: pl.DataFrame, new_events: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The golden input columns of `records` and the events of `event_owners` (both: source,
    source_record_id) for an incremental batch: the stored rows, overlaid with the batch's
    cleaned records (`fresh`) and events (`new_events`), which replace stored ones with the
    same key."""
    keys = ["source", "source_record_id"]
    wanted = ", ".join(f"c.{quote_identifier(c)}" for c in GOLDEN_INPUT_COLUMNS)
    with (registered(con, "__batch_records", records),
          registered(con, "__batch_owners", event_owners)):
        stored = con.sql(
            f"SELECT {wanted} FROM cleaned.customer_records c "
            "SEMI JOIN __batch_records USING (source, source_record_id)").pl()
        events = con.sql(
            "SELECT a.* FROM cleaned.activities a SEMI JOIN __batch_owners o ON "
            "a.customer_source = o.source AND a.customer_record_id = o.source_record_id").pl()
    golden_records = pl.concat([
        stored.join(fresh.select(keys), on=keys, how="anti"),
        fresh.join(records, on=keys, how="semi").select(GOLDEN_INPUT_COLUMNS),
    ], how="diagonal_relaxed")
    # A re-delivered event replaces the stored one (the batch's version comes last).
    events = pl.concat([events, new_events], how="diagonal_relaxed").unique(
        ["source", "event_id"], keep="last", maintain_order=True)
    return golden_records, events
