"""Incremental matching gives what a full rebuild gives, on a small generated set.

The last rows of three source files are held back; full_refresh builds the warehouse from
the rest. Then the held-back rows arrive two ways, each in its own copy:
- as files in incoming/<source>/, picked up by the sensor and loaded by incremental_refresh;
- appended to the source files, followed by a full_refresh.
Both must give every record the same customer id.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from cdi_pipeline.datagen import generate
from cdi_pipeline.definitions import build_definitions
from cdi_pipeline.defs.incremental.jobs import INCREMENTAL_REFRESH
from cdi_pipeline.defs.incremental.sensors import (
    AFTER_RUN_TAG,
    INCOMING_SENSOR,
    MAX_ATTEMPTS,
    PUBLISH_SENSOR,
)
from cdi_pipeline.defs.jobs.jobs import PUBLISH_REFRESH
from cdi_pipeline_tests.warehouse_state import (
    differences,
    failures,
    fingerprint,
    published_outputs,
    run_job,
)

HELD_BACK = {"crm_contacts": 12, "support_tickets": 15, "webshop_orders": 10}


def _split_csv(path: Path, rows: int, delimiter: str, encoding: str) -> str:
    """Remove the last `rows` data rows of a CSV; return them with the header as new text."""
    lines = path.read_text(encoding=encoding).splitlines(keepends=True)
    path.write_text("".join(lines[:-rows]), encoding=encoding)
    return "".join([lines[0], *lines[-rows:]])


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    base = tmp_path_factory.mktemp("incremental")
    full = base / "full" / "input"
    generate(persons=300, seed=9, out_dir=full, progress=False)
    with (full / "sources.yaml").open("a", encoding="utf-8") as handle:
        handle.write("max_rejected_share: 0.2\n")
    reduced = base / "reduced"
    shutil.copytree(full, reduced / "input")
    incoming = {}
    for name, rows in HELD_BACK.items():
        if name == "webshop_orders":
            path = reduced / "input" / "sources" / "webshop_orders.parquet"
            frame = pl.read_parquet(path)
            frame.head(frame.height - rows).write_parquet(path)
            incoming[name] = ("parquet", frame.tail(rows))
        else:
            delimiter = ";" if name == "crm_contacts" else ","
            incoming[name] = ("csv", _split_csv(reduced / "input" / "sources" / f"{name}.csv",
                                                rows, delimiter, "utf-8"))
    assert run_job(reduced / "input" / "sources.yaml", reduced / "warehouse").success
    return base, full, reduced, incoming


def _read(root: Path, sql: str, file: str = "cdi.duckdb") -> pl.DataFrame:
    """One query on a site's warehouse (or analyst) file, opened read-only."""
    con = duckdb.connect(str(root / "warehouse" / file), read_only=True)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


def _xref(root: Path) -> pl.DataFrame:
    return _read(root, "SELECT source, source_record_id, customer_id FROM matching.customer_xref "
                       "ORDER BY ALL")


def _count(root: Path, sql: str) -> int:
    return _read(root, sql).item()


