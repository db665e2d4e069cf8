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

from cdi_pipeline.bench import hold_back
from cdi_pipeline.datagen import generate
from cdi_pipeline_tests.warehouse_state import (
    Fingerprint,
    RefreshRun,
    Workspace,
    fingerprint,
    follow,
    refresh,
    staging_tables,
    start_refresh,
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
class Scenario:
    root: Path
    registry: Path
    before: Workspace
    after: Workspace
    reference: RefreshRun  # the uninterrupted S0 -> S1 run, for step durations
    tables: tuple[Fingerprint, Fingerprint]
    analytics: tuple[Fingerprint, Fingerprint]
    exports: tuple[dict[str, str], dict[str, str]]


def export_digest(ws: Workspace) -> dict[str, str]:
    """Contents of the published activation export: file name -> digest of its rows."""
    folder = (ws.warehouse / "exports" / "activation").resolve(strict=True)
    json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    digest = {}
    for csv in sorted(folder.glob("*.csv")):
        rows = pl.read_csv(csv, infer_schema=False)
        parquet = pl.read_parquet(csv.with_suffix(".parquet"))
        assert parquet.height == rows.height, f"{csv.name}: parquet and csv disagree"
        digest[csv.name] = hashlib.sha256(csv.read_bytes()).hexdigest()
    return digest


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    root = tmp_path_factory.mktemp("crash")
    full = root / "full"
    generate(persons=300, seed=11, out_dir=full, progress=False)
    registry_file = full / "sources.yaml"
    # The injected junk tickets of a small set sit just over the 5% gate this test is not about.
    registry_file.write_text(
        registry_file.read_text(encoding="utf-8") + "max_rejected_share: 0.1\n", "utf-8")
    partial = root / "partial"
    shutil.copytree(full, partial)
    hold_back(partial, 0.1)
    shutil.rmtree(partial / "incoming")

    source_set = root / "input"
    shutil.copytree(partial, source_set)
    registry = source_set / "sources.yaml"
    before = workspace(root / "s0", registry)
    first = refresh(before)
    assert first.succeeded_run, first.log[-4000:]

    shutil.rmtree(source_set)
    shutil.copytree(full, source_set)
    after = workspace(root / "s1", registry)
    before.copy_warehouse_to(after)
    reference = refresh(after)
    assert reference.succeeded_run, reference.log[-4000:]

    scenario = Scenario(
        root, registry, before, after, reference,
        (fingerprint(before.database), fingerprint(after.database)),
        (fingerprint(before.analytics), fingerprint(after.analytics)),
        (export_digest(before), export_digest(after)),
    )
    # The scenario must tell the two states apart, or the checks below prove nothing.
    changed = [t for t in scenario.tables[1] if scenario.tables[0].get(t) != scenario.tables[1][t]]
    for table in ("raw.crm_contacts", "cleaned.customer_records", "golden.customer_xref",
                  "golden.customers", "segments.customer_segments", "golden.customer_360"):
        assert table in changed, f"{table} is the same before and after"
    assert scenario.analytics[0] != scenario.analytics[1]
    assert scenario.exports[0] != scenario.exports[1]
    return scenario


def assert_previous_or_new(ws: Workspace, scenario: Scenario, where: str) -> None:
    old, new = scenario.tables
    state = fingerprint(ws.database)
    assert set(state) <= set(old) | set(new), f"after a kill {where}: unknown tables"
    for table in sorted(set(old) | set(new)):
        versions = {old.get(table), new.get(table)}
        assert state.get(table) in versions, (
            f"after a kill {where}: {table} is neither its previous nor its new version "
            f"(rows {state.get(table, (None,))[0]}, previous {old.get(table, (None,))[0]}, "
            f"new {new.get(table, (None,))[0]})"
        )
    assert fingerprint(ws.analytics) in scenario.analytics, (
        f"after a kill {where}: the analyst file is neither the previous nor the new one")
    assert export_digest(ws) in scenario.exports, (
        f"after a kill {where}: the activation export is neither the previous nor the new one")


def kill_chain(scenario: Scenario, points: list[tuple[str, float]], name: str) -> list[str]:
    """Kill one run per point on a copy of S0, check the state after each, then finish."""
    ws = workspace(scenario.root / name, scenario.registry)
    scenario.before.copy_warehouse_to(ws)
    ref = scenario.reference
    for step, share in points:
        duration = ref.succeeded[step] - ref.started[step]
        run = refresh(ws, kill_at=(step, share * duration))
        where = f"{share:.0%} into {step}"
        assert step in run.started, f"{step} never started:\n{run.log[-3000:]}"
        assert run.killed, f"the run ended before its kill {where}:\n{run.log[-3000:]}"
        assert_previous_or_new(ws, scenario, where)
    final = refresh(ws)
    assert final.succeeded_run, final.log[-4000:]
    assert staging_tables(ws.database) == []
    return [
        t for t in sorted(scenario.tables[1])
        if fingerprint(ws.database).get(t) != scenario.tables[1][t]
    ] + (["analytics"] if fingerprint(ws.analytics) != scenario.analytics[1] else [])


def test_killed_runs_leave_previous_or_new_tables_and_the_next_run_completes(
    scenario: Scenario,
) -> None:
    assert kill_chain(scenario, KILL_POINTS, "chain") == []
    # A kill lands inside a step, not after it: the reference run says how long each took.
    assert all(scenario.reference.succeeded[s] > scenario.reference.started[s]
               for s, _ in KILL_POINTS)


@pytest.mark.slow
def test_kill_at_every_step(scenario: Scenario) -> None:
    ref = scenario.reference
    steps = sorted(ref.started, key=ref.started.get)
    points = [(step, share) for step in steps for share in SHARES]
    assert kill_chain(scenario, points, "every_step") == []


def _frozen(state: Fingerprint) -> tuple:
    return tuple(sorted(state.items()))


def test_concurrent_runs_queue_and_analysts_see_whole_versions(scenario: Scenario) -> None:
    ws = workspace(scenario.root / "concurrent", scenario.registry)
    scenario.before.copy_warehouse_to(ws)
    versions = {_frozen(v) for v in scenario.analytics}
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
    assert fingerprint(ws.database) == scenario.tables[1]
    assert fingerprint(ws.analytics) == scenario.analytics[1]
