"""The matching steps the assets call, on a real DuckDB file and real Splink: small inline
records, a model trained on them, and one matching pass over them."""

from __future__ import annotations

import logging
import random
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cdi_pipeline.lib.matching.backends import (
    BackendConfig,
    backend_of,
    keep_insertion_order,
    open_backend,
)
from cdi_pipeline.lib.matching.blocking import ComparisonBudgetExceeded, pair_bounds, preflight
from cdi_pipeline.lib.matching.ids import HISTORY_SCHEMA, ID_MAP_SCHEMA, read_previous_ids
from cdi_pipeline.lib.matching.input import MATCH_INPUT_COLUMNS, UNIQUE_ID, prepared_records
from cdi_pipeline.lib.matching.linkers import linker_for
from cdi_pipeline.lib.matching.matching_pass import match_records
from cdi_pipeline.lib.matching.model import ModelRejected, fit_model, retrain_reason
from cdi_pipeline.lib.matching.model_store import (
    load_current_model,
    model_for_spec,
    promote_model,
)
from cdi_pipeline.lib.matching.spec import ModelSpec, derive_spec
from cdi_pipeline.lib.matching.tables import MATCH_TABLES, PARAMETER_COLUMNS
from cdi_pipeline.lib.matching.training import train
from cdi_pipeline.lib.registry import MatchingConfig
from cdi_pipeline.lib.storage import registered, replace_tables

GIVEN = ["anna", "bram", "chris", "daan", "eva", "fleur", "gijs", "hanna", "ivo", "jesse",
         "kim", "lars", "milan", "noor", "olaf", "pien", "quinn", "roos", "sem", "tess"]
SURNAMES = ["jansen", "bakker", "visser", "smit", "meijer", "mulder", "bos", "vos", "peters",
            "hendriks", "dekker", "brouwer", "dijkstra", "koster", "prins", "huisman", "kok",
            "jacobs", "vermeulen", "postma"]
PERSONS = 120
CONFIG = MatchingConfig()


def _records(persons: int = PERSONS, seed: int = 3) -> pl.DataFrame:
    """Cleaned records of `persons` people, two or three records each (crm, shop,
    newsletter), sharing an email or a mobile number; a few surnames mistyped, a few fields
    missing. No two people share a given name and surname."""
    rng = random.Random(seed)
    names = [(g, s) for g in GIVEN for s in SURNAMES]
    rng.shuffle(names)
    rows = []
    for person, (given, surname) in enumerate(names[:persons]):
        born = date(1950, 1, 1) + timedelta(days=rng.randrange(20_000))
        email = f"{given}.{surname}{rng.randrange(10, 99)}@example.nl"
        phone = f"+316{rng.randrange(10_000_000, 99_999_999)}"
        postcode = f"{rng.randrange(1000, 9999)} {rng.choice('ABCDEFGH')}{rng.choice('JKLMNPRS')}"
        number, gender = str(rng.randrange(1, 200)), rng.choice("MF")
        street = rng.choice(["dorpsstraat", "kerkstraat", "molenweg", "stationsweg"])
        city = rng.choice(["amsterdam", "utrecht", "arnhem", "leiden"])
        for k, source in enumerate(("crm", "shop", "newsletter")[: rng.choice((2, 3))]):
            typo = k == 1 and rng.random() < 0.2
            with_email = k == 0 or rng.random() < 0.7
            rows.append({
                "source": source, "source_record_id": f"{source[0]}{person:04d}",
                "first_name_key": given, "first_name_canonical": given, "initials": given[0],
                "last_name_key": surname[:-1] + "x" if typo else surname,
                "date_of_birth": born if rng.random() < 0.9 else None, "gender": gender,
                "email": email if with_email else None,
                # Every record without the email carries the mobile number.
                "phone": phone if not with_email or rng.random() < 0.8 else None,
                "phone_type": "mobile",
                "postcode": postcode if rng.random() < 0.85 else None,
                "house_number": number, "street_key": street, "city_key": city,
                "person": person,
            })
    frame = pl.DataFrame(rows).with_columns(pl.col("date_of_birth").cast(pl.Date))
    return frame.with_columns(
        pl.when(pl.col("phone").is_not_null()).then(pl.col("phone_type")).alias("phone_type")
    )


class Warehouse:
    """A DuckDB warehouse file holding cleaned.customer_records; `connect` is what the
    steps read through (a connection for one `with` block, like the warehouse resource's)."""

    def __init__(self, root: Path, records: pl.DataFrame) -> None:
        self.path = root / "cdi.duckdb"
        self.models = root / "models"
        self.reports = root / "reports"
        with self.connect() as con, registered(con, "__records", records.drop("person")):
            con.execute("CREATE SCHEMA cleaned")
            con.execute("CREATE TABLE cleaned.customer_records AS SELECT * FROM __records")

    def connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.path))


@pytest.fixture(scope="module")
def records() -> pl.DataFrame:
    return _records()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, records):
    """A warehouse and the model fitted (and promoted) for its records."""
    warehouse = Warehouse(tmp_path_factory.mktemp("steps"), records)
    fit = fit_model(warehouse.connect, CONFIG, BackendConfig(), models_dir=warehouse.models,
                    charts_dir=warehouse.reports)
    promote_model(warehouse.models, fit.model)
    return warehouse, fit


