"""The matching layer end to end with real Dagster runs on a generated source set.

The session's full refresh of the generated set (generated_site) is the baseline; each
scenario copies its input folder and warehouse to a fresh folder and runs again there, so the
scenarios cannot disturb each other and the expensive first run (with model training) happens
once.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from cdi_pipeline.defs.keys import MODEL
from cdi_pipeline.lib.matching import visualisations
from cdi_pipeline.lib.matching.backends import BackendConfig, open_backend
from cdi_pipeline.lib.matching.blocking import ComparisonBudgetExceeded, pair_bounds
from cdi_pipeline.lib.matching.input import RECORD_COLUMNS, prepare_input
from cdi_pipeline.lib.matching.linkers import linker_for
from cdi_pipeline.lib.matching.model import ModelRejected
from cdi_pipeline.lib.matching.model_store import load_current_model
from cdi_pipeline.lib.matching.scoring import score_pairs
from cdi_pipeline.lib.matching.spec import derive_spec
from cdi_pipeline_tests.warehouse_state import (
    ASSET_JOB,
    GENERATED_PERSONS,
    Site,
    materialized_in,
    published_outputs,
    run_job,
)
from cdi_pipeline_tests.warehouse_state import checks as _checks
from cdi_pipeline_tests.warehouse_state import failures as _failures

PERSONS = GENERATED_PERSONS
MATCHING_CHECKS = {"model_sanity", "cluster_size", "linked_share", "overrides_honoured",
                   "every_record_mapped"}


# Every layer built from the matching layer's customer_xref.
DOWNSTREAM_OF_MATCHING = ("golden", "segments", "enrichment", "published")


def _model_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (materialization,) = result.asset_materializations_for_node("matching__model")
    return {k: v.value for k, v in materialization.metadata.items()}


def _assert_matching_checks_pass(result: dg.ExecuteInProcessResult) -> None:
    assert result.success, _failures(result)
    checks = _checks(result)
    assert set(checks) >= MATCHING_CHECKS
    failed = {n: c.description for n, c in checks.items() if not c.passed and n != "accuracy"}
    assert failed == {}


@pytest.fixture(scope="module")
def first_run(generated_site: Site) -> tuple[Site, dg.ExecuteInProcessResult]:
    _assert_matching_checks_pass(generated_site.result)
    return generated_site, generated_site.result


def test_first_run_maps_every_cleaned_record_once(first_run) -> None:
    site, result = first_run
    checks = _checks(result)
    assert "accuracy" in checks  # the registry names a truth file, so accuracy is measured
    assert _model_metadata(result)["retrained"] is True
    unmatched = site.query(
        """
        SELECT count(*) FILTER (WHERE x.customer_id IS NULL) AS unmapped,
               count(*) FILTER (WHERE c.source IS NULL) AS unknown,
               count(*) AS records
        FROM cleaned.customer_records c
        FULL JOIN matching.customer_xref x USING (source, source_record_id)
        """
    ).row(0, named=True)
    assert unmatched["unmapped"] == 0 and unmatched["unknown"] == 0
    xref = site.xref()
    assert xref.height == unmatched["records"] > 500
    assert xref.select("source", "source_record_id").is_duplicated().sum() == 0
    # The matching layer did link records (the data has about 2.2 records per person) and
    # the cluster sizes it reports are the real ones.
    customers = xref.get_column("customer_id").n_unique()
    assert PERSONS * 0.8 < customers < xref.height * 0.8
    sizes = xref.with_columns(pl.len().over("customer_id").alias("actual"))
    assert sizes.filter(pl.col("actual") != pl.col("cluster_size")).is_empty()
    history = site.query("SELECT DISTINCT event FROM matching.id_history").get_column("event")
    assert history.to_list() == ["created"]


def test_rerun_on_unchanged_input_is_stable(first_run, tmp_path: Path) -> None:
    base, first = first_run
    site = base.copy_to(tmp_path / "site")
    before = site.xref()
    history_before = site.query("SELECT * FROM matching.id_history ORDER BY ALL")
    second = run_job(site.registry, site.warehouse)
    _assert_matching_checks_pass(second)
    after = site.xref()
    assert after.select("source", "source_record_id", "customer_id").equals(
        before.select("source", "source_record_id", "customer_id")
    )
    meta, meta_first = _model_metadata(second), _model_metadata(first)
    assert meta["retrained"] is False
    assert meta["model_version"] == meta_first["model_version"]
    assert sorted(p.name for p in site.models.glob("match_model_*.json")) == [
        f"match_model_{meta_first['model_version']}.json"
    ]
    # No id events in the second run.
    assert site.query("SELECT * FROM matching.id_history ORDER BY ALL").equals(history_before)


def _members(xref: pl.DataFrame) -> dict[frozenset[str], str]:
    """Each customer's set of records -> its customer_id."""
    groups = xref.group_by("customer_id").agg(
        (pl.col("source") + "|" + pl.col("source_record_id")).alias("records")
    )
    return {frozenset(r): c for c, r in groups.iter_rows()}


