"""The analyst file, erasure and the quarterly refresh, with real Dagster runs.

The session's full refresh of the generated set (generated_site) is the baseline; each test
copies it to its own folder when it changes anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml

from cdi_pipeline.definitions import build_definitions
from cdi_pipeline.defs.jobs.jobs import (
    QUARTERLY_REFRESH,
    QUARTERLY_SCHEDULE,
    dated_run_config,
)
from cdi_pipeline.defs.keys import ANALYTICS, CUSTOMER_SEGMENTS, SEGMENT_SUMMARY
from cdi_pipeline.lib.governance.erasure import ErasureRequestError, read_requests
from cdi_pipeline.lib.leaks import scan_frame
from cdi_pipeline.lib.matching.model_store import model_version
from cdi_pipeline.lib.published.analytics import ANALYTICS_FILE, STORAGE_VERSION
from cdi_pipeline_tests.warehouse_state import (
    GENERATED_PERSONS,
    Site,
    checks,
    failures,
    materialized,
    query,
    run_job,
    succeeded,
    traces,
)

PERSONS = GENERATED_PERSONS


def _paths(root: Path) -> tuple[Path, Path]:
    """A site folder's registry and warehouse."""
    return Site(root).registry, Site(root).warehouse


@pytest.fixture(scope="module")
def site(generated_site: Site) -> Path:
    return generated_site.root


def _copy(site: Path, tmp_path: Path) -> Path:
    target = tmp_path / "site"
    shutil.copytree(site, target, symlinks=True)
    return target


def test_analytics_file_holds_no_unmasked_email_or_phone(site: Path) -> None:
    warehouse = site / "warehouse" / "cdi.duckdb"
    analytics = site / "warehouse" / ANALYTICS_FILE
    secrets = {
        value for (value,) in query(
            warehouse, "SELECT email FROM cleaned.customer_records WHERE email IS NOT NULL "
            "UNION SELECT phone FROM cleaned.customer_records WHERE phone IS NOT NULL")
    }
    assert len(secrets) > PERSONS  # the control: there is plenty to leak
    con = duckdb.connect(str(analytics), read_only=True)
    try:
        con.register("secrets", pl.DataFrame({"value": sorted(secrets)}).to_arrow())
        text_columns = con.sql(
            "SELECT table_name, column_name FROM duckdb_columns() "
            "WHERE database_name = current_database() AND data_type = 'VARCHAR'"
        ).fetchall()
        assert len(text_columns) > 20
        leaks = {
            f"{t}.{c}": con.sql(
                f'SELECT count(*) FROM "{t}" WHERE "{c}" IN (SELECT value FROM secrets)'
            ).fetchall()[0][0]
            for t, c in text_columns
        }
        masked = con.sql("SELECT email_masked, phone_masked FROM customers "
                         "WHERE email_masked IS NOT NULL AND phone_masked IS NOT NULL "
                         "LIMIT 1").fetchall()[0]
        uncommented = con.sql(
            "SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() "
            "AND coalesce(comment, '') = ''").fetchall()[0][0]
        tables = {t for (t,) in con.sql("SELECT table_name FROM duckdb_tables()").fetchall()}
    finally:
        con.close()
    assert {k: v for k, v in leaks.items() if v} == {}
    assert "***@" in masked[0] and "*" in masked[1]
    assert uncommented == 0
    assert {"customers", "customer_segments", "segment_summary", "segment_history",
            "customer_history", "customer_id_map"} <= tables
    # No bytes of any identifier either (names of columns aside, values are what matter).
    data = analytics.read_bytes()
    assert [s for s in sorted(secrets)[:200] if s.encode() in data] == []


