"""Test harness: run a job of the real code location in process (`run_job`, the one runner
every test uses) or the way `make run` does (`refresh`, optionally killing it); a site (a
registry folder with its warehouse) to build, share and copy; and a fingerprint of every table
of a warehouse so two states can be compared.

A fingerprint is (row count, order-insensitive sum of row hashes) per table, over every column
except run metadata: the columns that say which run wrote a row and when. Those are named here
table by table, so a new column is compared unless someone decides it is run metadata.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from cdi_pipeline.datagen import REFERENCE_DATE, generate
from cdi_pipeline.definitions import build_definitions
from cdi_pipeline.defs.jobs.jobs import FULL_REFRESH
from cdi_pipeline.instance_repair import repair
from cdi_pipeline.lib.privacy import KEY_ENV
from cdi_pipeline.lib.published.analytics import ANALYTICS_FILE
from cdi_pipeline.lib.segments.exports import CURRENT_LINK
from cdi_pipeline.lib.storage import STAGING_PREFIX, WAREHOUSE_FILE, quote_identifier

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]

TableKey = tuple[str, str, str]  # (database file name, schema, table)

# The pseudonymisation key of the runs `refresh` starts (and of in-process runs that compare
# their analyst file with theirs).
TEST_KEY = "reliability-test-key-0123456789"

# The generated shape the session builds once (integration/conftest.py: generated_site).
GENERATED_PERSONS = 350
GENERATED_SEED = 5
# The end-to-end shape the session builds once with `dagster job execute` (e2e_run).
E2E_PERSONS = 400
E2E_SEED = 11

# --- running a job in process --------------------------------------------------------------

ASSET_JOB = None  # run_job's `job` for the implicit job of all assets (any selection)


def run_job(registry: Path, warehouse: Path, job: str | None = FULL_REFRESH, *,
            layers: tuple[str, ...] = (), assets: list[dg.AssetKey] | None = None,
            run_config: dict | None = None, instance: dg.DagsterInstance | None = None,
            tags: dict[str, str] | None = None,
            raise_on_error: bool = False) -> dg.ExecuteInProcessResult:
    """One run of a job of the real code location (`build_definitions` on this registry and
    warehouse folder), in process. `layers` (first part of the asset key) and `assets` select
    assets of the job; neither runs all of them. `job=ASSET_JOB` runs the implicit job of every
    asset. Without `instance` the run gets an ephemeral one."""
    defs = build_definitions(registry, warehouse)
    job_def = (defs.resolve_implicit_global_asset_job_def() if job is ASSET_JOB
               else defs.resolve_job_def(job))
    selection = [*(assets or []),
                 *(k for k in defs.resolve_all_asset_keys() if k.path[0] in layers)]
    return job_def.execute_in_process(
        run_config=run_config, instance=instance, tags=tags, raise_on_error=raise_on_error,
        asset_selection=selection or None,
    )


def failures(result: dg.ExecuteInProcessResult) -> list[str]:
    """Each failed step with its whole error: the message sits above a stack trace whose
    depth follows the code, so a cut tail may lose it."""
    return [
        f"{e.step_key}: {e.event_specific_data.error.to_string()}"
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE"
    ]


def succeeded(result: dg.ExecuteInProcessResult) -> dg.ExecuteInProcessResult:
    """The result, once it is known to be a success (else the failures are the message)."""
    assert result.success, failures(result)
    return result


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    """The run's asset check evaluations by check name."""
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def materialized(result: dg.ExecuteInProcessResult) -> set[dg.AssetKey]:
    """The assets the run materialized."""
    return {e.asset_key for e in result.get_asset_materialization_events()}


