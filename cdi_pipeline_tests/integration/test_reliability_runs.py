"""Crash consistency and concurrency of `full_refresh` runs, each run started as `make run`
starts it (a real `dagster job execute` process on a real warehouse).

Crash consistency: runs killed with SIGKILL at points spread over every layer.

The scenario: a warehouse built from a source set missing 10% of its rows (state S0), then the
full source set arrives. S1 is what one uninterrupted run makes of it. A chain of runs, each
killed at another step, must leave after every kill each table at its S0 or its S1 version
(never partial, never missing), the analyst file wholly S0 or wholly S1, and the activation
export folder complete. The run after the last kill must then give exactly S1.

Concurrency: two runs started together queue on the warehouse instead of failing on DuckDB's
file lock, while analysts reading the published file see one whole version at a time.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import yaml

from cdi_pipeline.bench import hold_back
from cdi_pipeline.datagen import generate
from cdi_pipeline.defs.incremental.jobs import INCREMENTAL_REFRESH
from cdi_pipeline.lib.governance.erasure import REWRITE_OWED
from cdi_pipeline.lib.raw.incoming import INCOMING_DIR
from cdi_pipeline_tests.warehouse_state import (
    Fingerprint,
    RefreshRun,
    Workspace,
    differences,
    fingerprint,
    follow,
    query,
    refresh,
    staging_tables,
    start_refresh,
    traces,
    workspace,
)

# One step or more of every layer; each at a share of that step's uninterrupted duration.
KILL_POINTS = [
    ("raw__crm_contacts", 0.5),
    ("cleaned_customer_records", 0.3),
    ("cleaned_customer_records", 0.9),
    ("matching__model", 0.5),
    ("match_customers", 0.4),
    ("match_customers", 0.9),
    ("golden_customers", 0.6),
    ("customer_segments", 0.5),
    ("golden__customer_360", 0.5),
    ("quarterly_snapshots", 0.5),
    ("published__analytics", 0.6),
    ("segments__activation_exports", 0.5),
]
SHARES = (0.15, 0.5, 0.85)


@dataclass
class State:
    """What runs left behind: every table, the analyst file and the activation export
    (None where a run has not made it yet)."""

    tables: Fingerprint
    analytics: Fingerprint | None
    exports: dict[str, str] | None


def export_digest(ws: Workspace) -> dict[str, str] | None:
    """Contents of the published activation export: file name -> digest of its rows."""
    link = ws.warehouse / "exports" / "activation"
    if not link.is_symlink():
        return None
    folder = link.resolve(strict=True)
    json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    digest = {}
    for csv in sorted(folder.glob("*.csv")):
        rows = pl.read_csv(csv, infer_schema=False)
        parquet = pl.read_parquet(csv.with_suffix(".parquet"))
        assert parquet.height == rows.height, f"{csv.name}: parquet and csv disagree"
        digest[csv.name] = hashlib.sha256(csv.read_bytes()).hexdigest()
    return digest


def state_of(ws: Workspace) -> State:
    return State(
        fingerprint(ws.database) if ws.database.exists() else {},
        fingerprint(ws.analytics) if ws.analytics.exists() else None,
        export_digest(ws),
    )


@dataclass
class Transition:
    """From one state to the next with one source set; `start` None is an empty warehouse."""

    registry: Path
    start: Workspace | None
    reference: RefreshRun  # the uninterrupted run, for step durations
    old: State
    new: State


@dataclass
class Scenario:
    root: Path
    first: Transition  # an empty warehouse -> S0 (the partial source set)
    update: Transition  # S0 -> S1 (the full source set)
    after: Workspace  # holds S1
    batch: Path  # the rows S0 lacks, as incoming/<source>/ files (a copy of that folder)
    batch_files: list[str]  # their paths relative to a registry folder


def _source_set(root: Path, name: str, like: Path) -> Path:
    shutil.copytree(like, root / name)
    return root / name / "sources.yaml"


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    root = tmp_path_factory.mktemp("crash")
    generated = root / "generated"
    generate(persons=300, seed=11, out_dir=generated, progress=False)
    registry_file = generated / "sources.yaml"
    # The injected junk tickets of a small set sit just over the 5% gate this test is not about.
    registry_file.write_text(
        registry_file.read_text(encoding="utf-8") + "max_rejected_share: 0.1\n", "utf-8")
    partial = _source_set(root, "partial", generated)
    batch_files = hold_back(partial.parent, 0.1)
    batch = root / "batch"
    shutil.move(partial.parent / INCOMING_DIR, batch)
    full = _source_set(root, "full", generated)

    before = workspace(root / "s0", partial)
    first = refresh(before)
    assert first.succeeded_run, first.log[-4000:]
    after = workspace(root / "s1", full)
    before.copy_warehouse_to(after)
    update = refresh(after)
    assert update.succeeded_run, update.log[-4000:]

    s0, s1 = state_of(before), state_of(after)
    # The states must differ where it matters, or the checks below prove nothing.
    for table in ("raw.crm_contacts", "cleaned.customer_records", "matching.customer_xref",
                  "golden.customers", "segments.customer_segments", "golden.customer_360"):
        assert s0.tables[table] != s1.tables[table], f"{table} is the same before and after"
    assert s0.analytics != s1.analytics
    assert s0.exports != s1.exports
    return Scenario(
        root,
        Transition(partial, None, first, State({}, None, None), s0),
        Transition(full, before, update, s0, s1),
        after, batch, batch_files,
    )


def assert_previous_or_new(ws: Workspace, move: Transition, where: str) -> None:
    old, new = move.old, move.new
    state = state_of(ws)
    assert set(state.tables) <= set(old.tables) | set(new.tables), (
        f"after a kill {where}: unknown tables")
    for table in sorted(set(old.tables) | set(new.tables)):
        got, before, after = (s.tables.get(table) for s in (state, old, new))
        assert got in (before, after), (
            f"after a kill {where}: {table} is neither its previous nor its new version "
            f"(rows {got and got.rows}, previous {before and before.rows}, "
            f"new {after and after.rows})"
        )
    assert state.analytics in (old.analytics, new.analytics), (
        f"after a kill {where}: the analyst file is neither the previous nor the new one")
    assert state.exports in (old.exports, new.exports), (
        f"after a kill {where}: the activation export is neither the previous nor the new one")


def kill_chain(root: Path, move: Transition, points: list[tuple[str, float]]) -> list[str]:
    """Kill one run per point, check the state after each, then let a run finish; return
    what then differs from an uninterrupted run's result."""
    ws = workspace(root, move.registry)
    if move.start is not None:
        move.start.copy_warehouse_to(ws)
    ref = move.reference
    for step, share in points:
        run = refresh(ws, kill_at=(step, share * ref.durations[step]))
        where = f"{share:.0%} into {step}"
        assert step in run.started, f"{step} never started:\n{run.log[-3000:]}"
        assert run.killed, f"the run ended before its kill {where}:\n{run.log[-3000:]}"
        assert_previous_or_new(ws, move, where)
    final = refresh(ws)
    assert final.succeeded_run, final.log[-4000:]
    assert staging_tables(ws.database) == []
    state = state_of(ws)
    return [t for t in sorted(move.new.tables) if state.tables.get(t) != move.new.tables[t]] + [
        part for part in ("analytics", "exports")
        if getattr(state, part) != getattr(move.new, part)
    ]