def test_a_leak_in_free_text_fails_the_audit_and_keeps_the_published_file(
    site: Path, tmp_path: Path
) -> None:
    # A steward's segment description with an address in it: published as is, it would
    # reach every analyst. The staged file fails its audit and is never swapped in.
    root = _copy(site, tmp_path)
    registry, warehouse = _paths(root)
    analytics = warehouse / ANALYTICS_FILE
    before = analytics.read_bytes()
    address = "jan.jansen@example.com"
    config = yaml.safe_load(registry.read_text(encoding="utf-8"))
    config.setdefault("segments", {})["rfm_segments"] = [
        {"name": "everyone", "description": f"Questions? Mail {address} or the team."}]
    registry.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    result = run_job(registry, warehouse, assets=[CUSTOMER_SEGMENTS, SEGMENT_SUMMARY,
                                                  ANALYTICS])
    assert not result.success
    assert [f.split(":")[0] for f in failures(result)] == ["published__analytics"]
    audit = checks(result)["no_direct_identifiers"]
    assert not audit.passed
    assert "email in segment_summary.description (1 row)" in audit.description
    assert address not in audit.description and address not in " ".join(failures(result))
    assert ANALYTICS not in materialized(result)
    assert analytics.read_bytes() == before
    assert not list(warehouse.glob(f".{ANALYTICS_FILE}.*"))


def test_open_analyst_connection_neither_blocks_nor_sees_a_half_state(
    site: Path, tmp_path: Path
) -> None:
    root = _copy(site, tmp_path)
    analytics = root / "warehouse" / ANALYTICS_FILE
    analyst = duckdb.connect(str(analytics), read_only=True)
    before = analyst.sql("SELECT count(*), sum(hash(customer_id)) FROM customers").fetchall()
    counts: list[tuple] = []
    stop = threading.Event()

    def keep_reading() -> None:
        while not stop.is_set():
            counts.append(
                analyst.sql("SELECT count(*), sum(hash(customer_id)) FROM customers").fetchall()[0]
            )

    reader = threading.Thread(target=keep_reading)
    reader.start()
    try:
        # One customer fewer in the sources: the new file differs from the one held open.
        crm = root / "input" / "sources" / "crm_contacts.csv"
        lines = crm.read_text(encoding="utf-8").splitlines(keepends=True)
        crm.write_text("".join(lines[:-40]), encoding="utf-8")
        succeeded(run_job(*_paths(root)))
    finally:
        stop.set()
        reader.join()
    assert counts and set(counts) == {before[0]}  # the open connection saw one state only
    analyst.close()
    after = query(analytics, "SELECT count(*), sum(hash(customer_id)) FROM customers")
    assert after != before


def test_erasure_removes_every_trace_and_a_reload_does_not_bring_it_back(
    site: Path, tmp_path: Path
) -> None:
    root = _copy(site, tmp_path)
    warehouse = root / "warehouse"
    # A person with a surname nobody else has, so finding the name means finding them.
    person = query(warehouse / "cdi.duckdb", """
        WITH unique_names AS (
            SELECT r.last_name_key FROM cleaned.customer_records r
            JOIN matching.customer_xref x USING (source, source_record_id)
            WHERE r.last_name_key IS NOT NULL AND length(r.last_name_key) >= 6
            GROUP BY 1 HAVING count(DISTINCT x.customer_id) = 1)
        SELECT c.customer_id, c.email, c.phone, c.last_name FROM golden.customers c
        JOIN unique_names u ON c.last_name_key = u.last_name_key
        WHERE c.email IS NOT NULL AND c.phone IS NOT NULL AND c.records >= 2
        ORDER BY c.customer_id LIMIT 1""")[0]
    customer_id, email, phone, surname = person
    needles = [email, phone, surname]
    assert traces(warehouse, needles)  # the control: the search finds them before
    (root / "input" / "governance").mkdir(exist_ok=True)
    (root / "input" / "governance" / "erasure_requests.csv").write_text(
        "request_id,identifier_type,value,requested_on\n"
        f"ER-7,email,{email.upper()},2026-11-30\n", encoding="utf-8")
    succeeded(run_job(*_paths(root)))
    assert traces(warehouse, needles) == []
    receipts = dict(query(warehouse / "cdi.duckdb",
                           "SELECT item, rows_removed FROM governance.erasure_receipts"))
    assert receipts["golden.customers"] == 1 and receipts["cleaned.customer_records"] >= 2
    assert not query(warehouse / "cdi.duckdb",
                      "SELECT 1 FROM matching.customer_id_map WHERE customer_id = ?",
                      [customer_id])
    # The same source files again: suppression keeps the person out, and the request is
    # not carried out twice.
    succeeded(run_job(*_paths(root)))
    assert traces(warehouse, needles) == []
    runs = query(warehouse / "cdi.duckdb",
                  "SELECT count(DISTINCT run_id) FROM governance.erasure_receipts")
    assert runs == [(1,)]


