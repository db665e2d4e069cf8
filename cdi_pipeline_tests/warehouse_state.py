"""Test harness: run `full_refresh` the way `make run` does (optionally killing it), and
fingerprint every table of a warehouse so two states can be compared.

A fingerprint is (row count, order-insensitive sum of row hashes) per table, over every column
except run metadata: the columns that say which run wrote a row and when. Those are named here
one by one, so a new column is compared unless someone decides it is run metadata.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from cdi_pipeline.lib.storage import STAGING_PREFIX, quote_identifier

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]

# Columns that name the run that wrote a row or the moment it did, in every table...
RUN_METADATA_COLUMNS = frozenset({
    "_loaded_at", "_run_id", "loaded_at", "load_run_id", "cleaned_run_id", "run_id",
    "assigned_at", "snapshot_run_id", "snapshot_at", "processed_at", "added_at",
})
# ...and columns that are run metadata in one table only (elsewhere they are data).
RUN_METADATA_BY_TABLE = {
    "golden.id_history": frozenset({"occurred_at"}),
    # Export file paths carry the run id of the folder they were written to.
    "segments.activation_exports": frozenset({"csv", "parquet", "folder"}),
}

Fingerprint = dict[str, tuple[int, int]]


def compared_columns(table: str, columns: list[str]) -> list[str]:
    """The columns of `table` ('schema.name') that a fingerprint covers."""
    skip = RUN_METADATA_COLUMNS | RUN_METADATA_BY_TABLE.get(table, frozenset())
    return [c for c in columns if c not in skip]


def fingerprint(database: Path) -> Fingerprint:
    """Row count and row-hash sum of every user table in a DuckDB file (staging tables of a
    run in progress are left out: they are not part of any table's version)."""
    con = duckdb.connect(str(database), read_only=True)
    try:
        tables = con.sql(
            "SELECT table_schema, table_name, list(column_name ORDER BY ordinal_position) "
            "FROM information_schema.columns WHERE table_catalog = current_database() "
            "GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        result: Fingerprint = {}
        for schema, name, columns in tables:
            if name.startswith(STAGING_PREFIX):
                continue
            key = f"{schema}.{name}"
            cols = ", ".join(quote_identifier(c) for c in compared_columns(key, columns))
            count, total = con.sql(
                f"SELECT count(*), coalesce(sum(hash({cols})), 0) "
                f"FROM {quote_identifier(schema)}.{quote_identifier(name)}"
            ).fetchall()[0]
            result[key] = (int(count), int(total))
        return result
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
    # Seconds from process start to each step's start and success, as the log showed them.
    started: dict[str, float] = field(default_factory=dict)
    succeeded: dict[str, float] = field(default_factory=dict)

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


def start_refresh(ws: Workspace) -> subprocess.Popen:
    """Start `full_refresh` as `make run` does: free slots of dead runs, then execute."""
    subprocess.run([str(BIN / "python"), "-m", "cdi_pipeline.instance_repair"],
                   env=ws.env(), check=True, capture_output=True, timeout=120)
    return subprocess.Popen(
        [str(BIN / "dagster"), "job", "execute", "-m", "cdi_pipeline.definitions",
         "-j", "full_refresh"],
        env=ws.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, so a kill takes every child too
    )


def follow(proc: subprocess.Popen, kill_at: tuple[str, float] | None = None,
           timeout: float = 600.0) -> RefreshRun:
    """Read a refresh process's log to the end; with `kill_at=(step, seconds)`, SIGKILL its
    process group that many seconds after the step starts."""
    t0 = time.monotonic()
    started: dict[str, float] = {}
    succeeded: dict[str, float] = {}
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
            elif step := _step_of(line, "STEP_SUCCESS"):
                succeeded.setdefault(step, now)
        returncode = proc.wait()
    finally:
        watchdog.cancel()
        if timer is not None:
            timer.cancel()
    return RefreshRun(returncode, "".join(lines), started, succeeded)


def refresh(ws: Workspace, kill_at: tuple[str, float] | None = None) -> RefreshRun:
    """Run `full_refresh` to its end (or to its kill)."""
    return follow(start_refresh(ws), kill_at)