def test_incremental_refresh_equals_a_full_rebuild(sites, tmp_path: Path) -> None:
    base, full, reduced, incoming = sites
    # Route 1: drop files in incoming/, let the sensor ask for a run, run it.
    inc = tmp_path / "inc"
    shutil.copytree(reduced, inc)
    for name, (kind, content) in incoming.items():
        folder = inc / "input" / "incoming" / name
        folder.mkdir(parents=True)
        if kind == "parquet":
            content.write_parquet(folder / "batch1.parquet")
        else:
            (folder / "batch1.csv").write_text(content, encoding="utf-8")
    before = _xref(inc)
    defs = build_definitions(inc / "input" / "sources.yaml", inc / "warehouse")
    sensor = defs.resolve_sensor_def(INCOMING_SENSOR)
    with dg.instance_for_test() as instance:
        requests = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs)
        ).run_requests
        assert len(requests) == 1
        files = requests[0].run_config["ops"]["incremental_match"]["config"]["files"]
        assert sorted(files) == sorted(
            f"incoming/{n}/batch1.{'parquet' if k == 'parquet' else 'csv'}"
            for n, (k, _) in incoming.items()
        )
        result = run_job(inc / "input" / "sources.yaml", inc / "warehouse", INCREMENTAL_REFRESH,
                         run_config=requests[0].run_config, instance=instance)
        failures = [e.event_specific_data.error.to_string()[-3000:] for e in result.all_events
                    if e.event_type_value == "STEP_FAILURE"]
        assert result.success, failures
        # Its success asks for a republish of the analyst file and the exports.
        stale = _analytics(inc)
        publish_sensor = defs.resolve_sensor_def(PUBLISH_SENSOR)
        republish = publish_sensor(dg.build_run_status_sensor_context(
            sensor_name=PUBLISH_SENSOR, dagster_event=result.get_run_success_event(),
            dagster_instance=instance, dagster_run=result.dagster_run,
        ))
        assert republish.tags[AFTER_RUN_TAG] == result.run_id
        assert run_job(inc / "input" / "sources.yaml", inc / "warehouse", PUBLISH_REFRESH,
                       instance=instance, tags=republish.tags).success
        # A publish run not yet started will read the newest warehouse: no second one.
        waiting = instance.create_run_for_job(defs.resolve_job_def(PUBLISH_REFRESH))
        again = publish_sensor(dg.build_run_status_sensor_context(
            sensor_name=PUBLISH_SENSOR, dagster_event=result.get_run_success_event(),
            dagster_instance=instance, dagster_run=result.dagster_run,
        ))
        assert isinstance(again, dg.SkipReason) and waiting.run_id in again.skip_message
    # Where the time went is in the metadata, phase by phase.
    metadata = next(e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
                    ).event_specific_data.materialization.metadata
    phases = metadata["seconds_by_phase"].value
    for phase in ("load and clean the new files", "score new records against their blocking "
                  "candidates", "re-match the affected customers", "write (one transaction)"):
        assert f"| {phase} |" in phases, phases
    # Every table the batch rewrote shows its whole size and its columns, as after a full run.
    materialized = {
        e.event_specific_data.materialization.asset_key:
            e.event_specific_data.materialization.metadata
        for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
    }
    assert len(materialized) == 15 + len(incoming)  # and the raw table of each source
    for key, meta in materialized.items():
        table = ".".join(key.path)
        assert meta["dagster/row_count"].value == _count(inc, f"SELECT count(*) FROM {table}")
        assert meta["dagster/table_name"].value == f"cdi.{table}"
        assert [c.name for c in meta["dagster/column_schema"].schema.columns] == _read(
            inc, f"SELECT * FROM {table} LIMIT 0").columns
    # Files were moved out of the way, so the sensor does not ask again.
    assert not list((inc / "input" / "incoming").glob("*/*.*"))
    after = _xref(inc)
    assert after.height == before.height + HELD_BACK["crm_contacts"] + HELD_BACK[
        "support_tickets"] - _held_back_rejects(inc)

    # Route 2: the same rows appended to the sources, then a full rebuild from the same state.
    rebuilt = tmp_path / "rebuilt"
    shutil.copytree(reduced, rebuilt)
    for name in HELD_BACK:
        suffix = "parquet" if name == "webshop_orders" else "csv"
        shutil.copy(full / "sources" / f"{name}.{suffix}",
                    rebuilt / "input" / "sources" / f"{name}.{suffix}")
    assert run_job(rebuilt / "input" / "sources.yaml", rebuilt / "warehouse").success
    expected = _xref(rebuilt)

    joined = after.join(expected, on=["source", "source_record_id"], how="full",
                        suffix="_full", coalesce=True)
    differ = joined.filter(pl.col("customer_id").ne_missing(pl.col("customer_id_full")))
    assert differ.is_empty(), differ
    # Downstream tables agree for every customer, not just the touched ones.
    for table, columns in (("golden.customers", "customer_id, email, phone, postcode, records"),
                           ("golden.customer_features", "customer_id, order_count, revenue"),
                           ("segments.customer_segments", "customer_id, lifecycle_stage")):
        sql = f"SELECT {columns} FROM {table} ORDER BY customer_id"
        assert _read(inc, sql).equals(_read(rebuilt, sql)), table
    assert _count(inc, "SELECT count(*) FROM cleaned.activities") == _count(
        rebuilt, "SELECT count(*) FROM cleaned.activities")
    # Analysts read the batch's customers after the republish, as after a full rebuild.
    published = _analytics(inc)
    assert not published.equals(stale)
    assert published.equals(_analytics(rebuilt))
    rfm = _read(inc, "SELECT customer_id, rfm_segment FROM customers ORDER BY ALL",
                "analytics.duckdb")
    assert rfm.equals(_read(inc, "SELECT customer_id, rfm_segment FROM "
                                  "segments.customer_segments ORDER BY ALL"))
    # The identity tables stay consistent with each other after the row-level update.
    for sql in (
        "SELECT count(*) FROM (SELECT DISTINCT customer_id FROM matching.customer_xref) x "
        "FULL JOIN matching.clusters c USING (customer_id) "
        "WHERE x.customer_id IS NULL OR c.records IS NULL",
        "SELECT count(*) FROM (SELECT DISTINCT customer_id FROM matching.customer_xref) x "
        "ANTI JOIN matching.customer_id_map m ON m.customer_id = x.customer_id "
        "AND m.status = 'active'",
        "SELECT count(*) FROM matching.pairs GROUP BY source_l, source_record_id_l, source_r, "
        "source_record_id_r HAVING count(*) > 1",
    ):
        assert _count(inc, f"SELECT coalesce(({sql}), 0)") == 0, sql


