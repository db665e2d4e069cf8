"""Splink sessions: the backend (DuckDB or Spark), training, the saved model, prediction.

Splink runs on its own database session, never on the warehouse file, so its scratch tables
cannot land there and its locks never block the pipeline's writers. The trained model is a
JSON file named by a content hash and reused by later runs until retraining is asked for or
the data's shape changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
from splink import Linker, block_on

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX
from cdi_pipeline.lib.matching.spec import (
    EM_CONVERGENCE,
    EM_MAX_ITERATIONS,
    ModelSpec,
    splink_settings,
)

log = logging.getLogger(__name__)

MODEL_FORMAT = 1


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


def _spark_session(config: BackendConfig, jar: str, scratch: Path) -> Any:
    """The process's Spark session, started on first use with Splink's similarity jar.

    `getOrCreate` returns a session that is already running, and settings fixed at JVM
    start-up (master, driver memory, jars) cannot change afterwards: a running session
    without Splink's jar is an error, one with another master or memory is used as it is.
    """
    try:
        from pyspark import SparkContext
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise RuntimeError(
            "matching.backend is 'spark' but pyspark is not installed: "
            "pip install 'cdi_pipeline[spark]' (it needs Java 17 or newer)"
        ) from exc
    if SparkContext._active_spark_context is None:
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
    running = SparkSession.builder.getOrCreate()
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
        # copied every string (GiBs at ten million records) and held the copy while Splink ran.
        table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    return db_api.register(table, table_name=table_name)


# --- term frequencies ------------------------------------------------------------------


def tf_columns(settings_dict: dict[str, Any]) -> list[str]:
    """Columns the model adjusts by term frequency."""
    cols = {
        lv["tf_adjustment_column"]
        for c in settings_dict["comparisons"]
        for lv in c["comparison_levels"]
        if lv.get("tf_adjustment_column")
    }
    return sorted(cols)


def term_frequencies(frame: pl.DataFrame, columns: list[str]) -> dict[str, pl.DataFrame]:
    """Share of non-null records holding each value, per column (Splink's tf_ tables).

    They are frozen with the model: scores then depend only on the two records and the
    model, so removing or adding unrelated records cannot move other pairs across the
    threshold (and cannot change other customers' ids).
    """
    out = {}
    for col in columns:
        values = frame.select(col).drop_nulls()
        total = max(values.height, 1)
        out[col] = (
            values.group_by(col)
            .agg((pl.len() / total).alias(f"tf_{col}"))
            .sort(col)
        )
    return out


def to_polars(splink_frame: Any) -> pl.DataFrame:
    """A Splink result table as polars, whatever the backend."""
    table = splink_frame.as_pyarrow_table()
    if not isinstance(table, pa.Table):
        table = pa.Table.from_batches(table)
    return pl.from_arrow(table)


# --- the saved model ------------------------------------------------------------------


@dataclass(frozen=True)
class SavedModel:
    """A trained model as stored on disk."""

    version: str
    spec_fingerprint: str
    trained_at: str
    training: list[dict[str, Any]]
    splink_settings: dict[str, Any]
    path: Path
    term_frequencies: dict[str, pl.DataFrame] = field(default_factory=dict)

    @property
    def tf_dir(self) -> Path:
        """Folder of the model's frozen term-frequency tables."""
        return tf_dir_for(self.path)

    @property
    def as_json(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "version": self.version,
            "spec_fingerprint": self.spec_fingerprint,
            "trained_at": self.trained_at,
            "training": self.training,
            "splink_settings": self.splink_settings,
        }


def tf_dir_for(model_path: Path) -> Path:
    """`match_model_<version>.tf/` next to `match_model_<version>.json`."""
    return model_path.with_suffix(".tf")


# Keys of Splink's saved settings that vary between trainings of the same model.
VOLATILE_SETTINGS = frozenset({"linker_uid"})


def model_version(
    splink_settings_dict: dict[str, Any], tf_tables: dict[str, pl.DataFrame] | None = None
) -> str:
    """Content hash of settings, parameters and frozen term frequencies, as `m` + 12 hex
    digits: the letter keeps a version from ever reading as a number (an all-digit hash
    looks like an unmasked phone number to the analyst file's leak check)."""
    # `linker_uid` is a name Splink draws at random for each linker's cache tables, not a
    # model parameter: hashing it gave two trainings with identical parameters two versions,
    # so every fresh warehouse wrote another model_version into xref, history and snapshots.
    content = {k: v for k, v in splink_settings_dict.items() if k not in VOLATILE_SETTINGS}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode())
    for col, table in sorted((tf_tables or {}).items()):
        # CSV of the sorted table: the same content gives the same bytes in any polars version.
        digest.update(col.encode())
        digest.update(table.sort(table.columns).write_csv().encode())
    return "m" + digest.hexdigest()[:12]


def current_model_path(models_dir: Path) -> Path:
    """The pointer file naming the model later runs reuse."""
    return models_dir / "current.json"


class ModelFileError(RuntimeError):
    """A saved model cannot be used; the message names the file and the way out."""


_RETRAIN_HINT = (
    "materialise matching/model with run config {'retrain': true} to train a new one"
)


def load_current_model(models_dir: Path) -> SavedModel | None:
    """The model recorded as current, or None when none was trained yet."""
    pointer = current_model_path(models_dir)
    if not pointer.is_file():
        return None
    try:
        version = json.loads(pointer.read_text(encoding="utf-8"))["version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{pointer} is not a valid model pointer ({exc}); "
                             + _RETRAIN_HINT) from None
    return load_model(models_dir / f"match_model_{version}.json")


def load_model(path: Path) -> SavedModel:
    """Read a saved model file and its frozen term-frequency tables."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"model file {path} cannot be read ({exc}); "
                             + _RETRAIN_HINT) from None
    if data.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path}: unsupported model format {data.get('format')!r}; "
                             + _RETRAIN_HINT)
    expected = set(tf_columns(data["splink_settings"]))
    found = {f.stem for f in tf_dir_for(path).glob("*.parquet")}
    if found != expected:
        # Without them Splink would silently recompute frequencies from today's data and
        # scores (and customer ids) would drift.
        raise ModelFileError(
            f"{tf_dir_for(path)} should hold term-frequency tables for {sorted(expected)}, "
            f"found {sorted(found)}; " + _RETRAIN_HINT
        )
    return SavedModel(
        version=data["version"],
        spec_fingerprint=data["spec_fingerprint"],
        trained_at=data["trained_at"],
        training=data["training"],
        splink_settings=data["splink_settings"],
        path=path,
        term_frequencies={
            f.stem: pl.read_parquet(f) for f in sorted(tf_dir_for(path).glob("*.parquet"))
        },
    )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_model(
    models_dir: Path,
    settings_dict: dict[str, Any],
    spec: ModelSpec,
    training: list[dict[str, Any]],
    *,
    make_current: bool,
    tf_tables: dict[str, pl.DataFrame] | None = None,
) -> SavedModel:
    """Write a model file (named by its version) and, if asked, point `current.json` at it.

    The term-frequency tables are written first and the JSON last, so a model file on disk
    always has its tables.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    tf_tables = tf_tables or {}
    version = model_version(settings_dict, tf_tables)
    target = tf_dir_for(models_dir / f"match_model_{version}.json")
    # Staging folders left by a killed run are debris: runs are serialised by the pool.
    for debris in models_dir.glob(".match_model_*.tf.tmp*"):
        shutil.rmtree(debris, ignore_errors=True)
    staging = target.with_name(f".{target.name}.tmp{os.getpid()}")
    staging.mkdir(parents=True)
    for col, table in tf_tables.items():
        table.write_parquet(staging / f"{col}.parquet")
    if target.exists():
        shutil.rmtree(staging)
    else:
        os.replace(staging, target)
    model = SavedModel(
        version=version,
        spec_fingerprint=spec.fingerprint(),
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        training=training,
        splink_settings=settings_dict,
        path=models_dir / f"match_model_{version}.json",
        term_frequencies=tf_tables,
    )
    _atomic_write(model.path, json.dumps(model.as_json, indent=2, default=str))
    if make_current:
        promote_model(models_dir, model)
    return model


def promote_model(models_dir: Path, model: SavedModel) -> None:
    """Make a saved model the one later runs reuse."""
    _atomic_write(
        current_model_path(models_dir),
        json.dumps({"version": model.version, "promoted_at": datetime.now(UTC).isoformat()}),
    )


# --- training --------------------------------------------------------------------------


def _deterministic_rules(spec: ModelSpec) -> list:
    """Near-certain rules used to estimate the prior match probability."""
    rules = []
    if "email" in spec.comparisons and "first_name" in spec.comparisons:
        rules.append(block_on("email_block", "first_name_canonical"))
    if "date_of_birth" in spec.comparisons and "last_name" in spec.comparisons:
        rules.append(block_on("first_name_canonical", "last_name_key", "date_of_birth"))
    if "phone" in spec.comparisons and "last_name" in spec.comparisons:
        rules.append(block_on("phone_block", "last_name_key"))
    if "address" in spec.comparisons and "last_name" in spec.comparisons:
        rules.append(block_on("postcode", "house_number", "first_initial", "last_name_key"))
    if not rules:
        rules.append(block_on(*spec.blocking_rules[0]))
    return rules


@contextlib.contextmanager
def _single_threaded(db_api: Any) -> Iterator[None]:
    """Run the enclosed Splink steps on one DuckDB thread (other backends: unchanged).

    EM sums match probabilities per comparison level in floating point; on several threads
    DuckDB adds the partial sums in whatever order the threads finish, so two trainings on
    the same records gave m values differing in the last digits, another model version, and
    (scores moving by as much) possibly other links. One thread adds them in one order. The
    prior and u are counts and keep all threads. Cost at a million records on the 2-core
    benchmark machine: training took 18.4 and 20.4 s with EM on one thread, 17.9 and 18.8 s
    with EM on two (within run-to-run noise); only runs that train pay it.
    """
    con = getattr(db_api, "duckdb_con", None)
    if con is None:
        yield
        return
    threads = con.sql("SELECT current_setting('threads')").fetchall()[0][0]
    con.execute("SET threads = 1")
    try:
        yield
    finally:
        con.execute(f"SET threads = {int(threads)}")


def backend_of(linker: Any) -> str:
    """The SQL dialect the linker runs on ("duckdb" or "spark")."""
    return linker._db_api.sql_dialect.sql_dialect_str


def keep_insertion_order(linker: Any, keep: bool) -> None:
    """Switch DuckDB's `preserve_insertion_order` on the linker's connection (no-op on Spark).

    Prediction output is a set of pairs whose order nothing reads; not keeping it lets
    DuckDB write the large per-chunk prediction tables without holding rows back in memory
    to restore their order. Training keeps it (its samples must not depend on thread timing).
    """
    con = getattr(getattr(linker, "_db_api", None), "duckdb_con", None)
    if con is not None:
        con.execute(f"SET preserve_insertion_order = {str(keep).lower()}")


def train(
    db_api: Any,
    frame: pl.DataFrame,
    spec: ModelSpec,
    *,
    seed: int,
    u_max_pairs: float,
    em_max_pairs: float,
    em_max_iterations: int = EM_MAX_ITERATIONS,
    em_convergence: float = EM_CONVERGENCE,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train a model: prior from deterministic rules, u by seeded sampling, m by EM.

    Returns the Splink settings dict with parameters, and one record per EM session
    (rule, iterations, converged, seconds) for the sanity check and the UI.
    """
    linker = Linker(register_input(db_api, frame), splink_settings(
        spec, 1e-4, max_iterations=em_max_iterations, em_convergence=em_convergence))
    started = time.monotonic()
    linker.training.estimate_probability_two_random_records_match(
        _deterministic_rules(spec), recall=0.7
    )
    log.info("prior estimated in %.1fs; estimating u", time.monotonic() - started)
    # Each chunk is a separate job on Spark (about 6 s each); DuckDB chunks are cheap and
    # let Splink stop early once every level has enough observations.
    chunks = 1 if type(db_api).__name__ == "SparkAPI" else 10
    linker.training.estimate_u_using_random_sampling(
        max_pairs=u_max_pairs, seed=seed, num_chunks=chunks
    )
    log.info("u estimated after %.1fs", time.monotonic() - started)
    max_iterations = linker._settings_obj.training_settings.max_iterations
    sessions = []
    with _single_threaded(db_api):
        for rule in spec.training_rules:
            t0 = time.monotonic()
            session = linker.training.estimate_parameters_using_expectation_maximisation(
                block_on(*rule), max_pairs=em_max_pairs
            )
            iterations = len(session._core_model_settings_history) - 1
            sessions.append(
                {
                    "blocking_rule": list(rule),
                    "iterations": iterations,
                    "converged": iterations < max_iterations,
                    "seconds": round(time.monotonic() - t0, 2),
                }
            )
            log.info("EM on %s: %d iterations in %.1fs", rule, iterations,
                     time.monotonic() - t0)
    settings = linker.misc.save_model_to_json()
    _identifier_priors(settings)
    return settings, sessions


# m of an identifier's exact level when no EM training pair carried the identifier on both
# sides: the same person keeps the same loyalty card or device id most of the time.
IDENTIFIER_PRIOR_M = 0.9


def _identifier_priors(settings: dict[str, Any]) -> None:
    """Give identifier comparisons EM could not estimate a documented prior m, in place.

    Either no training pair carried the identifier on both sides (no m at all), or every
    one that did agreed: EM then leaves the disagreement level untrained, at a value that
    does not sum to 1 with the agreement level (seen: m 1.0 and 1.0, so disagreeing counted
    as slight evidence for a match and the sanity check rejected the model).
    """
    for comparison in settings["comparisons"]:
        name = comparison["output_column_name"]
        if not name.startswith(IDENTIFIER_PREFIX):
            continue
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        ms = [lv.get("m_probability") for lv in levels]
        if all(isinstance(m, int | float) for m in ms) and abs(sum(ms) - 1) < 1e-6:
            continue
        log.warning("%s: EM could not estimate m (training pairs: %s); using prior m=%.2f",
                    name, "none agreed" if not isinstance(ms[0], int | float)
                    else "none disagreed", IDENTIFIER_PRIOR_M)
        levels[0]["m_probability"] = IDENTIFIER_PRIOR_M
        levels[-1]["m_probability"] = 1 - IDENTIFIER_PRIOR_M


def trained_dialect(settings_dict: dict[str, Any]) -> str:
    """SQL dialect a saved model's settings are written in: the backend that trained it.

    Splink writes the model's SQL in its backend's dialect (`"col"` on DuckDB, `` `col` `` on
    Spark); the backend names of `matching.backend` are the same strings.
    """
    return str(settings_dict.get("sql_dialect", "duckdb"))


def settings_in_dialect(settings_dict: dict[str, Any], dialect: str) -> dict[str, Any]:
    """A saved model's settings with its SQL transpiled (sqlglot) to another dialect.

    Only for reading the model (charts, parameters): function names Splink spells per backend
    (`jaro_winkler` on Spark, `jaro_winkler_similarity` on DuckDB) are not mapped, so pairs
    must not be scored with the result; `linker_for` refuses it.
    """
    import sqlglot

    settings = json.loads(json.dumps(settings_dict))
    source = trained_dialect(settings)
    if source == dialect:
        return settings

    def translate(sql: str) -> str:
        return sql if sql.strip().upper() == "ELSE" else sqlglot.transpile(
            sql, read=source, write=dialect
        )[0]

    for comparison in settings.get("comparisons", []):
        for level in comparison["comparison_levels"]:
            level["sql_condition"] = translate(level["sql_condition"])
    for rule in settings.get("blocking_rules_to_generate_predictions", []):
        if isinstance(rule, dict):
            rule["blocking_rule"] = translate(rule["blocking_rule"])
            rule["sql_dialect"] = dialect
    settings["sql_dialect"] = dialect
    return settings


def linker_for(
    db_api: Any,
    frame: pl.DataFrame,
    settings_dict: dict[str, Any],
    tf_tables: dict[str, pl.DataFrame] | None = None,
    name_suffix: str = "",
    link_to: pl.DataFrame | None = None,
) -> Linker:
    """A linker over `frame` with a saved model's settings and frozen term frequencies.

    A backend registers each table name once: a second linker on the same backend needs
    its own `name_suffix`. With `link_to`, only pairs across the two frames are compared
    (Splink's link_only): new records against existing ones, not existing among themselves.
    """
    backend = db_api.sql_dialect.sql_dialect_str
    if trained_dialect(settings_dict) != backend:
        # DuckDB SQL runs on Spark without error but wrongly ("col" is a string there).
        raise ValueError(
            f"the model was trained on the {trained_dialect(settings_dict)} backend and its "
            f"SQL is written for it, not for {backend}: retrain it on {backend} "
            "(materialise matching/model; it retrains when the backend changed)"
        )
    settings = json.loads(json.dumps(settings_dict))
    inputs = register_input(db_api, frame, table_name=f"cdi_match_input{name_suffix}")
    if link_to is not None:
        settings["link_type"] = "link_only"
        inputs = [inputs, register_input(db_api, link_to,
                                         table_name=f"cdi_match_existing{name_suffix}")]
    linker = Linker(inputs, settings)
    for col, table in (tf_tables or {}).items():
        registered = register_input(db_api, table, table_name=f"cdi_tf_{col}{name_suffix}")
        linker.table_management.register_term_frequency_lookup(registered, col)
    return linker


def count_comparisons(linker: Linker, blocking_rules: list[list[str]]) -> pl.DataFrame:
    """Pre-flight: exact number of pairs each blocking rule adds (marginal and cumulative)."""
    records = linker.blocking_analysis.count_comparisons_from_blocking_rules(
        [block_on(*r) for r in blocking_rules], record_sample_proportion=1.0
    )
    return pl.DataFrame(
        {
            "blocking_rule": [", ".join(r) for r in blocking_rules],
            "marginal_pairs": [int(r["marginal_comparison_count"]) for r in records],
            "cumulative_pairs": [int(r["cumulative_comparison_count"]) for r in records],
        }
    )
