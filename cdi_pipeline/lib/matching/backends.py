"""Splink backends: the database session Splink runs on (DuckDB or Spark), and frames in and
out of it.

Splink runs on its own database session, never on the warehouse file, so its scratch tables
cannot land there and its locks never block the pipeline's writers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendConfig:
    """Where Splink runs and with which resources."""

    backend: str = "duckdb"
    memory_limit: str = "4GB"
    threads: int = 2
    temp_directory: Path | None = None
    spark_master: str = "local[2]"
    spark_driver_memory: str = "2g"


@contextlib.contextmanager
def open_backend(config: BackendConfig) -> Iterator[Any]:
    """A Splink database API on a fresh session, closed (DuckDB) or cleared (Spark) after use."""
    scratch = Path(config.temp_directory or tempfile.gettempdir())
    scratch.mkdir(parents=True, exist_ok=True)
    if config.backend == "duckdb":
        from splink import DuckDBAPI

        con = duckdb.connect(
            config={
                "memory_limit": config.memory_limit,
                "threads": config.threads,
                "temp_directory": str(scratch / "splink_spill"),
            }
        )
        try:
            yield DuckDBAPI(connection=con)
        finally:
            con.close()
    elif config.backend == "spark":
        with _spark_backend(config, scratch) as db_api:
            yield db_api
    else:
        raise ValueError(f"unknown matching backend {config.backend!r}; use duckdb or spark")


# --- Spark ------------------------------------------------------------------------------

# Spark's own log level: its INFO chatter drowns the run log.
SPARK_LOG_LEVEL = "WARN"

# The model's custom SQL is written in DuckDB's dialect and Splink transpiles it with sqlglot,
# which passes these DuckDB functions through unchanged: Spark gets same-named equivalents.
# (`ends_with` / `starts_with` in the model SQL would transpile without them.)
SPARK_DUCKDB_FUNCTIONS = {
    "suffix": "CREATE TEMPORARY FUNCTION suffix(s STRING, t STRING) RETURNS BOOLEAN "
    "RETURN endswith(s, t)",
    "prefix": "CREATE TEMPORARY FUNCTION prefix(s STRING, t STRING) RETURNS BOOLEAN "
    "RETURN startswith(s, t)",
}


@contextlib.contextmanager
def _spark_backend(config: BackendConfig, scratch: Path) -> Iterator[Any]:
    """SparkAPI on the process's Spark session, with its own checkpoint folder.

    The session (and its JVM, 10-30 s to start) is shared by every use in the process; what
    one use leaves behind (temporary views, cached and checkpointed tables) is removed at the
    end, so the next use starts clean and registers its input under the same name.
    """
    from splink import SparkAPI
    from splink.backends.spark import similarity_jar_location

    spark = _spark_session(config, similarity_jar_location(), scratch)
    views_before = _temp_views(spark)
    # Splink writes intermediate tables as parquet here (break_lineage_method="parquet");
    # without a checkpoint folder Spark refuses to register the input.
    checkpoint_root = scratch / "spark_checkpoints"
    checkpoint_root.mkdir(parents=True, exist_ok=True)
    checkpoints = Path(tempfile.mkdtemp(prefix="splink_ckpt_", dir=checkpoint_root))
    spark.sparkContext.setCheckpointDir(str(checkpoints))
    for name, statement in SPARK_DUCKDB_FUNCTIONS.items():
        if not spark.catalog.functionExists(name):
            spark.sql(statement)
    try:
        yield SparkAPI(
            spark_session=spark,
            break_lineage_method="parquet",
            # The similarity functions live for the whole session: registering them again
            # only makes Spark warn that it replaced them.
            register_udfs_automatically=not spark.catalog.functionExists("jaro_winkler"),
        )
    finally:
        for view in _temp_views(spark) - views_before:
            spark.catalog.dropTempView(view)
        spark.catalog.clearCache()
        shutil.rmtree(checkpoints, ignore_errors=True)


def _temp_views(spark: Any) -> set[str]:
    return {t.name for t in spark.catalog.listTables() if t.isTemporary}


def running_spark_session() -> Any | None:
    """The Spark session this process already runs, or None (also without pyspark)."""
    try:
        from pyspark.errors import PySparkRuntimeError
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    try:
        # The thread's active session, else the process's default one (what `getOrCreate`
        # returns).
        return SparkSession.active()
    except PySparkRuntimeError:
        return None


def _spark_session(config: BackendConfig, jar: str, scratch: Path) -> Any:
    """The process's Spark session, started on first use with Splink's similarity jar.

    Settings fixed at JVM start-up (master, driver memory, jars) cannot change afterwards:
    a running session without Splink's jar is an error, one with another master or memory
    is used as it is.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise RuntimeError(
            "matching.backend is 'spark' but pyspark is not installed: "
            "pip install 'cdi_pipeline[spark]' (it needs Java 17 or newer)"
        ) from exc
    running = running_spark_session()
    if running is None:
        if not _java_available():
            raise RuntimeError(
                "matching.backend is 'spark' but no Java runtime was found (neither "
                "$JAVA_HOME/bin/java nor java on PATH); Spark needs Java 17 or newer"
            )
        log.info("starting Spark (%s, driver memory %s)", config.spark_master,
                 config.spark_driver_memory)
        started = time.monotonic()
        spark = (
            SparkSession.builder.master(config.spark_master)
            .appName("cdi_pipeline_matching")
            .config("spark.jars", jar)
            .config("spark.driver.memory", config.spark_driver_memory)
            .config("spark.sql.shuffle.partitions", "8")
            .config("spark.default.parallelism", "8")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            # Keep Spark's own folders out of the working directory.
            .config("spark.sql.warehouse.dir", str(scratch / "spark_warehouse"))
            .config("spark.local.dir", str(scratch / "spark_local"))
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel(SPARK_LOG_LEVEL)
        log.info("Spark %s started in %.1fs", spark.version, time.monotonic() - started)
        return spark
    jars = running.sparkContext.getConf().get("spark.jars", "")
    if jar not in jars.split(","):
        raise RuntimeError(
            "matching.backend is 'spark' but the running Spark session was started without "
            f"Splink's similarity jar; start it with spark.jars={jar} (from "
            "splink.backends.spark.similarity_jar_location()) or stop it first"
        )
    master = running.sparkContext.master
    if master != config.spark_master:
        log.warning("using the running Spark session on %s, not matching.spark_master=%s",
                    master, config.spark_master)
    return running


def _java_available() -> bool:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return True
    return shutil.which("java") is not None


def register_input(db_api: Any, frame: pl.DataFrame, table_name: str = "cdi_match_input") -> Any:
    """Register a polars frame as a table on the backend (the Splink input by default)."""
    if type(db_api).__name__ == "SparkAPI":
        # Spark 4 builds a DataFrame straight from Arrow; Splink's own path wants pandas.
        table = db_api.spark.createDataFrame(frame.to_arrow())
    else:
        # DuckDB scans polars' string views as they are; the default export (large_string)
        # would copy every string and hold the copy while Splink runs.
        table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    return db_api.register(table, table_name=table_name)


def to_polars(splink_frame: Any) -> pl.DataFrame:
    """A Splink result table as polars, whatever the backend."""
    table = splink_frame.as_pyarrow_table()
    if not isinstance(table, pa.Table):
        table = pa.Table.from_batches(table)
    return pl.from_arrow(table)


def backend_of(db_api: Any) -> str:
    """The SQL dialect the backend runs ("duckdb" or "spark")."""
    return db_api.sql_dialect.sql_dialect_str


def keep_insertion_order(db_api: Any, keep: bool) -> None:
    """Switch DuckDB's `preserve_insertion_order` on the backend's connection (no-op on Spark).

    Prediction output is a set of pairs whose order nothing reads; not keeping it lets
    DuckDB write the large per-chunk prediction tables without holding rows back in memory
    to restore their order. Training keeps it (its samples must not depend on thread timing).
    """
    con = getattr(db_api, "duckdb_con", None)
    if con is not None:
        con.execute(f"SET preserve_insertion_order = {str(keep).lower()}")