def published_outputs(warehouse: Path) -> dict[str, str]:
    """What others read, byte for byte: the analyst file and the current activation set
    (file name -> digest, and where the link points)."""
    outputs = {}
    analytics = warehouse / ANALYTICS_FILE
    if analytics.exists():
        outputs[ANALYTICS_FILE] = hashlib.sha256(analytics.read_bytes()).hexdigest()
    link = warehouse / "exports" / CURRENT_LINK
    if link.exists():
        outputs[f"exports/{CURRENT_LINK} ->"] = str(link.resolve())
        outputs |= {f"exports/{CURRENT_LINK}/{f.name}": hashlib.sha256(f.read_bytes()).hexdigest()
                    for f in sorted(link.resolve().iterdir())}
    return outputs


def materialized_in(result: dg.ExecuteInProcessResult, layers: tuple[str, ...]) -> list[str]:
    """Assets of `layers` the run materialized (none, when a gate held them back)."""
    return sorted(k.to_user_string() for k in materialized(result) if k.path[0] in layers)


# --- a site: a registry folder and the warehouse built from it ---------------------------------


@dataclass(frozen=True)
class Site:
    """`root/input` (the registry and its files) and `root/warehouse`, with the result of the
    run that built it when there was one. A site a session fixture built is shared: read it,
    or `copy_to` a folder of the test's own before changing anything."""

    root: Path
    result: dg.ExecuteInProcessResult | None = field(default=None, compare=False, repr=False)

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def registry(self) -> Path:
        return self.input / "sources.yaml"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"

    @property
    def database(self) -> Path:
        return self.warehouse / WAREHOUSE_FILE

    @property
    def models(self) -> Path:
        return self.warehouse / "models"

    def copy_to(self, target: Path, symlinks: bool = False) -> Site:
        """A copy (input and warehouse) to change freely; the built state goes along, the run
        result does not. Links (the current export folder's) are copied as the folders they
        point to, unless `symlinks`."""
        shutil.copytree(self.root, target, symlinks=symlinks)
        return Site(target)

    def query(self, sql: str) -> pl.DataFrame:
        con = duckdb.connect(str(self.database), read_only=True)
        try:
            return con.sql(sql).pl()
        finally:
            con.close()

    def xref(self) -> pl.DataFrame:
        return self.query(
            "SELECT source, source_record_id, customer_id, cluster_size FROM matching.customer_xref"
        ).sort("source", "source_record_id")


def build_site(root: Path, write_input, **run) -> Site:
    """Write a site's input with `write_input(input folder)` and build its warehouse with one
    `run_job(**run)`; the result is kept, not judged."""
    site = Site(root)
    write_input(site.input)
    return Site(root, run_job(site.registry, site.warehouse, **run))


def file_digest(root: Path) -> str:
    """Every file and link under root, by path and content: equal digests, unchanged folder."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def shared(site: Site) -> Iterator[Site]:
    """Hand out a session's site, and fail at the end if any test changed a byte of it."""
    before = file_digest(site.root)
    yield site
    assert file_digest(site.root) == before, (
        f"a test changed the shared site {site.root}: copy it (Site.copy_to) before changing it")


def generated_input(persons: int, seed: int, registry_lines: str = ""):
    """`write_input` for build_site: the generator's source set, with lines added to its
    registry."""
    def write(folder: Path) -> None:
        generate(persons=persons, seed=seed, out_dir=folder, progress=False)
        with (folder / "sources.yaml").open("a", encoding="utf-8") as handle:
            handle.write(registry_lines)
    return write


def write_e2e_input(root: Path, persons: int = E2E_PERSONS, seed: int = E2E_SEED) -> Path:
    """Generated sources plus one erasure request, so the governance tables that keep rows
    across runs (receipts, suppression list) hold something to compare; returns the registry
    path."""
    generate(persons=persons, seed=seed, out_dir=root, progress=False)
    registry = root / "sources.yaml"
    # At 400 persons the injected unusable tickets (only a SQL-junk name) are 5.1% of the
    # support desk, just over the 5% default gate these tests are not about.
    # The generator's own 'today': recency, segments and the snapshot quarter then do not
    # move with the calendar between the runs compared.
    registry.write_text(
        registry.read_text(encoding="utf-8") + "max_rejected_share: 0.1\n"
        f"segments:\n  reference_date: {REFERENCE_DATE.isoformat()}\n", encoding="utf-8"
    )
    crm = pl.read_csv(root / "sources" / "crm_contacts.csv", separator=";", infer_schema=False)
    emails = crm.get_column("email").drop_nulls().sort()
    # The first well-formed one (the generator injects invalid addresses too).
    email = emails.filter(emails.str.contains(r"^[a-z][a-z0-9.]*@[a-z0-9-]+\.[a-z]+$")).item(0)
    (root / "governance").mkdir()
    (root / "governance" / "erasure_requests.csv").write_text(
        "request_id,identifier_type,value,requested_on\n"
        f"ER-1,email,{email},2026-11-30\n", encoding="utf-8")
    return registry


