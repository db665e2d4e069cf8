"""Gates on the cleaned layer: blocking checks that stop matching when cleaning went wrong."""

import dagster as dg
import pandera.polars as pa
import polars as pl

from cdi_pipeline.defs.cleaned.assets import CUSTOMER_RECORDS, QUARANTINE
from cdi_pipeline.defs.shared.resources import WarehouseResource
from cdi_pipeline.lib.cleaning import conservation
from cdi_pipeline.lib.contracts import customer_records_schema, failure_summary
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.storage import frame_to_markdown, read_table

CONSERVATION = "conservation"
REJECTED_SHARE = "rejected_share"
INVALID_VALUE_SHARE = "invalid_value_share"
CONTRACT = "contract"

# A field losing this share of its delivered values is worth a look, not a stop.
INVALID_VALUE_WARNING = 0.2


def _examples(quarantine: pl.DataFrame, where: pl.Expr, n: int = 5) -> str:
    sample = quarantine.filter(where).select(
        "source", "source_record_id", "rule", "offending_value"
    )
    return frame_to_markdown(sample.head(n)) if sample.height else "(none)"


def build_cleaned_checks(registry: Registry) -> list[dg.AssetChecksDefinition]:
    """Blocking and warning checks on cleaned.customer_records."""
    identity = registry.identity_sources

    @dg.asset_check(
        asset=CUSTOMER_RECORDS,
        name=CONSERVATION,
        blocking=True,
        additional_deps=[QUARANTINE, *[dg.AssetKey(["raw", s.name]) for s in identity]],
        description="Every raw row is a cleaned record or quarantined whole, for every source.",
    )
    def conservation_check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            raw_counts = {
                s.name: con.sql(f'SELECT count(*) FROM raw."{s.name}"').fetchall()[0][0]
                for s in identity
            }
            records = con.sql("SELECT source FROM cleaned.customer_records").pl()
            quarantine = con.sql("SELECT source, scope FROM quality.quarantine").pl()
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
            quarantine = read_table(con, "quality", "quarantine")
        held = quarantine.filter(pl.col("scope") == "record")
        rows = []
        for s in identity:
            n_held = held.filter(pl.col("source") == s.name).height
            total = n_held + records.filter(pl.col("source") == s.name).height
            share = n_held / total if total else 0.0
            limit = registry.rejected_share_limit(s)
            rows.append(
                {
                    "source": s.name,
                    "records": total,
                    "held_back": n_held,
                    "share": round(share, 4),
                    "limit": limit,
                    "ok": share <= limit,
                }
            )
        table = pl.DataFrame(rows)
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
        name=INVALID_VALUE_SHARE,
        blocking=False,
        additional_deps=[QUARANTINE],
        description="Warns when a source loses more than "
        f"{INVALID_VALUE_WARNING:.0%} of a field's delivered values to cleaning rules.",
    )
    def invalid_value_share_check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            quarantine = read_table(con, "quality", "quarantine")
            records = con.sql("SELECT * FROM cleaned.customer_records").pl()
        from cdi_pipeline.lib.profile import field_profile

        profile = field_profile(records, quarantine)
        weak = profile.filter(pl.col("validity") < 1 - INVALID_VALUE_WARNING)
        return dg.AssetCheckResult(
            passed=weak.height == 0,
            severity=dg.AssetCheckSeverity.WARN,
            description="no field above the invalid-value share"
            if weak.height == 0
            else f"{weak.height} source field(s) with many invalid values",
            metadata={
                "weak_fields": dg.MetadataValue.md(
                    frame_to_markdown(
                        weak.select("source", "field", "filled", "invalid", "validity")
                    )
                    if weak.height
                    else "(none)"
                ),
                "invalid_per_rule": dg.MetadataValue.md(
                    frame_to_markdown(
                        quarantine.filter(pl.col("scope") == "value")
                        .group_by("source", "rule")
                        .agg(pl.len().alias("rows"))
                        .sort("source", "rule"),
                        max_rows=60,
                    )
                ),
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
            customer_records_schema().validate(records, lazy=True)
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

    return [conservation_check, rejected_share_check, invalid_value_share_check, contract_check]