def test_killed_runs_leave_previous_or_new_tables_and_the_next_run_completes(
    scenario: Scenario,
) -> None:
    assert kill_chain(scenario.root / "chain", scenario.update, KILL_POINTS) == []


def test_killed_first_run_leaves_no_partial_table(scenario: Scenario) -> None:
    points = [("cleaned_customer_records", 0.5), ("match_customers", 0.5),
              ("published__analytics", 0.6)]
    assert kill_chain(scenario.root / "first", scenario.first, points) == []


@pytest.mark.slow
def test_kill_at_every_step(scenario: Scenario) -> None:
    ref = scenario.update.reference
    steps = sorted(ref.durations, key=ref.started.get)
    points = [(step, share) for step in steps for share in SHARES]
    assert kill_chain(scenario.root / "every_step", scenario.update, points) == []


def _place_batch(scenario: Scenario, registry: Path) -> None:
    """Drop the held-back rows into incoming/<source>/ as a delivery would."""
    shutil.rmtree(registry.parent / INCOMING_DIR, ignore_errors=True)
    shutil.copytree(scenario.batch, registry.parent / INCOMING_DIR)


def test_killed_incremental_runs_leave_previous_or_new_tables(scenario: Scenario) -> None:
    """incremental_refresh writes every table in one transaction and moves its files after:
    killed anywhere, the warehouse is S0 or the batch's result and the files still wait; a
    re-run (or a run of files a crash left in incoming/ after the commit) gives the result."""
    root = scenario.root / "incremental"
    registry = _source_set(root, "source_set", scenario.first.registry.parent)
    config = root / "run_config.yaml"
    config.write_text(yaml.safe_dump(
        {"ops": {"incremental_match": {"config": {"files": scenario.batch_files}}}}), "utf-8")
    waiting = [registry.parent / f for f in scenario.batch_files]

    def run(ws: Workspace, kill_at: tuple[str, float] | None = None) -> RefreshRun:
        return refresh(ws, kill_at, job=INCREMENTAL_REFRESH, run_config=config)

    reference = workspace(root / "reference", registry)
    scenario.update.start.copy_warehouse_to(reference)
    _place_batch(scenario, registry)
    uninterrupted = run(reference)
    assert uninterrupted.succeeded_run, uninterrupted.log[-4000:]
    assert not any(p.exists() for p in waiting)
    move = Transition(registry, scenario.update.start, uninterrupted, scenario.update.old,
                      state_of(reference))
    assert move.new.tables["matching.customer_xref"] != move.old.tables["matching.customer_xref"]

    ws = workspace(root / "chain", registry)
    move.start.copy_warehouse_to(ws)
    _place_batch(scenario, registry)
    step = "incremental_match"
    duration = uninterrupted.durations[step]
    for share in SHARES:
        if not all(p.exists() for p in waiting):
            break  # killed after it moved its files: the batch is done
        killed = run(ws, kill_at=(step, share * duration))
        assert killed.killed, killed.log[-3000:]
        assert_previous_or_new(ws, move, f"{share:.0%} into {step}")
        if state_of(ws).tables != move.new.tables:
            assert all(p.exists() for p in waiting), "a run moved files it had not committed"
    if all(p.exists() for p in waiting):
        final = run(ws)
        assert final.succeeded_run, final.log[-4000:]
    assert state_of(ws) == move.new
    # Killed after its commit but before moving its files, a run leaves them in incoming/:
    # loading them again must change nothing.
    _place_batch(scenario, registry)
    again = run(ws)
    assert again.succeeded_run, again.log[-4000:]
    assert f"'files': {len(waiting)}," in again.log  # it did read the batch again
    problems = differences(state_of(ws).tables, move.new.tables)
    assert problems == [], "\n".join(problems)


