"""Gates on the cleaned layer: blocking checks that stop matching when cleaning went wrong."""

import dagster as dg
import pandera.polars as pa

from cdi_pipeline.defs.keys import CUSTOMER_RECORDS, QUARANTINE, raw_key
from cdi_pipeline.defs.shared.metadata import check_result
from cdi_pipeline.defs.shared.resources import WarehouseResource
from cdi_pipeline.lib.cleaned import gates
from cdi_pipeline.lib.contracts import customer_records_schema, failure_summary
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.storage import read_table

CONTRACT = "contract"


def build_cleaned_checks(registry: Registry) -> list[dg.AssetChecksDefinition]:
    """Blocking and warning checks on cleaned.customer_records."""
    identity = registry.identity_sources
    identifiers = sorted({n for s in identity for n in s.identifiers})

    @dg.asset_check(
        asset=CUSTOMER_RECORDS,
        name=gates.CONSERVATION,
        blocking=True,
        additional_deps=[QUARANTINE, *[raw_key(s.name) for s in identity]],
        description="Every raw row is a cleaned record or quarantined whole, for every source.",
    )
    def conservation_check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            return check_result(gates.conservation(con, [s.name for s in identity]))

    @dg.asset_check(
        asset=CUSTOMER_RECORDS,
        name=gates.REJECTED_SHARE,
        blocking=True,
        additional_deps=[QUARANTINE],
        description="The share of each source's records held back whole stays within its limit "
        f"(default {registry.max_rejected_share:.0%}).",
    )
    def rejected_share_check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            records = con.sql("SELECT source FROM cleaned.customer_records").pl()
            quarantine = read_table(con, "cleaned", "quarantine")
        return check_result(gates.rejected_share(records, quarantine,
                                                    gates.rejected_share_limits(registry)))

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
