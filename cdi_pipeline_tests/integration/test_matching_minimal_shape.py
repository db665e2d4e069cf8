"""A source set with only names, birth dates and postcodes runs through matching end to end.

The model is derived from the populated fields, so this set gets name, birth-date and address
comparisons and no email, phone or identifier ones; the accuracy check still measures it.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from cdi_pipeline.lib.matching.model_store import load_current_model
from cdi_pipeline_tests.warehouse_state import Site
from cdi_pipeline_tests.warehouse_state import checks as _checks


@pytest.fixture(scope="module")
def minimal_run(minimal_site: Site):
    return minimal_site.root, minimal_site.result


def test_minimal_source_set_runs_end_to_end(minimal_run) -> None:
    root, result = minimal_run
    failures = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result.success and failures == []
    checks = _checks(result)
    for name in ("model_sanity", "cluster_size", "linked_share", "every_record_mapped",
                 "overrides_honoured"):
        assert checks[name].passed, (name, checks[name].description)
    con = duckdb.connect(str(root / "warehouse" / "cdi.duckdb"), read_only=True)
    try:
        records, mapped, customers = con.sql(
            "SELECT (SELECT count(*) FROM cleaned.customer_records), "
            "(SELECT count(*) FROM matching.customer_xref), "
            "(SELECT count(DISTINCT customer_id) FROM matching.customer_xref)"
        ).fetchall()[0]
        comparisons = {
            r[0] for r in con.sql("SELECT DISTINCT comparison FROM matching.model_parameters")
            .fetchall()
        }
    finally:
        con.close()
    assert records == mapped
    assert customers < records  # records of the same person were linked
    assert comparisons == {"first_name", "last_name", "date_of_birth", "postcode"}


def test_minimal_source_set_accuracy_is_measured(minimal_run) -> None:
    root, result = minimal_run
    accuracy = _checks(result)["accuracy"]
    scores = {k: v.value for k, v in accuracy.metadata.items()}
    # Names, birth dates and postcodes alone still identify most people (twins and
    # namesakes are the generator's hard negatives). Measured 0.9676 / 0.9836 / 0.9755
    # (600 persons, seed 3, seeded training): half a point under, so a point lost fails.
    assert scores["pairwise_precision"] >= 0.962
    assert scores["pairwise_recall"] >= 0.978
    assert scores["pairwise_f1"] >= 0.970
    model = load_current_model(Path(root / "warehouse" / "models"))
    assert model is not None and model.training[0]["blocking_rule"] == ["date_of_birth"]


def test_source_set_without_behaviour_gets_golden_records_and_empty_features(minimal_run) -> None:
    root, result = minimal_run
    checks = _checks(result)
    for name in ("one_row_per_customer", "lineage_complete", "every_customer_segmented",
                 "only_contactable_exported"):
        assert checks[name].passed, (name, checks[name].description)
    con = duckdb.connect(str(root / "warehouse" / "cdi.duckdb"), read_only=True)
    try:
        ids, golden, events, orders, segments, no_orders = con.sql(
            "SELECT (SELECT count(DISTINCT customer_id) FROM matching.customer_xref), "
            "(SELECT count(*) FROM golden.customers), "
            "(SELECT count(*) FROM cleaned.activities), "
            "(SELECT sum(order_count) FROM golden.customer_features), "
            "(SELECT count(*) FROM segments.customer_segments), "
            "(SELECT count(*) FROM segments.customer_segments WHERE rfm_segment = 'no_orders' "
            " AND contactability = 'consent_unknown')"
        ).fetchall()[0]
        exported = con.sql("SELECT count(*) FROM segments.activation_exports").fetchall()[0][0]
    finally:
        con.close()
    assert ids == golden == segments == no_orders
    assert (events, orders, exported) == (0, 0, 0)