def _analytics(root: Path) -> pl.DataFrame:
    """The analyst file's customers: hashed keys, area, lifecycle stage.

    RFM scores are left out: a batch rescores only the customers it touches (against the
    whole population's quantiles), so an untouched customer near a quantile edge may score
    differently in a full rebuild; the warehouse comparison above leaves them out too.
    """
    return _read(root, "SELECT customer_id, email_key, phone_key, postcode_area, records, "
                       "lifecycle_stage FROM customers ORDER BY customer_id", "analytics.duckdb")


def _drop_batch(root: Path, incoming: dict) -> list[Path]:
    """The held-back rows as files in root's incoming/<source>/; returns their paths."""
    paths = []
    for name, (kind, content) in incoming.items():
        folder = root / "input" / "incoming" / name
        folder.mkdir(parents=True)
        path = folder / f"batch1.{kind}"
        if kind == "parquet":
            content.write_parquet(path)
        else:
            path.write_text(content, encoding="utf-8")
        paths.append(path)
    return paths


def test_a_batch_that_fails_a_gate_changes_nothing(sites, tmp_path: Path) -> None:
    # The registry now allows two records per customer: the customers break the
    # cluster-size gate, as they would stop a full refresh. The batch is rolled back whole.
    _, _, reduced, incoming = sites
    root = tmp_path / "inc"
    shutil.copytree(reduced, root, symlinks=True)
    files = _drop_batch(root, incoming)
    registry, warehouse = root / "input" / "sources.yaml", root / "warehouse"
    with registry.open("a", encoding="utf-8") as handle:
        handle.write("matching:\n  max_cluster_size: 2\n")
    tables, published = fingerprint(warehouse / "cdi.duckdb"), published_outputs(warehouse)
    defs = build_definitions(registry, warehouse)
    sensor = defs.resolve_sensor_def(INCOMING_SENSOR)
    with dg.instance_for_test() as instance:
        for _ in range(MAX_ATTEMPTS):
            [request] = sensor.evaluate_tick(dg.build_sensor_context(
                instance=instance, definitions=defs)).run_requests
            result = run_job(registry, warehouse, INCREMENTAL_REFRESH, instance=instance,
                             run_config=request.run_config, tags=request.tags)
            assert not result.success
            assert "gates failed, nothing written: cluster_size:" in " ".join(failures(result))
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert differences(tables, fingerprint(warehouse / "cdi.duckdb")) == []
    assert published_outputs(warehouse) == published
    assert all(path.exists() for path in files)  # still waiting in incoming/
    # The sensor says why it waits: the gate and its finding, by count.
    assert tick.run_requests == []
    assert "cluster_size: " in tick.skip_message and "above 2 records" in tick.skip_message