def test_deleted_records_leave_every_other_id_alone(first_run, tmp_path: Path) -> None:
    base, _ = first_run
    site = base.copy_to(tmp_path / "site")
    before = site.xref()
    erp = before.filter(pl.col("source") == "erp_customers")
    # Singletons (their customer disappears) and records of two-record customers (the
    # customer shrinks to one): removing them cannot break a chain that holds others together.
    singletons = erp.filter(pl.col("cluster_size") == 1).head(4)
    from_pairs = erp.filter(pl.col("cluster_size") == 2).head(4)
    assert singletons.height == 4 and from_pairs.height == 4
    gone = pl.concat([singletons, from_pairs])
    path = site.root / "input" / "sources" / "erp_customers.parquet"
    rows = pl.read_parquet(path)
    kept = rows.filter(
        ~pl.col("customer_number").cast(pl.String).is_in(gone.get_column("source_record_id")
                                                          .implode())
    )
    assert kept.height == rows.height - gone.height
    kept.write_parquet(path)

    result = run_job(site.registry, site.warehouse)
    _assert_matching_checks_pass(result)
    after = site.xref()
    remaining = before.join(gone, on=["source", "source_record_id"], how="anti")
    assert after.height == remaining.height
    assert after.select("source", "source_record_id").equals(
        remaining.select("source", "source_record_id")
    )

    # Every remaining record keeps its customer id: the model and its term frequencies are
    # frozen, so no other pair's score moves, and the removed records held no chain together.
    compared = remaining.join(after, on=["source", "source_record_id"], suffix="_after")
    changed = compared.filter(pl.col("customer_id") != pl.col("customer_id_after"))
    assert changed.is_empty(), changed
    assert _members(remaining) == _members(after)
    history = site.query("SELECT * FROM matching.id_history WHERE run_id = "
                         f"'{result.run_id}'")
    # The singletons' customers are retired, and nothing else is.
    id_map = site.query("SELECT * FROM matching.customer_id_map")
    status = dict(id_map.select("customer_id", "status").iter_rows())
    assert {status[c] for c in singletons.get_column("customer_id")} == {"retired"}
    assert {status[c] for c in from_pairs.get_column("customer_id")} <= {"active", "merged"}
    retired = history.filter(pl.col("event") == "retired").get_column("old_customer_id")
    assert sorted(retired) == sorted(singletons.get_column("customer_id"))


