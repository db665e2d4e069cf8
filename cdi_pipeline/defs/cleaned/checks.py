"""Gates on the cleaned layer: blocking checks that stop matching when cleaning went wrong."""

import dagster as dg
import pandera.polars as pa
import polars as pl

from cdi_pipeline.defs.keys import CUSTOMER_RECORDS, QUARANTINE, raw_key
from cdi_pipeline.defs.shared.resources import WarehouseResource
from cdi_pipeline.lib.cleaned.records import conservation
from cdi_pipeline.lib.contracts import customer_records_schema, failure_summary
from cdi_pipeline.lib.privacy import SHAPE_NOTE, delivered_shapes
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.storage import frame_to_markdown, quote_identifier, read_table

CONSERVATION = "conservation"
REJECTED_SHARE = "rejected_share"
CONTRACT = "contract"


def _examples(quarantine: pl.DataFrame, where: pl.Expr, n: int = 5) -> str:
    # By shape only: the event log is kept beyond any erasure (cleaned.quarantine has the
    # values, and erasure purges them there).
    sample = quarantine.filter(where).head(n)
    if not sample.height:
        return "(none)"
    shown = sample.select("source", "source_record_id", "rule").with_columns(
        delivered_shapes(sample.get_column("offending_value")).alias("offending_value_shape"))
    return f"{frame_to_markdown(shown)}\n\n({SHAPE_NOTE})"


def build_cleaned_checks(registry: Registry) -> list[dg.AssetChecksDefinition]:
    """Blocking and warning checks on cleaned.customer_records."""
    identity = registry.identity_sources
    identifiers = sorted({n for s in identity for n in s.identifiers})

    @dg.asset_check(
        asset=CUSTOMER_RECORDS,
        name=CONSERVATION,
        blocking=True,
        additional_deps=[QUARANTINE, *[raw_key(s.name) for s in identity]],
        description="Every raw row is a cleaned record or quarantined whole, for every source.",
    )
    def conservation_check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            raw_counts = {
                s.name: con.sql(f"SELECT count(*) FROM raw.{quote_identifier(s.name)}")
                .fetchall()[0][0]
                for s in identity
            }
            records = con.sql("SELECT source FROM cleaned.customer_records").pl()
            quarantine = con.sql("SELECT source, scope FROM cleaned.quarantine").pl()
        balance = conservation(raw_counts, records, quarantine)
        broken = balance.filter(~pl.col("holds"))
        return dg.AssetCheckResult(
            passed=broken.height == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                "raw = cleaned + quarantined for every source"
                if broken.height == 0
                else f"rows lost or duplicated in {broken.get_column('source').to_list()}"
            ),
            metadata={
                "balance": dg.MetadataValue.md(frame_to_markdown(balance)),
                "sources_out_of_balance": dg.MetadataValue.int(broken.height),
            },
        )

    @dg.asset_check(
        asset=CUSTOMER_RECORDS,
        name=REJECTED_SHARE,
        blocking=True,
        additional_deps=[QUARANTINE],
        description="The share of each source's records held back whole stays within its limit "
        f"(default {registry.max_rejected_share:.0%}).",
    )
    def rejected_share_check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            records = con.sql("SELECT source FROM cleaned.customer_records").pl()
            quarantine = read_table(con, "cleaned", "quarantine")
        held = quarantine.filter(pl.col("scope") == "record")
        limits = pl.DataFrame(
            {
                "source": [s.name for s in identity],
                "limit": [registry.rejected_share_limit(s) for s in identity],
            }
        )
        table = (
            limits.join(
                records.group_by("source").agg(pl.len().alias("cleaned")), on="source", how="left"
            )
            .join(held.group_by("source").agg(pl.len().alias("held_back")), on="source", how="left")
            .with_columns(pl.col("cleaned", "held_back").fill_null(0))
            .with_columns((pl.col("cleaned") + pl.col("held_back")).alias("records"))
            .with_columns(
                (pl.col("held_back") / pl.col("records")).fill_nan(0.0).round(4).alias("share")
            )
            .with_columns((pl.col("share") <= pl.col("limit")).alias("ok"))
            .select("source", "records", "held_back", "share", "limit", "ok")
        )
        failing = table.filter(~pl.col("ok"))
        per_rule = (
            held.group_by("source", "rule").agg(pl.len().alias("rows")).sort("source", "rule")
        )
        return dg.AssetCheckResult(
            passed=failing.height == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                "every source within its limit"
                if failing.height == 0
                else f"too many records held back in {failing.get_column('source').to_list()}"
            ),
            metadata={
                "per_source": dg.MetadataValue.md(frame_to_markdown(table)),
                "per_rule": dg.MetadataValue.md(frame_to_markdown(per_rule)),
                "examples": dg.MetadataValue.md(_examples(quarantine, pl.col("scope") == "record")),
            },
        )

    @dg.asset_check(
        asset=CUSTOMER_RECORDS,
        name=CONTRACT,
        blocking=True,
        description="The stored table satisfies the Pandera contract of cleaned.customer_records.",
    )
    def contract_check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            records = read_table(con, "cleaned", "customer_records")
        try:
            customer_records_schema(identifiers).validate(records, lazy=True)
        except pa.errors.SchemaErrors as exc:
            counts, sample = failure_summary(exc)
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "failures_per_check": dg.MetadataValue.json(counts),
                    "examples": dg.MetadataValue.md(sample),
                },
            )
        return dg.AssetCheckResult(
            passed=True, metadata={"rows_validated": dg.MetadataValue.int(records.height)}
        )

    return [conservation_check, rejected_share_check, contract_check]