def _held_back_rejects(root: Path) -> int:
    """Held-back identity rows the cleaning held back (they never reach the identity map)."""
    return _count(root, "SELECT count(*) FROM cleaned.quarantine WHERE scope = 'record' "
                  "AND source_file LIKE '%/loaded/%'")


def test_sensor_retries_a_failed_batch_a_few_times_then_waits(
    small_registry: Path, tmp_path: Path
) -> None:
    """A batch whose run failed (or was killed, see test_reliability_runs) is tried again on
    the next tick, up to MAX_ATTEMPTS runs; then the sensor says why it waits."""
    folder = small_registry.parent / "incoming" / "crm"
    folder.mkdir(parents=True)
    # A row with a field too few: the file is refused, so every run of it fails.
    (folder / "batch1.csv").write_text(
        "contactnummer;voornaam;achternaam;geboortedatum;email;telefoon;postcode\n"
        "C7;Kees;Smit;01-02-1970;kees@example.com;0611111111\n", encoding="utf-8")
    defs = build_definitions(small_registry, tmp_path / "warehouse")
    sensor = defs.resolve_sensor_def(INCOMING_SENSOR)
    keys = []
    with dg.instance_for_test() as instance:
        for _ in range(MAX_ATTEMPTS):
            tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance,
                                                                definitions=defs))
            [request] = tick.run_requests
            keys.append(request.run_key)
            result = run_job(small_registry, tmp_path / "warehouse", INCREMENTAL_REFRESH,
                             run_config=request.run_config, instance=instance, tags=request.tags)
            assert not result.success
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert len(set(keys)) == MAX_ATTEMPTS
    assert tick.run_requests == []
    assert f"{MAX_ATTEMPTS} runs for these files failed" in tick.skip_message
    assert (folder / "batch1.csv").exists()


def test_a_batch_mostly_held_back_is_refused_before_matching(
    small_registry: Path, tmp_path: Path
) -> None:
    # Two of the batch's three records identify nobody (no name, contact or birth date):
    # held back whole, far over the 5% default, so the batch stops at the cleaned layer's
    # rejected-share gate and nothing of it is written.
    folder = small_registry.parent / "incoming" / "crm"
    folder.mkdir(parents=True)
    (folder / "batch1.csv").write_text(
        "contactnummer;voornaam;achternaam;geboortedatum;email;telefoon;postcode\n"
        "C7;Kees;Smit;01-02-1970;kees@example.com;0611111111;1234 AB\n"
        "C8;;;;;;\nC9;;;;;;\n", encoding="utf-8")
    warehouse = tmp_path / "warehouse"
    assert run_job(small_registry, warehouse, layers=("raw", "cleaned")).success
    before = fingerprint(warehouse / "cdi.duckdb")
    result = run_job(small_registry, warehouse, INCREMENTAL_REFRESH, run_config={
        "ops": {"incremental_match": {"config": {"files": ["incoming/crm/batch1.csv"]}}}})
    assert not result.success
    assert "gates failed, nothing written: rejected_share: too many records held back in " \
        "['crm']" in " ".join(failures(result))
    assert differences(before, fingerprint(warehouse / "cdi.duckdb")) == []
    assert (folder / "batch1.csv").exists()
