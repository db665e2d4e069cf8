"""Every blocking check holds back what is built after it, in a real run.

Each case starts from a copy of the session's generated warehouse, breaks the stored state
the check guards (as a bug, a crash or a hand edit would), and runs the check together with
everything downstream of its asset. The check must fail, nothing downstream may materialize,
and what others read (the analyst file, the activation exports) must stay byte for byte.

A blocking check that no case here (or the test named in TESTED_ELSEWHERE) makes fail
fails `test_every_blocking_check_is_proven`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from cdi_pipeline.definitions import build_definitions, defs
from cdi_pipeline.lib.matching.rules import OVERRIDE_COLUMNS
from cdi_pipeline.lib.registry import load_registry
from cdi_pipeline_tests.warehouse_state import Site, published_outputs


@dataclass(frozen=True)
class Gate:
    """A blocking check and how to break what it guards."""

    check: str  # "asset/key:check_name"
    breaks: Callable[[Site], None]

    @property
    def key(self) -> dg.AssetCheckKey:
        asset, name = self.check.split(":")
        return dg.AssetCheckKey(dg.AssetKey(asset.split("/")), name)


def _sql(statement: str) -> Callable[[Site], None]:
    def breaks(site: Site) -> None:
        con = duckdb.connect(str(site.database))
        try:
            con.execute(statement)
        finally:
            con.close()
    return breaks


def _implausible_model(site: Site) -> None:
    # A prior of 0.9: nine in ten random pairs a match, which no valid model says.
    version = json.loads((site.models / "current.json").read_text(encoding="utf-8"))["version"]
    path = site.models / f"match_model_{version}.json"
    model = json.loads(path.read_text(encoding="utf-8"))
    model["splink_settings"]["probability_two_random_records_match"] = 0.9
    path.write_text(json.dumps(model), encoding="utf-8")


def _broken_override(site: Site) -> None:
    # A steward's cannot_link between two records the stored customers hold together.
    pair = site.query(
        "SELECT a.source AS source_l, a.source_record_id AS source_record_id_l, "
        "b.source AS source_r, b.source_record_id AS source_record_id_r "
        "FROM matching.customer_xref a JOIN matching.customer_xref b USING (customer_id) "
        "WHERE a.source || a.source_record_id < b.source || b.source_record_id "
        "ORDER BY ALL LIMIT 1")
    row = pair.with_columns(decision=pl.lit("cannot_link"), decided_by=pl.lit("steward"),
                            reason=pl.lit("different people"), decided_on=pl.lit("2026-01-01"))
    path = load_registry(site.registry).overrides_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    row.select([c for c in OVERRIDE_COLUMNS if c in row.columns]).write_csv(path)


GATES = [
    # A lost row: cleaned no longer holds every raw row or its quarantine reason.
    Gate("cleaned/customer_records:conservation",
         _sql("DELETE FROM cleaned.customer_records WHERE rowid = (SELECT min(rowid) "
              "FROM cleaned.customer_records)")),
    Gate("cleaned/customer_records:contract",
         _sql("UPDATE cleaned.customer_records SET source = NULL WHERE rowid = (SELECT "
              "min(rowid) FROM cleaned.customer_records)")),
    Gate("matching/model:model_sanity", _implausible_model),
    # One customer holding every record: a collapse, far more links than the prior expects.
    Gate("matching/customer_xref:linked_share",
         _sql("UPDATE matching.clusters SET records = (SELECT sum(records) FROM "
              "matching.clusters) WHERE rowid = (SELECT min(rowid) FROM matching.clusters)")),
    Gate("matching/customer_xref:overrides_honoured", _broken_override),
    Gate("matching/customer_xref:every_record_mapped",
         _sql("DELETE FROM matching.customer_xref WHERE rowid = (SELECT min(rowid) "
              "FROM matching.customer_xref)")),
    Gate("golden/customers:one_row_per_customer",
         _sql("INSERT INTO golden.customers SELECT * FROM golden.customers LIMIT 1")),
    Gate("golden/customers:lineage_complete",
         _sql("DELETE FROM golden.field_lineage WHERE rowid = (SELECT min(rowid) "
              "FROM golden.field_lineage)")),
    Gate("golden/customer_360:one_row_per_customer",
         _sql("INSERT INTO golden.customer_360 SELECT * FROM golden.customer_360 LIMIT 1")),
    Gate("segments/customer_segments:every_customer_segmented",
         _sql("DELETE FROM segments.customer_segments WHERE rowid = (SELECT min(rowid) "
              "FROM segments.customer_segments)")),
]

# Blocking checks proven by a run of their own elsewhere, where the data itself trips them.
TESTED_ELSEWHERE = {
    "cleaned/customer_records:rejected_share":
        "cleaned/test_cleaned_gates.py::test_rejected_share_over_limit_blocks_downstream",
    "matching/customer_xref:cluster_size":
        "integration/test_matching_pipeline.py::test_oversized_clusters_fail_the_blocking_size_check",
}


def _gate_job(site: Site, gate: Gate) -> tuple[dg.JobDefinition, set[dg.AssetKey]]:
    """A job of the real code location: the check, and every asset downstream of its asset
    (with their own checks), but not the asset itself, whose stored state was broken.
    Returns the job and those downstream assets."""
    # Whole steps: a step that writes several assets runs for all of them or not at all.
    after = (dg.AssetSelection.assets(gate.key.asset_key).downstream(include_self=False)
             .required_multi_asset_neighbors())
    location = build_definitions(site.registry, site.warehouse)
    merged = dg.Definitions.merge(location, dg.Definitions(
        jobs=[dg.define_asset_job("gate", selection=dg.AssetSelection.checks(gate.key) | after)]))
    return merged.resolve_job_def("gate"), after.resolve(merged.resolve_asset_graph())


@pytest.mark.parametrize("gate", GATES, ids=[g.check for g in GATES])
def test_a_failing_blocking_check_holds_back_everything_after_it(
    generated_site: Site, tmp_path: Path, gate: Gate
) -> None:
    site = generated_site.copy_to(tmp_path / "site", symlinks=True)
    published = published_outputs(site.warehouse)
    gate.breaks(site)
    job, downstream = _gate_job(site, gate)
    # What it guards reaches what others read.
    assert dg.AssetKey(["published", "analytics"]) in downstream
    result = job.execute_in_process(raise_on_error=False)
    evaluations = [e.asset_check_evaluation_data for e in result.all_events
                   if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert [(e.check_name, e.passed) for e in evaluations] == [(gate.key.name, False)]
    assert result.get_asset_materialization_events() == []
    assert published_outputs(site.warehouse) == published


def test_every_blocking_check_is_proven() -> None:
    graph = defs.resolve_asset_graph()
    blocking = {f"{key.asset_key.to_user_string()}:{key.name}"
                for key in graph.asset_check_keys if graph.get_check_spec(key).blocking}
    proven = {g.check for g in GATES} | set(TESTED_ELSEWHERE)
    assert blocking == proven