# Columns that say which run wrote a row and when: they differ on every run by design.
# Keyed by (file, schema, table); `raw.*` are the per-source raw tables.
RUN_METADATA: dict[TableKey, frozenset[str]] = {
    (WAREHOUSE_FILE, "raw", "*"): frozenset({"_loaded_at", "_run_id"}),
    (WAREHOUSE_FILE, "cleaned", "customer_records"): frozenset(
        {"loaded_at", "load_run_id", "cleaned_run_id"}
    ),
    (WAREHOUSE_FILE, "cleaned", "activities"): frozenset({"load_run_id", "cleaned_run_id"}),
    (WAREHOUSE_FILE, "cleaned", "quarantine"): frozenset({"run_id"}),
    (WAREHOUSE_FILE, "matching", "customer_xref"): frozenset({"run_id", "assigned_at"}),
    (WAREHOUSE_FILE, "matching", "id_history"): frozenset({"run_id", "occurred_at"}),
    (WAREHOUSE_FILE, "enrichment", "customer_xref_snapshots"): frozenset(
        {"snapshot_run_id", "snapshot_at", "run_id", "assigned_at"}
    ),
    (WAREHOUSE_FILE, "enrichment", "customer_snapshots"): frozenset(
        {"snapshot_run_id", "snapshot_at"}
    ),
    (WAREHOUSE_FILE, "enrichment", "customer_segment_snapshots"): frozenset(
        {"snapshot_run_id", "snapshot_at"}
    ),
    # The folder is named after the run (exports/activation-<run id>).
    (WAREHOUSE_FILE, "segments", "activation_exports"): frozenset({"folder", "run_id"}),
    (WAREHOUSE_FILE, "governance", "erasure_receipts"): frozenset({"processed_at", "run_id"}),
    (WAREHOUSE_FILE, "governance", "suppression_list"): frozenset({"added_at"}),
    (ANALYTICS_FILE, "main", "segment_history"): frozenset({"snapshot_at"}),
}


def excluded(table: TableKey, *maps: dict[TableKey, frozenset[str]]) -> frozenset[str]:
    """Columns of `table` the given maps leave out of a comparison."""
    file, schema, _ = table
    out: frozenset[str] = frozenset()
    for mapping in maps:
        out |= mapping.get(table, frozenset()) | mapping.get((file, schema, "*"), frozenset())
    return out


@dataclass(frozen=True)
class TableFingerprint:
    """Row count and order-insensitive hash of a table's compared columns; the hash of each
    column alone is kept to name the columns that differ, but equality is on the rows."""

    rows: int
    digest: int
    names: tuple[str, ...]  # the compared columns, so a changed schema is another version
    columns: tuple[tuple[str, int], ...] = field(compare=False, default=())

    def differing_columns(self, other: TableFingerprint) -> list[str]:
        theirs = dict(other.columns)
        return [c for c, h in self.columns if theirs.get(c) != h]


Fingerprint = dict[str, TableFingerprint]