def test_killed_erasure_never_leaves_a_person_purged_but_not_suppressed(
    scenario: Scenario,
) -> None:
    """The purge, its receipt and its suppression entries commit together; the analyst file
    and derived files are cleaned before that commit, and the file rewrite is owed until it
    is done. Killed anywhere in the erasure step, the person is either untouched (and the
    request still pending) or gone with their suppression entries, and the run after leaves
    no trace of them in any file."""
    root = scenario.root / "erasure"
    registry = _source_set(root, "source_set", scenario.update.registry.parent)
    [(customer_id, email, phone, surname)] = query(scenario.after.database, """
        SELECT customer_id, email, phone, last_name FROM golden.customers
        WHERE email IS NOT NULL AND phone IS NOT NULL AND records >= 2
          AND length(last_name_key) >= 6 AND last_name_key IN (
            SELECT last_name_key FROM golden.customers GROUP BY 1 HAVING count(*) = 1)
        ORDER BY customer_id LIMIT 1""")
    (registry.parent / "governance").mkdir(exist_ok=True)
    (registry.parent / "governance" / "erasure_requests.csv").write_text(
        "request_id,identifier_type,value,requested_on\n"
        f"ER-9,email,{email},2026-11-30\n", encoding="utf-8")

    reference = workspace(root / "reference", registry)
    scenario.after.copy_warehouse_to(reference)
    uninterrupted = refresh(reference)
    assert uninterrupted.succeeded_run, uninterrupted.log[-4000:]
    needles = [email, phone, surname]
    assert traces(scenario.after.warehouse, needles)  # the control: found before
    assert traces(reference.warehouse, needles) == []

    ws = workspace(root / "chain", registry)
    scenario.after.copy_warehouse_to(ws)
    for share in (0.1, 0.3, 0.5, 0.7, 0.9):
        run = refresh(ws, kill_at=("erasure", share * uninterrupted.durations["erasure"]))
        assert run.killed, run.log[-3000:]
        [(done, suppressed, present)] = query(ws.database, """
            SELECT (SELECT count(*) FROM governance.erasure_receipts WHERE request_id = 'ER-9'),
                   (SELECT count(*) FROM governance.suppression_list WHERE request_id = 'ER-9'),
                   (SELECT count(*) FROM golden.customers WHERE customer_id = ?)""",
            [customer_id])
        where = f"after a kill {share:.0%} into the erasure step"
        assert (done > 0) == (suppressed > 0) == (present == 0), (
            f"{where}: receipts {done}, suppression entries {suppressed}, customer rows "
            f"{present}")
        if done:
            assert traces(ws.analytics, needles) == [], where
    final = refresh(ws)
    assert final.succeeded_run, final.log[-4000:]
    assert traces(ws.warehouse, needles) == []
    assert query(ws.database, "SELECT count(DISTINCT run_id) FROM governance.erasure_receipts "
                 "WHERE request_id = 'ER-9'") == [(1,)]
    assert not (ws.warehouse / REWRITE_OWED).exists()


