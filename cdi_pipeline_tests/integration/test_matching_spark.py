"""The matching layer on Spark (local mode) through Splink's SparkAPI.

One generated source set is refreshed twice, with the default DuckDB backend (the session's
generated_site) and with `matching: {backend: spark}`: the Spark run must map every record
once, train its model, and cluster the records nearly as the DuckDB run does. Spark needs
Java 17+; without it the test fails (it is never skipped).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml

from cdi_pipeline.defs.keys import MODEL
from cdi_pipeline.lib.matching.backends import running_spark_session
from cdi_pipeline.lib.matching.evaluation import score_clusters
from cdi_pipeline_tests.warehouse_state import Site, run_job

# About a minute (JVM start-up and Splink's many small Spark jobs): part of `make test`,
# because the Spark path is only real if every change runs it. Its tests share one Spark run,
# so they stay on one pytest worker.
pytestmark = pytest.mark.xdist_group("spark")

def _require_spark() -> None:
    """Fail, loudly, when the Spark backend cannot run here."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        pytest.fail("the Spark backend test needs pyspark: pip install -e '.[dev]'")
    home = os.environ.get("JAVA_HOME")
    java = (
        str(Path(home) / "bin" / "java")
        if home and (Path(home) / "bin" / "java").is_file()
        else shutil.which("java")
    )
    if java is None:
        pytest.fail(
            "the Spark backend test needs Java 17 or newer: set JAVA_HOME or put java on PATH"
        )
    version = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    if version.returncode != 0:
        pytest.fail(f"`{java} -version` failed: {version.stderr.strip()}")


def _xref(warehouse: Path) -> pl.DataFrame:
    con = duckdb.connect(str(warehouse / "cdi.duckdb"), read_only=True)
    try:
        return con.sql("SELECT source, source_record_id, customer_id "
                       "FROM matching.customer_xref").pl()
    finally:
        con.close()


@pytest.fixture(scope="module")
def runs(generated_site: Site, tmp_path_factory):
    """(duckdb warehouse, duckdb result, spark warehouse, spark result, spark seconds)."""
    _require_spark()
    spark_was_running = running_spark_session() is not None
    duckdb_warehouse, duckdb_result = generated_site.warehouse, generated_site.result

    # The same source set with the Spark backend, in a folder of its own.
    root = tmp_path_factory.mktemp("matching_spark")
    shutil.copytree(generated_site.input, root / "input")
    registry = root / "input" / "sources.yaml"
    data = yaml.safe_load(registry.read_text(encoding="utf-8"))
    data["matching"] = {**(data.get("matching") or {}), "backend": "spark"}
    registry.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    spark_warehouse = root / "warehouse_spark"
    started = time.monotonic()
    spark_result = run_job(registry, spark_warehouse)
    spark_seconds = time.monotonic() - started
    print(f"\nfull refresh on the Spark backend: {spark_seconds:.1f}s wall time")
    yield duckdb_warehouse, duckdb_result, spark_warehouse, spark_result, spark_seconds

    if not spark_was_running and (spark := running_spark_session()) is not None:
        spark.stop()


def _failures(result: dg.ExecuteInProcessResult) -> str:
    """Each failed step with its error and the errors that caused it."""
    lines = []
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        error, messages = event.step_failure_data.error, []
        while error is not None:
            messages.append(error.message.strip())
            error = error.cause
        lines.append(f"{event.step_key}: " + "\n  caused by: ".join(messages))
    return "\n".join(lines)


def test_both_backends_refresh(runs) -> None:
    _, duckdb_result, _, spark_result, _ = runs
    assert duckdb_result.success, _failures(duckdb_result)
    assert spark_result.success, _failures(spark_result)


def test_spark_run_used_spark(runs) -> None:
    duckdb_warehouse, _, spark_warehouse, spark_result, _ = runs
    assert spark_result.success, _failures(spark_result)
    # The Spark backend keeps its checkpoint folders under the warehouse's .splink_tmp
    # (emptied after each use); the DuckDB run never creates it.
    assert (spark_warehouse / ".splink_tmp" / "spark_checkpoints").is_dir()
    assert list((spark_warehouse / ".splink_tmp" / "spark_checkpoints").iterdir()) == []
    assert not (duckdb_warehouse / ".splink_tmp" / "spark_checkpoints").exists()


def test_spark_xref_maps_every_record_once(runs) -> None:
    _, _, spark_warehouse, spark_result, _ = runs
    assert spark_result.success, _failures(spark_result)
    con = duckdb.connect(str(spark_warehouse / "cdi.duckdb"), read_only=True)
    try:
        records, mapped, duplicated, unmapped, without_id = con.sql(
            """
            SELECT
              (SELECT count(*) FROM cleaned.customer_records),
              (SELECT count(*) FROM matching.customer_xref),
              (SELECT count(*) FROM (SELECT source, source_record_id FROM matching.customer_xref
                                     GROUP BY ALL HAVING count(*) > 1)),
              (SELECT count(*) FROM cleaned.customer_records c
                 ANTI JOIN matching.customer_xref x USING (source, source_record_id)),
              (SELECT count(*) FROM matching.customer_xref WHERE customer_id IS NULL)
            """
        ).fetchall()[0]
    finally:
        con.close()
    assert records > 0
    assert (mapped, duplicated, unmapped, without_id) == (records, 0, 0, 0)


def test_spark_model_was_trained(runs) -> None:
    _, _, spark_warehouse, spark_result, _ = runs
    assert spark_result.success, _failures(spark_result)
    [event] = [
        e for e in spark_result.get_asset_materialization_events()
        if e.asset_key == MODEL
    ]
    metadata = event.materialization.metadata
    assert metadata["retrained"].value is True
    assert metadata["retrain_reason"].value == "no saved model yet"
    assert metadata["training_seconds"].value > 0
    assert "date_of_birth" in metadata["em_sessions"].value
    model_file = Path(metadata["model_file"].value)
    assert model_file.is_file() and model_file.is_relative_to(spark_warehouse)


def test_spark_clusters_agree_with_duckdb(runs) -> None:
    duckdb_warehouse, duckdb_result, spark_warehouse, spark_result, _ = runs
    assert duckdb_result.success and spark_result.success
    reference = _xref(duckdb_warehouse).select(
        "source", "source_record_id", pl.col("customer_id").alias("person_id")
    )
    scores = score_clusters(_xref(spark_warehouse), reference)
    assert scores["records_scored"] == reference.height
    assert scores["pairwise_f1"] >= 0.95, scores