def test_steward_overrides_win(first_run, tmp_path: Path) -> None:
    base, _ = first_run
    site = base.copy_to(tmp_path / "site")
    before = site.xref()
    # cannot_link: two records the model put in one customer of three or more records.
    big_id = (
        before.filter(pl.col("cluster_size") >= 3).sort("cluster_size", "customer_id")
        .get_column("customer_id")[0]
    )
    big = before.filter(pl.col("customer_id") == big_id)
    apart = big.head(1), big.tail(1)
    # must_link: a two-record customer and a one-record customer from another source.
    pair_id = before.filter(pl.col("cluster_size") == 2).get_column("customer_id")[0]
    pair = before.filter(pl.col("customer_id") == pair_id)
    single = before.filter(
        (pl.col("cluster_size") == 1) & ~pl.col("source").is_in(pair.get_column("source")
                                                                 .implode())
    ).head(1)
    single_id = single.get_column("customer_id")[0]

    def side(frame: pl.DataFrame) -> str:
        return f"{frame['source'][0]},{frame['source_record_id'][0]}"

    overrides = site.root / "input" / "governance" / "match_overrides.csv"
    overrides.parent.mkdir()
    overrides.write_text(
        "decision,source_l,source_record_id_l,source_r,source_record_id_r,decided_by,reason,"
        "decided_on\n"
        f"cannot_link,{side(apart[0])},{side(apart[1])},tester,different people,2026-10-02\n"
        f"must_link,{side(pair.head(1))},{side(single)},tester,same person,2026-10-02\n",
        encoding="utf-8",
    )
    result = run_job(site.registry, site.warehouse)
    _assert_matching_checks_pass(result)
    honoured = _checks(result)["overrides_honoured"]
    assert honoured.passed and honoured.metadata["overrides"].value == 2

    after = site.xref()
    cid = dict(
        after.select(pl.col("source") + "|" + pl.col("source_record_id"), "customer_id")
        .iter_rows()
    )

    def key(frame: pl.DataFrame) -> str:
        return f"{frame['source'][0]}|{frame['source_record_id'][0]}"

    # The cannot-link split the big customer; the id stays with the larger part.
    assert cid[key(apart[0])] != cid[key(apart[1])]
    history = site.query(f"SELECT * FROM matching.id_history WHERE run_id = '{result.run_id}'")
    splits = history.filter((pl.col("event") == "split") & (pl.col("old_customer_id") == big_id))
    assert splits.height >= 1
    new_parts = set(splits.get_column("new_customer_id"))
    assert {cid[key(apart[0])], cid[key(apart[1])]} <= new_parts | {big_id}
    parts = (
        big.select("source", "source_record_id")
        .join(after, on=["source", "source_record_id"])
        .group_by("customer_id").len()
    )
    assert parts.height >= 2
    largest = parts.filter(pl.col("len") == pl.col("len").max()).get_column("customer_id")
    assert big_id in largest.to_list()  # the id stays with the part holding most records
    # The must-link merged the single record into the pair's customer, which kept its id.
    assert cid[key(pair.head(1))] == cid[key(pair.tail(1))] == cid[key(single)] == pair_id
    merged = history.filter(pl.col("event") == "merged").select(
        "old_customer_id", "new_customer_id", "records"
    )
    assert merged.rows() == [(single_id, pair_id, 1)]
    id_map = dict(site.query("SELECT customer_id, current_customer_id FROM "
                             "matching.customer_id_map").iter_rows())
    assert id_map[single_id] == pair_id
    steward = site.query(
        f"SELECT has_steward_link FROM matching.clusters WHERE customer_id = '{pair_id}'"
    )
    assert steward.rows() == [(True,)]
    decided = site.query(
        "SELECT decision FROM matching.pairs WHERE decided_by_kind = 'steward' ORDER BY 1"
    ).get_column("decision")
    assert decided.to_list() == ["cannot_link", "must_link"]


def test_accuracy_on_the_generated_set_holds(first_run) -> None:
    # Measured 0.9833 / 0.9477 / 0.9652 (GENERATED_PERSONS, GENERATED_SEED, seeded
    # training): half a point under, so a point lost fails `make test`.
    _, result = first_run
    scores = {k: v.value for k, v in _checks(result)["accuracy"].metadata.items()}
    assert scores["pairwise_precision"] >= 0.978
    assert scores["pairwise_recall"] >= 0.942
    assert scores["pairwise_f1"] >= 0.960


def test_model_trained_on_bad_rules_is_rejected(first_run, tmp_path: Path) -> None:
    base, _ = first_run
    site = base.copy_to(tmp_path / "site")
    pointer = site.models / "current.json"
    current = pointer.read_bytes()
    models_before = set(site.models.glob("match_model_*.json"))
    # EM blocked on the names alone can never estimate the name comparisons' m: every pair it
    # sees agrees on them (the collapse seen at a million records started from this rule).
    with site.registry.open("a", encoding="utf-8") as handle:
        handle.write("matching:\n  training_rules: [[first_name_canonical, last_name_key]]\n")
    with pytest.raises(ModelRejected, match="implausible and was not promoted") as info:
        run_job(site.registry, site.warehouse, ASSET_JOB, assets=[MODEL], raise_on_error=True,
                run_config={"ops": {"matching__model": {"config": {"retrain": True}}}})
    assert re.search(r"first_name: '[^']+' has no trained m", str(info.value))
    assert re.search(r"last_name: '[^']+' has no trained m", str(info.value))
    assert pointer.read_bytes() == current
    rejected = set(site.models.glob("match_model_*.json")) - models_before
    assert len(rejected) == 1 and rejected.pop().stem.removeprefix("match_model_") in str(
        info.value
    )