def _frozen(state: Fingerprint) -> tuple:
    return tuple(sorted(state.items()))


def test_concurrent_runs_queue_and_analysts_see_whole_versions(scenario: Scenario) -> None:
    move = scenario.update
    ws = workspace(scenario.root / "concurrent", move.registry)
    move.start.copy_warehouse_to(ws)
    versions = {_frozen(v) for v in (move.old.analytics, move.new.analytics)}
    seen: list[tuple] = []
    errors: list[str] = []
    done = threading.Event()

    def analyst() -> None:
        while not done.is_set():
            try:
                # A new connection each time, as analysts' tools open the file. (An analyst
                # who keeps one open reads the version it opened: test_privacy_publish.)
                seen.append(_frozen(fingerprint(ws.analytics)))
            except Exception as error:  # noqa: BLE001 - any failure to read is the finding
                errors.append(repr(error))

    reader = threading.Thread(target=analyst)
    reader.start()
    try:
        procs = [start_refresh(ws), start_refresh(ws)]
        runs: list[RefreshRun] = [None, None]  # type: ignore[list-item]

        def watch(i: int) -> None:
            runs[i] = follow(procs[i])

        watchers = [threading.Thread(target=watch, args=(i,)) for i in range(2)]
        for w in watchers:
            w.start()
        for w in watchers:
            w.join()
    finally:
        done.set()
        reader.join()
    for run in runs:
        assert run.succeeded_run, run.log[-4000:]
    assert errors == []
    # They did overlap: one run's steps waited for the other's to leave the warehouse pool.
    assert any("blocked by limit for pool cdi_warehouse" in run.log for run in runs)
    # Both versions were read while the runs went on, and never anything in between.
    assert set(seen) == versions
    # The second run re-did the first run's work on unchanged input: the same result.
    assert state_of(ws) == move.new