# --- reading -------------------------------------------------------------------------------


def test_prepared_records_are_every_record_in_key_order(trained, records) -> None:
    warehouse, _ = trained
    frame = prepared_records(warehouse.connect, CONFIG)
    assert frame.columns == list(MATCH_INPUT_COLUMNS)
    assert frame.height == records.height
    keys = frame.get_column(UNIQUE_ID).to_list()
    assert keys == sorted(keys) and keys[0] == "crm|c0000"


def test_previous_ids_are_empty_before_the_first_run(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "empty.duckdb")) as con:
        previous = read_previous_ids(con)
    assert previous.xref.columns == ["source", "source_record_id", "customer_id"]
    assert previous.xref.is_empty() and previous.id_map.is_empty()
    assert previous.id_map.schema == pl.Schema(ID_MAP_SCHEMA)
    assert previous.history.schema == pl.Schema(HISTORY_SCHEMA)


# --- the model step ------------------------------------------------------------------------


def test_first_fit_trains_and_saves_without_promoting(tmp_path: Path, records) -> None:
    warehouse = Warehouse(tmp_path, records)
    fit = fit_model(warehouse.connect, CONFIG, BackendConfig(), models_dir=warehouse.models,
                    charts_dir=warehouse.reports)
    assert fit.retrained and fit.retrain_reason == "no saved model yet"
    assert fit.model.path.is_file() and load_current_model(warehouse.models) is None
    assert fit.parameters.qualified == "matching.model_parameters"
    assert fit.parameters.frame.columns == list(PARAMETER_COLUMNS)
    assert set(fit.parameters.frame.get_column("comparison")) == set(fit.spec.comparisons)
    assert fit.parameters.frame.get_column("model_version").unique().to_list() == [
        fit.model.version]
    assert fit.em_sessions.get_column("blocking_rule").to_list() == [
        ", ".join(r) for r in fit.spec.training_rules]
    assert set(fit.charts) == {"match_weights", "m_u_parameters"}
    assert all(path.stat().st_size > 0 for path in fit.charts.values())


def test_a_promoted_model_is_reused_until_retraining_is_asked_for(trained) -> None:
    warehouse, first = trained
    reused = fit_model(warehouse.connect, CONFIG, BackendConfig(), models_dir=warehouse.models,
                       charts_dir=warehouse.reports)
    assert not reused.retrained and reused.retrain_reason is None
    assert reused.model.version == first.model.version
    assert reused.parameters.frame.equals(first.parameters.frame)
    again = fit_model(warehouse.connect, CONFIG, BackendConfig(), models_dir=warehouse.models,
                      charts_dir=warehouse.reports, retrain=True)
    assert again.retrain_reason == "retraining requested in run config"
    # Training is deterministic: the same records give the same model version.
    assert again.model.version == first.model.version


def test_an_implausible_model_is_kept_for_inspection_and_rejected(tmp_path: Path,
                                                                  records) -> None:
    warehouse = Warehouse(tmp_path, records)
    # EM blocked on the names alone never sees the name comparisons disagree: their m stays
    # untrained.
    config = CONFIG.model_copy(
        update={"training_rules": [["first_name_canonical", "last_name_key"]]})
    with pytest.raises(ModelRejected, match="first_name: '[^']+' has no trained m"):
        fit_model(warehouse.connect, config, BackendConfig(), models_dir=warehouse.models,
                  charts_dir=warehouse.reports)
    assert load_current_model(warehouse.models) is None
    assert len(list(warehouse.models.glob("match_model_*.json"))) == 1


def test_retrain_reasons(trained) -> None:
    _, fit = trained
    spec, model = fit.spec, fit.model
    assert retrain_reason(model, spec, "duckdb", requested=False) is None
    assert retrain_reason(None, spec, "duckdb", requested=False) == "no saved model yet"
    assert retrain_reason(model, spec, "duckdb", requested=True) == (
        "retraining requested in run config")
    assert retrain_reason(model, spec, "duckdb", requested=False, damaged="unusable: x") == (
        "unusable: x")
    fewer = ModelSpec(spec.comparisons[:-1], spec.blocking_rules, spec.training_rules)
    assert "populated fields changed" in retrain_reason(model, fewer, "duckdb",
                                                        requested=False)
    assert retrain_reason(model, spec, "spark", requested=False) == (
        "the saved model was trained on the duckdb backend, matching.backend is spark")


def test_model_for_spec_refuses_a_missing_or_unfitting_model(trained, tmp_path: Path) -> None:
    warehouse, fit = trained
    assert model_for_spec(warehouse.models, fit.spec).version == fit.model.version
    with pytest.raises(RuntimeError, match="materialise matching/model first"):
        model_for_spec(tmp_path / "no_models", fit.spec)
    fewer = ModelSpec(fit.spec.comparisons[:-1], fit.spec.blocking_rules,
                      fit.spec.training_rules)
    with pytest.raises(RuntimeError, match="trained for other fields"):
        model_for_spec(warehouse.models, fewer)