def test_comparison_budget_stops_the_run_before_predicting(first_run, tmp_path: Path) -> None:
    base, _ = first_run
    site = base.copy_to(tmp_path / "site")
    pairs_before = site.query("SELECT count(*) AS n FROM matching.pairs").item()
    with site.registry.open("a", encoding="utf-8") as handle:
        handle.write("matching:\n  max_comparisons_per_record: 0.01\n")
    result = run_job(site.registry, site.warehouse)
    assert not result.success
    failures = "\n".join(_failures(result))
    assert "ComparisonBudgetExceeded" in failures
    assert "over the budget" in failures and "email_block: +" in failures
    # Nothing of the matching layer was replaced.
    assert site.query("SELECT count(*) AS n FROM matching.pairs").item() == pairs_before


def test_oversized_clusters_fail_the_blocking_size_check(first_run, tmp_path: Path) -> None:
    base, _ = first_run
    site = base.copy_to(tmp_path / "site")
    published = published_outputs(site.warehouse)
    with site.registry.open("a", encoding="utf-8") as handle:
        handle.write("matching:\n  max_cluster_size: 2\n")
    result = run_job(site.registry, site.warehouse)
    check = _checks(result)["cluster_size"]
    assert not check.passed
    assert check.metadata["oversized_clusters"].value > 0
    assert "cluster_size" in check.metadata["cluster_size_distribution"].value
    # Nothing is built from the oversized clusters, and what others read stays as it was.
    assert materialized_in(result, DOWNSTREAM_OF_MATCHING) == []
    assert published_outputs(site.warehouse) == published


def test_explanation_charts_are_written_and_linked(first_run) -> None:
    site, result = first_run
    linked = {}
    for node in ("matching__model", "match_customers"):
        for materialization in result.asset_materializations_for_node(node):
            linked.update(
                {k: v.value for k, v in materialization.metadata.items() if k.startswith("chart_")}
            )
    assert set(linked) == {
        "chart_match_weights", "chart_m_u_parameters", "chart_waterfall",
        "chart_comparison_viewer",
    }
    for path in linked.values():
        text = Path(path).read_text(encoding="utf-8")
        assert Path(path).is_relative_to(site.warehouse) and "<html" in text.lower()


def test_missing_frozen_term_frequencies_fail_clearly(first_run, tmp_path: Path) -> None:
    base, _ = first_run
    site = base.copy_to(tmp_path / "site")
    (tf_dir,) = site.models.glob("match_model_*.tf")
    shutil.rmtree(tf_dir)
    # Matching alone refuses the damaged model: silently recomputing the frequencies from
    # today's data would move scores and customer ids.
    with pytest.raises(Exception, match="term-frequency tables") as info:
        run_job(site.registry, site.warehouse, ASSET_JOB, raise_on_error=True, assets=[
            dg.AssetKey(["matching", n]) for n in ("pairs", "review_queue", "clusters",
                                                   "customer_xref", "id_history",
                                                   "customer_id_map")])
    assert str(tf_dir) in str(info.value) and "retrain" in str(info.value)
    # The model asset replaces it: a full refresh retrains and succeeds.
    result = run_job(site.registry, site.warehouse)
    _assert_matching_checks_pass(result)
    metadata = _model_metadata(result)
    assert metadata["retrained"] is True
    assert "unusable" in metadata["retrain_reason"]


def _prepared(site):
    """The saved model, the prepared matching input and its spec, from a built site."""
    records = site.query("SELECT * FROM cleaned.customer_records")
    frame = prepare_input(records.select(*RECORD_COLUMNS,
                                         *(c for c in records.columns if c.startswith("id_"))),
                          max_block_size=50)
    return load_current_model(site.models), frame, derive_spec(frame)


def test_scoring_samples_the_viewer_and_leaves_no_splink_tables(first_run, tmp_path: Path,
                                                                monkeypatch) -> None:
    site, _ = first_run
    model, frame, spec = _prepared(site)
    sizes = {}
    for label, viewer_pairs in (("whole", 10**9), ("sampled", 40)):
        monkeypatch.setattr(visualisations, "VIEWER_PAIRS", viewer_pairs)
        charts_dir = tmp_path / label
        with open_backend(BackendConfig()) as db_api:
            linker = linker_for(db_api, frame, model.splink_settings, model.term_frequencies)
            scoring = score_pairs(db_api, linker, spec, min_probability=0.01,
                                  budget=1e9, charts_dir=charts_dir)
            pairs, charts = scoring.pairs, scoring.charts
            # The prediction and every intermediate table are dropped once pairs are out.
            left = db_api.duckdb_con.sql(
                "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '__splink__%'"
            ).fetchall()
        assert left == []
        assert pairs.height > 40 and set(charts) == {"waterfall", "comparison_viewer"}
        sizes[label] = charts["comparison_viewer"].stat().st_size
    # Built from 40 pairs, the viewer holds fewer comparison patterns and examples.
    assert sizes["sampled"] < sizes["whole"]


