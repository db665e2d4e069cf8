"""The cleaned layer's gates: too many records held back stops everything downstream.

The four-record source set is far too small to train a matching model, so these runs select
the raw, cleaned and quality layers of the full_refresh job only.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from cdi_pipeline.definitions import build_definitions

LAYERS = ("raw", "cleaned", "quality")


def _run(registry: Path, warehouse: Path) -> dg.ExecuteInProcessResult:
    defs = build_definitions(registry, warehouse)
    keys = [k for k in defs.resolve_all_asset_keys() if k.path[0] in LAYERS]
    return defs.resolve_job_def("full_refresh").execute_in_process(
        asset_selection=keys, raise_on_error=False
    )


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    evaluations = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    return next(e for e in evaluations if e.check_name == name)


def test_clean_batch_passes_every_gate(small_registry: Path, warehouse_dir: Path) -> None:
    result = _run(small_registry, warehouse_dir)
    assert result.success
    assert _check(result, "rejected_share").passed
    assert _check(result, "conservation").passed
    assert _check(result, "invalid_value_share").passed


def test_rejected_share_over_limit_blocks_downstream(
    small_registry: Path, warehouse_dir: Path
) -> None:
    crm = small_registry.parent / "sources" / "crm.csv"
    # One record of four with nothing identifying: 25% held back, above the 5% default.
    crm.write_text(crm.read_text() + "C4;;;;;;\n", encoding="utf-8")
    result = _run(small_registry, warehouse_dir)
    assert not result.success
    check = _check(result, "rejected_share")
    assert not check.passed
    assert "crm" in check.description
    profiled = result.asset_materializations_for_node("quality__field_profile")
    assert profiled == []