def test_em_sessions_report_their_iterations(trained) -> None:
    warehouse, _ = trained
    frame = prepared_records(warehouse.connect, CONFIG)
    spec = derive_spec(frame)
    capped = CONFIG.model_copy(update={"em_max_iterations": 1})
    with open_backend(BackendConfig()) as db_api:
        _, sessions, _ = train(db_api, frame, spec, capped)
    assert [s["iterations"] for s in sessions] == [1] * len(spec.training_rules)
    assert not any(s["converged"] for s in sessions)
    with open_backend(BackendConfig()) as db_api:
        _, sessions, _ = train(db_api, frame, spec, CONFIG)
    assert all(1 <= s["iterations"] < CONFIG.em_max_iterations for s in sessions)
    assert all(s["converged"] for s in sessions)


# --- scoring -------------------------------------------------------------------------------


def test_backend_settings_and_the_preflight_budget(trained) -> None:
    warehouse, fit = trained
    frame = prepared_records(warehouse.connect, CONFIG)
    rules = fit.spec.blocking_rules
    bounds = pair_bounds(frame, rules)
    bound = int(bounds.get_column("pairs").sum())
    # Bounds within the budget settle the count without asking Splink.
    counted = preflight(None, rules, bound, bounds)
    assert counted.get_column("counted").unique().to_list() == ["upper bound"]
    assert int(counted.get_column("cumulative_pairs").max()) == bound
    with open_backend(BackendConfig()) as db_api:
        assert backend_of(db_api) == "duckdb"
        setting = "SELECT current_setting('preserve_insertion_order')"
        keep_insertion_order(db_api, False)
        assert db_api.duckdb_con.sql(setting).fetchall() == [(False,)]
        keep_insertion_order(db_api, True)
        assert db_api.duckdb_con.sql(setting).fetchall() == [(True,)]
        linker = linker_for(db_api, frame, fit.model.splink_settings,
                            fit.model.term_frequencies)
        exact = preflight(linker, rules, bound, None)
        distinct = int(exact.get_column("cumulative_pairs").max())
        assert exact.get_column("counted").unique().to_list() == ["exact"]
        assert 0 < distinct <= bound
        with pytest.raises(ComparisonBudgetExceeded, match="over the budget"):
            preflight(linker, rules, distinct - 1, bounds)


# --- the matching step ---------------------------------------------------------------------


def test_match_records_finds_every_person_and_continues_the_ids(trained, records,
                                                                caplog) -> None:
    warehouse, fit = trained
    log = logging.getLogger("test_matching_steps")

    def run(run_id: str):
        with caplog.at_level(logging.INFO, logger=log.name):
            result = match_records(
                warehouse.connect, CONFIG, BackendConfig(), models_dir=warehouse.models,
                overrides_file=warehouse.path.parent / "no_overrides.csv",
                charts_dir=warehouse.reports / run_id, run_id=run_id, log=log,
            )
        with warehouse.connect() as con:
            replace_tables(con, list(result.writes.values()))
        return result

    first = run("run-1")
    assert list(first.writes) == [t.qualified for t in MATCH_TABLES]
    assert first.model.version == fit.model.version
    assert any("matched" in m for m in caplog.messages)
    xref = first.outcome.xref.join(
        records.select("source", "source_record_id", "person"),
        on=["source", "source_record_id"],
    )
    # Every record mapped once; every person one customer, every customer one person.
    assert xref.height == records.height
    assert xref.group_by("person").agg(pl.col("customer_id").n_unique().alias("n"))\
        .get_column("n").max() == 1
    assert xref.group_by("customer_id").agg(pl.col("person").n_unique().alias("n"))\
        .get_column("n").max() == 1
    assert first.outcome.stats["customers"] == PERSONS == first.outcome.clusters.height
    assert first.outcome.stats["records"] == records.height
    assert first.statistics.get_column("figure").to_list() == list(first.outcome.stats)
    assert first.largest_cluster in (2, 3)
    assert first.cluster_sizes.get_column("clusters").sum() == PERSONS
    assert first.id_events.rows() == [("created", PERSONS)]
    assert first.records_per_link_kind.get_column("records").sum() == records.height
    assert "█" in first.cluster_size_histogram()
    assert set(first.outcome.charts) == {"waterfall", "comparison_viewer"}
    assert first.review_preview.columns == [
        "source_l", "source_record_id_l", "source_r", "source_record_id_r",
        "match_probability", "suggested_action"]
    # A second run on the same records keeps every id and adds no event to the history.
    second = run("run-2")
    assert second.outcome.xref.select("source", "source_record_id", "customer_id").equals(
        first.outcome.xref.select("source", "source_record_id", "customer_id"))
    assert second.id_events.is_empty()
    history = second.writes["matching.id_history"].frame
    assert history.height == PERSONS and set(history.get_column("run_id")) == {"run-1"}
    with warehouse.connect() as con:
        previous = read_previous_ids(con)
    assert previous.xref.height == records.height
    assert previous.id_map.height == PERSONS