def test_preflight_bound_is_trusted_only_within_the_budget(first_run) -> None:
    site, _ = first_run
    model, frame, spec = _prepared(site)
    bounds = pair_bounds(frame, spec.blocking_rules)
    bound = int(bounds.get_column("pairs").sum())
    with open_backend(BackendConfig()) as db_api:
        def score(suffix: str, **kwargs):
            linker = linker_for(db_api, frame, model.splink_settings,
                                model.term_frequencies, name_suffix=suffix)
            return score_pairs(db_api, linker, spec, min_probability=0.5, charts_dir=None,
                               **kwargs)

        exact = score("_a", budget=1e12)
        distinct = int(exact.preflight.get_column("cumulative_pairs").max())
        # Without bounds Splink counts distinct pairs: the pairs then scored, no more.
        assert exact.preflight.get_column("counted").unique().to_list() == ["exact"]
        assert exact.comparisons == distinct < bound
        # A bound within the budget stands in for the exact count, rule by rule.
        within = score("_b", budget=bound, bounds=bounds)
        assert within.preflight.get_column("counted").unique().to_list() == ["upper bound"]
        assert within.preflight.get_column("blocking_rule").to_list() == [
            ", ".join(r) for r in spec.blocking_rules
        ]
        assert int(within.preflight.get_column("cumulative_pairs").max()) == bound
        assert within.comparisons == distinct
        # A bound over the budget is not a verdict: the exact count decides, both ways.
        over = score("_c", budget=distinct, bounds=bounds)
        assert int(over.preflight.get_column("cumulative_pairs").max()) == distinct
        with pytest.raises(ComparisonBudgetExceeded):
            score("_d", budget=distinct - 1, bounds=bounds)


def test_chunked_prediction_scores_the_same_pairs(first_run, tmp_path: Path) -> None:
    """Scored in slices of the blocked pairs, the chunks together score every pair once;
    the charts come from a separate sample, whose pairs stay out of the result."""
    site, _ = first_run
    model, frame, spec = _prepared(site)
    bounds = pair_bounds(frame, spec.blocking_rules)
    results = {}
    with open_backend(BackendConfig()) as db_api:
        for suffix, per_chunk in (("_one", 10**12), ("_many", 500)):
            linker = linker_for(db_api, frame, model.splink_settings,
                                model.term_frequencies, name_suffix=suffix)
            results[suffix] = score_pairs(
                db_api, linker, spec, min_probability=0.01, budget=1e12,
                charts_dir=tmp_path / suffix, bounds=bounds, pairs_per_chunk=per_chunk,
            )
    one, many = results["_one"], results["_many"]
    assert int(bounds.get_column("pairs").sum()) // 500 >= 5  # really split
    assert many.comparisons == one.comparisons > 0
    keys = ["unique_id_l", "unique_id_r"]
    assert many.pairs.sort(keys).equals(one.pairs.sort(keys))
    assert set(many.charts) == {"waterfall", "comparison_viewer"}
    assert all(path.stat().st_size > 0 for path in many.charts.values())


def test_golden_records_in_passes_equal_one_pass(first_run, tmp_path: Path) -> None:
    site, _ = first_run
    passes = site.copy_to(tmp_path / "passes")
    with passes.registry.open("a", encoding="utf-8") as handle:
        handle.write("golden:\n  batch_customers: 37\n")
    result = run_job(passes.registry, passes.warehouse, ASSET_JOB, raise_on_error=True,
                     assets=[dg.AssetKey(["golden", "customers"]),
                             dg.AssetKey(["golden", "field_lineage"])])
    (materialization,) = result.asset_materializations_for_node("golden_customers")[:1]
    customers = site.query("SELECT count(*) AS n FROM golden.customers").item()
    assert materialization.metadata["survivorship_passes"].value == -(-customers // 37)
    for table, order in (("golden.customers", "customer_id"),
                         ("golden.field_lineage", "customer_id, field")):
        sql = f"SELECT * FROM {table} ORDER BY {order}"
        assert passes.query(sql).equals(site.query(sql)), table