def fingerprint(database: Path, *maps: dict[TableKey, frozenset[str]]) -> Fingerprint:
    """Every user table of a DuckDB file ('schema.table' -> fingerprint), leaving out the
    columns `maps` name (RUN_METADATA when none are given). Staging tables of a run in
    progress are left out: they are not part of any table's version."""
    maps = maps or (RUN_METADATA,)
    con = duckdb.connect(str(database), read_only=True)
    try:
        tables = con.sql(
            "SELECT schema_name, table_name, list(column_name ORDER BY column_index) "
            "FROM duckdb_columns() WHERE database_name = current_database() "
            "GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        result: Fingerprint = {}
        for schema, name, columns in tables:
            if name.startswith(STAGING_PREFIX):
                continue
            skip = excluded((database.name, schema, name), *maps)
            kept = [c for c in columns if c not in skip]
            row = ", ".join(quote_identifier(c) for c in kept)
            each = ", ".join(f"coalesce(sum(hash({quote_identifier(c)})), 0)" for c in kept)
            count, digest, *hashes = con.sql(
                f"SELECT count(*), coalesce(sum(hash({row})), 0), {each} "
                f"FROM {quote_identifier(schema)}.{quote_identifier(name)}"
            ).fetchall()[0]
            result[f"{schema}.{name}"] = TableFingerprint(
                int(count), int(digest), tuple(kept),
                tuple(zip(kept, map(int, hashes), strict=True)))
        return result
    finally:
        con.close()


def differences(a: Fingerprint, b: Fingerprint, label: str = "") -> list[str]:
    """Each table missing on one side or with other rows, naming the columns that differ."""
    problems = [f"{label}{t}: only on one side" for t in sorted(set(a) ^ set(b))]
    for table in sorted(set(a) & set(b)):
        if a[table].names != b[table].names:
            problems.append(f"{label}{table}: columns differ")
        elif a[table] != b[table]:
            changed = a[table].differing_columns(b[table])
            problems.append(f"{label}{table}: rows {a[table].rows} vs {b[table].rows}, "
                            f"columns differing: {changed or '(only in combination)'}")
    return problems


def traces(root: Path, needles: list[str]) -> list[tuple[str, str]]:
    """Where any needle occurs under root: raw bytes of every file, and decoded values of
    every DuckDB and Parquet file (compressed pages would hide them from a byte search)."""
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits += [(str(path), n) for n in needles if n.encode() in data]
        if path.suffix == ".duckdb":
            con = duckdb.connect(str(path), read_only=True)
            try:
                for schema, table, column in con.sql(
                    "SELECT schema_name, table_name, column_name FROM duckdb_columns() "
                    "WHERE database_name = current_database() AND data_type = 'VARCHAR'"
                ).fetchall():
                    for n in needles:
                        found = con.execute(
                            f"SELECT count(*) FROM {quote_identifier(schema)}."
                            f"{quote_identifier(table)} WHERE contains("
                            f"{quote_identifier(column)}, ?)", [n]).fetchall()[0][0]
                        if found:
                            hits.append((f"{path}:{schema}.{table}.{column}", n))
            finally:
                con.close()
        elif path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            for column, dtype in frame.schema.items():
                if dtype == pl.String:
                    hits += [(f"{path}:{column}", n) for n in needles
                             if frame[column].str.contains(n, literal=True).any()]
    return hits


def query(database: Path, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of one query on a DuckDB file opened read-only."""
    con = duckdb.connect(str(database), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def staging_tables(database: Path) -> list[str]:
    """Staging tables left in a DuckDB file."""
    con = duckdb.connect(str(database), read_only=True)
    try:
        return [f"{s}.{t}" for s, t in con.sql(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            f"WHERE starts_with(table_name, '{STAGING_PREFIX}')"
        ).fetchall()]
    finally:
        con.close()


@dataclass
class Workspace:
    """One pipeline installation: a registry, a warehouse folder and a Dagster home."""

    registry: Path
    warehouse: Path
    dagster_home: Path

    @property
    def database(self) -> Path:
        return self.warehouse / "cdi.duckdb"

    @property
    def analytics(self) -> Path:
        return self.warehouse / "analytics.duckdb"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CDI_SOURCES": str(self.registry),
            "CDI_WAREHOUSE_DIR": str(self.warehouse),
            "DAGSTER_HOME": str(self.dagster_home),
            "PYTHONUNBUFFERED": "1",
            # One pseudonymisation key for all, as in production: a fresh warehouse would
            # otherwise draw its own, and its analyst file's keyed hashes would differ.
            KEY_ENV: TEST_KEY,
        }

    def copy_warehouse_to(self, other: Workspace) -> None:
        """Give `other` this workspace's warehouse (its previous state for a run)."""
        shutil.rmtree(other.warehouse, ignore_errors=True)
        shutil.copytree(self.warehouse, other.warehouse, symlinks=True)


def workspace(root: Path, registry: Path) -> Workspace:
    """A fresh Dagster home with the repository's instance config, under root."""
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return Workspace(registry=registry, warehouse=root / "warehouse", dagster_home=home)


@dataclass
class RefreshRun:
    """What one `full_refresh` process did."""

    returncode: int
    log: str
    # Seconds from process start to each step's start, as the log showed them (run order).
    started: dict[str, float] = field(default_factory=dict)
    # Seconds each step took, from the run's records in the Dagster instance (finished runs).
    durations: dict[str, float] = field(default_factory=dict)

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    @property
    def succeeded_run(self) -> bool:
        return self.returncode == 0 and "RUN_SUCCESS" in self.log


def _step_of(line: str, event: str) -> str | None:
    # Dagster's console line: "... - <pid> - <step key> - STEP_START - Started execution ..."
    marker = f" - {event} - "
    if marker not in line:
        return None
    return line.split(marker, 1)[0].rsplit(" - ", 1)[-1].strip()


def start_refresh(ws: Workspace, job: str = "full_refresh",
                  run_config: Path | None = None, repair_first: bool = True) -> subprocess.Popen:
    """Start a job as `make run` starts `full_refresh`: free slots of dead runs (unless told
    not to), then execute. The repair is `python -m cdi_pipeline.instance_repair`'s own
    function on the workspace's instance, called here rather than in a Python of its own
    (test_instance_repair runs the module itself)."""
    if repair_first:
        with dg.DagsterInstance.from_config(str(ws.dagster_home)) as instance:
            repair(instance)
    config = ["-c", str(run_config)] if run_config else []
    return subprocess.Popen(
        [str(BIN / "dagster"), "job", "execute", "-m", "cdi_pipeline.definitions",
         "-j", job, *config],
        env=ws.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, so a kill takes every child too
    )


def follow(proc: subprocess.Popen, kill_at: tuple[str, float] | None = None,
           timeout: float = 600.0) -> RefreshRun:
    """Read a refresh process's log to the end; with `kill_at=(step, seconds)`, SIGKILL its
    process group that many seconds after the step starts."""
    t0 = time.monotonic()
    started: dict[str, float] = {}
    lines: list[str] = []

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
            os.killpg(proc.pid, signal.SIGKILL)

    watchdog = threading.Timer(timeout, kill)
    watchdog.start()
    timer: threading.Timer | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            now = time.monotonic() - t0
            if step := _step_of(line, "STEP_START"):
                started.setdefault(step, now)
                if kill_at and step == kill_at[0] and timer is None:
                    timer = threading.Timer(kill_at[1], kill)
                    timer.start()
        returncode = proc.wait()
    finally:
        watchdog.cancel()
        if timer is not None:
            timer.cancel()
    return RefreshRun(returncode, "".join(lines), started)


def refresh(ws: Workspace, kill_at: tuple[str, float] | None = None, job: str = "full_refresh",
            run_config: Path | None = None) -> RefreshRun:
    """Run a job (`full_refresh` unless told) to its end, or to its kill."""
    run = follow(start_refresh(ws, job, run_config), kill_at)
    if run.succeeded_run:
        with dg.DagsterInstance.from_config(str(ws.dagster_home)) as instance:
            [latest] = instance.get_runs(limit=1)
            run.durations = {
                s.step_key: s.end_time - s.start_time
                for s in instance.get_run_step_stats(latest.run_id)
                if s.start_time is not None and s.end_time is not None
            }
    return run