def test_erasure_request_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "erasure_requests.csv"
    path.write_text("request_id,identifier_type,value,requested_on\n"
                    "A,email,a@b.nl,2026-01-01\nB,passport,X1,2026-01-01\n", encoding="utf-8")
    with pytest.raises(ErasureRequestError, match=r"line 3: identifier_type must be one of"):
        read_requests(path)
    path.write_text("request_id,identifier_type,value,requested_on\n"
                    "A,email,a@b.nl,2026-01-01\nB,phone,0612345678,01-01-2026\n",
                    encoding="utf-8")
    with pytest.raises(ErasureRequestError, match=r"line 3: requested_on must be a date"):
        read_requests(path)
    path.write_text("request_id,identifier_type,value,requested_on\n"
                    "A,email,a@b.nl,2026-01-01\nA,phone,0612345678,2026-01-01\n",
                    encoding="utf-8")
    with pytest.raises(ErasureRequestError, match=r"line 2: request_id is used on more"):
        read_requests(path)
    assert read_requests(tmp_path / "absent.csv").is_empty()


def test_quarterly_schedule_is_pinned_and_keeps_snapshots(site: Path, tmp_path: Path) -> None:
    defs = build_definitions(site / "input" / "sources.yaml", site / "warehouse")
    schedule = defs.resolve_schedule_def(QUARTERLY_SCHEDULE)
    assert (schedule.cron_schedule, schedule.job_name, schedule.execution_timezone) == (
        "0 3 1 1,4,7,10 *", QUARTERLY_REFRESH, "Europe/Amsterdam")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2027, 4, 1, 3, 0)
    )
    request = schedule.evaluate_tick(context).run_requests[0]
    assert request.run_config == dated_run_config("2027-04-01")
    selected = {k.to_user_string() for k in
                defs.resolve_job_def(QUARTERLY_REFRESH).asset_layer.selected_asset_keys}
    assert {"enrichment/customer_enrichment", "golden/customer_features",
            "segments/customer_segments", "enrichment/customer_snapshots",
            "published/analytics"} <= selected
    assert not any(k.startswith(("raw/", "cleaned/", "matching/")) for k in selected)

    root = _copy(site, tmp_path)
    succeeded(run_job(*_paths(root), QUARTERLY_REFRESH, run_config=request.run_config))
    db = root / "warehouse" / "cdi.duckdb"
    quarters = query(db, "SELECT quarter, count(*) FROM enrichment.customer_snapshots "
                      "GROUP BY quarter ORDER BY quarter")
    assert [q for q, _ in quarters][-1] == "2027Q2" and len(quarters) == 2
    assert quarters[0][1] == quarters[1][1]
    compared = query(db, "SELECT DISTINCT previous_quarter FROM "
                      "enrichment.customer_enrichment")
    assert compared == [(quarters[0][0],)]
    history = query(root / "warehouse" / ANALYTICS_FILE,
                     "SELECT count(DISTINCT quarter) FROM segment_history")
    assert history == [(2,)]


def test_duckdb_1x_client_opens_the_analytics_file(site: Path) -> None:
    # `make test` installs the client beside the project's virtual environment; never skip.
    target = Path(sys.prefix) / "duckdb1"
    if not (target / "duckdb").is_dir():
        pytest.fail(f"no DuckDB 1.x client in {target}: run `make test`, or "
                    f"`{sys.executable} -m pip install --target {target} 'duckdb>=1.4,<1.5'`")
    script = (
        "import duckdb, sys; con = duckdb.connect(sys.argv[1], read_only=True); "
        "print(duckdb.__version__, con.sql('SELECT count(*) FROM customers').fetchall()[0][0])"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(site / "warehouse" / ANALYTICS_FILE)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    version, customers = run.stdout.split()
    assert version.startswith("1.4") and int(customers) > 0
    assert STORAGE_VERSION == "v1.4.0"


def test_model_versions_never_read_as_unmasked_phone_numbers() -> None:
    # Published in the snapshot tables; a hex hash of only digits tripped the leak check
    # (5 of these 2,000 did before versions carried a letter).
    versions = [model_version({"settings": i}) for i in range(2000)]
    assert len(set(versions)) == 2000
    assert scan_frame("snapshots", pl.DataFrame({"model_version": versions})) == []
