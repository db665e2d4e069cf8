"""Benchmark: generate N persons, run full_refresh in-process, report time and memory per layer.

    python -m cdi_pipeline.bench --persons 430000      # about 1,000,000 source records
    make bench PERSONS=430000

Data is generated in a child process so the measured process starts clean. Resident memory is
sampled from /proc every 50 ms and attributed to the layer whose step was running; DuckDB and
Splink run inside the process, so their memory counts. Accuracy is scored against the
generator's truth file. The table is printed and written as markdown under
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX
from cdi_pipeline.lib.matching.evaluation import (
    EVIDENCE_COLUMNS,
    evidence_limits,
    read_truth,
    score_clusters,
)
from cdi_pipeline.lib.registry import load_registry
from cdi_pipeline.lib.storage import quote_identifier
from cdi_pipeline.settings import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "benchmarks" / "results"
CHILD_MARK = "BENCH_CHILD_RESULT "
WORK_DIR = PROJECT_ROOT / "benchmarks" / "work"


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class MemorySampler:
    """Samples RSS in a background thread as (wall-clock time, bytes), to line up with the
    event timestamps Dagster records."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), rss_bytes()))
            time.sleep(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> int:
        """Highest sample between start and end (the nearest one when none fell inside)."""
        inside = [b for t, b in self.samples if start <= t <= end]
        if inside:
            return max(inside)
        return min(self.samples, key=lambda s: abs(s[0] - start))[1] if self.samples else 0


@dataclass(frozen=True)
class StepTiming:
    """One executed step: which layer it belongs to and when it ran."""

    step: str
    layer: str
    start: float
    end: float


def _layer_of_step(events: list[dg.DagsterEvent]) -> dict[str, str]:
    layers: dict[str, str] = {}
    for event in events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            key = event.event_specific_data.materialization.asset_key
            layers.setdefault(event.step_key, key.path[0])
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            layers.setdefault(event.step_key,
                              event.event_specific_data.asset_key.path[0] + " (checks)")
    return layers


def step_timings(instance: dg.DagsterInstance, run_id: str) -> list[StepTiming]:
    """Start and end of every step, with its layer, from the run's event log."""
    entries = [e for e in instance.all_logs(run_id) if e.dagster_event is not None]
    layers = _layer_of_step([e.dagster_event for e in entries])
    starts: dict[str, float] = {}
    timings = []
    for entry in entries:
        event = entry.dagster_event
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            timings.append(StepTiming(event.step_key, layers.get(event.step_key, "other"),
                                      starts[event.step_key], entry.timestamp))
    return timings


LAYER_ORDER = ("governance", "raw", "cleaned", "quality", "matching", "golden", "segments",
               "enrichment", "published")


def layer_table(timings: list[StepTiming], sampler: MemorySampler) -> pl.DataFrame:
    """Wall time and peak RSS per layer (checks of a layer shown on their own line)."""
    rows = []
    for layer in sorted({t.layer for t in timings},
                        key=lambda name: (LAYER_ORDER.index(name.split()[0])
                                          if name.split()[0] in LAYER_ORDER else 99, name)):
        steps = [t for t in timings if t.layer == layer]
        rows.append({
            "layer": layer,
            "steps": len(steps),
            "seconds": round(sum(t.end - t.start for t in steps), 1),
            "peak_rss_mib": round(max(sampler.peak(t.start, t.end) for t in steps) / 2**20),
        })
    return pl.DataFrame(rows)


def machine() -> dict[str, str]:
    """What the benchmark ran on."""
    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    if Path("/proc/meminfo").exists():
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 2**20:.1f} GiB"
    return {
        "cpu": f"{os.cpu_count()} cores, {cpu}",
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        # How soon polars' allocator hands freed memory back: it trades peak RSS for time.
        "allocator (_RJEM_MALLOC_CONF)": os.environ.get("_RJEM_MALLOC_CONF", "default"),
        "versions": ", ".join(f"{p} {version(p)}" for p in
                              ("dagster", "duckdb", "polars", "splink", "pandera")),
    }


def _markdown(frame: pl.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def _execute(defs, job_name: str, sampler: MemorySampler, run_config: dict | None = None):
    """Run a job in-process on a fresh ephemeral instance; return (result, instance, wall,
    peak RSS during the run)."""
    instance = dg.DagsterInstance.ephemeral()
    began = time.time()
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={**(run_config or {}),
                    "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    ended = time.time()
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        raise SystemExit(f"{job_name} failed in steps {failed}")
    return result, instance, ended - began, sampler.peak(began, ended)


def _xref(warehouse: Path) -> pl.DataFrame:
    con = duckdb.connect(str(warehouse / "cdi.duckdb"), read_only=True)
    try:
        return con.sql("SELECT source, source_record_id, customer_id "
                       "FROM matching.customer_xref").pl()
    finally:
        con.close()


def _child(job: str, registry: Path, warehouse: Path, files: list[str] | None = None) -> dict:
    """Run one job in a fresh child process (its memory is its own); return its figures."""
    command = [sys.executable, "-m", "cdi_pipeline.bench", "--child-job", job,
               "--child-registry", str(registry), "--child-warehouse", str(warehouse)]
    if files:
        command += ["--child-files", *files]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(CHILD_MARK)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{job} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(CHILD_MARK):])


def run_child(job: str, registry: Path, warehouse: Path, files: list[str] | None) -> None:
    """The child side of `_child`: run, sample memory, print one result line."""
    from cdi_pipeline.definitions import build_definitions  # noqa: PLC0415

    defs = build_definitions(registry, warehouse)
    config = {"ops": {"incremental_match": {"config": {"files": files}}}} if files else None
    with MemorySampler() as sampler:
        result, _, wall, peak = _execute(defs, job, sampler, config)
    stats = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            metadata = event.event_specific_data.materialization.metadata
            stats = {k: v.value for k, v in metadata.items() if isinstance(v.value, int | float)}
            if "seconds_by_phase" in metadata:
                stats["seconds_by_phase"] = metadata["seconds_by_phase"].value
            break
    print(CHILD_MARK + json.dumps({"wall": wall, "peak": peak, "stats": stats}), flush=True)


def incremental_scenario(
    source_input: Path, work: Path, share: float
) -> tuple[pl.DataFrame, str]:
    """Hold back `share` of every file, refresh, then load the rest incrementally and by a
    full rebuild from the same state; compare time, memory and customer ids. Each run is a
    child process, so each peak is that run's own. Also returns the incremental run's
    seconds per phase (markdown)."""
    from cdi_pipeline.defs.incremental.jobs import INCREMENTAL_REFRESH  # noqa: PLC0415

    input_dir = work / "input"
    shutil.copytree(source_input, input_dir)
    files = hold_back(input_dir, share)
    registry = input_dir / "sources.yaml"
    base = work / "warehouse"
    print(f"incremental scenario: full_refresh without {share:.0%} of the rows ...", flush=True)
    _child("full_refresh", registry, base)
    incremental = work / "warehouse_incremental"
    shutil.copytree(base, incremental, symlinks=True)
    print("incremental_refresh of the held-back rows ...", flush=True)
    inc = _child(INCREMENTAL_REFRESH, registry, incremental, files)
    _restore(input_dir, files)
    print("full_refresh with the held-back rows, for comparison ...", flush=True)
    full = _child("full_refresh", registry, base)
    joined = _xref(incremental).join(_xref(base), on=["source", "source_record_id"],
                                     how="full", coalesce=True, suffix="_full")
    same = joined.filter(pl.col("customer_id").eq_missing(pl.col("customer_id_full"))).height
    stats = inc["stats"]
    return pl.DataFrame({
        "figure": ["rows held back per file", "new identity records", "blocking candidates",
                   "records re-matched", "customers touched", "incremental_refresh wall",
                   "incremental_refresh peak RSS", "full_refresh with the batch (model reused)",
                   "full_refresh peak RSS", "incremental / full time",
                   "records with the same customer id"],
        "value": [f"{share:.0%}", f"{stats['new_records']:,}",
                  f"{stats['blocking_candidates']:,}", f"{stats['records_rematched']:,}",
                  f"{stats['customers_touched']:,}", f"{inc['wall']:.1f} s",
                  f"{inc['peak'] / 2**30:.2f} GiB", f"{full['wall']:.1f} s",
                  f"{full['peak'] / 2**30:.2f} GiB", f"{inc['wall'] / full['wall']:.1%}",
                  f"{same / joined.height:.3%} ({joined.height - same:,} differ)"],
    }), stats.get("seconds_by_phase", "(not reported)")


def lean_baselines(warehouse: Path, truth: Path, threshold: float,
                   full_refresh_wall: float, matching_seconds: float) -> pl.DataFrame:
    """The lean Splink script (`bench_baseline`) on the same cleaned records, light and
    default training, each in a child process; with full_refresh's time as a multiple."""
    from cdi_pipeline.bench_baseline import RESULT_MARK, TRAININGS  # noqa: PLC0415

    rows = []
    for training in TRAININGS:
        print(f"lean Splink script ({training} training) on the same records ...", flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "cdi_pipeline.bench_baseline", "--warehouse", str(warehouse),
             "--truth", str(truth), "--threshold", str(threshold), "--training", training],
            capture_output=True, text=True, check=False,
        )
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_MARK)]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"lean Splink script failed:\n{done.stderr[-3000:]}")
        result = json.loads(lines[-1][len(RESULT_MARK):])
        seconds = result["seconds"]
        lean = seconds["train"] + seconds["predict"] + seconds["cluster"]
        rows.append({
            "script": f"lean Splink, {training} training",
            "train_s": seconds["train"], "predict_s": seconds["predict"],
            "cluster_s": seconds["cluster"], "train_predict_cluster_s": round(lean, 1),
            "peak_rss_gib": round(result["peak_rss"] / 2**30, 2),
            "comparisons": f"{result['comparisons']:,}",
            "pairwise_f1": round(result["scores"]["pairwise_f1"], 4),
            "full_refresh_x": round(full_refresh_wall / lean, 2),
            "matching_layer_x": round(matching_seconds / lean, 2),
        })
    return pl.DataFrame(rows)


def run(persons: int, seed: int, work: Path, out: Path, incremental_share: float = 0.01) -> Path:
    """Generate, refresh, measure, score; return the results file."""
    from cdi_pipeline.definitions import build_definitions  # noqa: PLC0415 (after env set-up)

    input_dir, warehouse = work / "input", work / "warehouse"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    started = time.time()
    subprocess.run(
        [sys.executable, "-m", "cdi_pipeline.datagen", "--persons", str(persons), "--seed",
         str(seed), "--out", str(input_dir)],
        check=True,
    )
    generated = time.time() - started
    registry = load_registry(input_dir / "sources.yaml")
    defs = build_definitions(input_dir / "sources.yaml", warehouse)
    print(f"generated {persons:,} persons in {generated:.0f}s; running full_refresh ...",
          flush=True)
    with MemorySampler() as sampler:
        result, instance, wall, _ = _execute(defs, "full_refresh", sampler)
    timings = step_timings(instance, result.run_id)
    layers = layer_table(timings, sampler)
    matching_seconds = float(layers.filter(pl.col("layer") == "matching")
                             .get_column("seconds").sum())
    baselines = lean_baselines(warehouse, registry.truth_file(),
                               registry.matching.match_threshold, wall, matching_seconds)
    incremental = None
    if incremental_share > 0:
        incremental, phases = incremental_scenario(input_dir, work / "incremental",
                                                   incremental_share)
    con = duckdb.connect(str(warehouse / "cdi.duckdb"), read_only=True)
    try:
        records = con.sql("SELECT count(*) FROM cleaned.customer_records").fetchall()[0][0]
        raw_rows = sum(
            con.sql(f"SELECT count(*) FROM raw.{quote_identifier(s.name)}").fetchall()[0][0]
            for s in registry.identity_sources
        )
        xref = con.sql("SELECT source, source_record_id, customer_id "
                       "FROM matching.customer_xref").pl()
        stored = {r[0] for r in con.sql(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'cleaned' "
            "AND table_name = 'customer_records'").fetchall()}
        wanted = ["source", "source_record_id", "first_name_key", "last_name_key",
                  *EVIDENCE_COLUMNS, *sorted(c for c in stored if c.startswith(IDENTIFIER_PREFIX))]
        evidence_records = con.sql(
            f"SELECT {', '.join(map(quote_identifier, wanted))} "
            "FROM cleaned.customer_records").pl()
    finally:
        con.close()
    truth = read_truth(registry.truth_file())
    scores = score_clusters(xref, truth)
    limits = evidence_limits(evidence_records, xref, truth)
    del evidence_records
    evidence_table = pl.DataFrame({
        "figure": ["pairwise recall if every split record sharing a value were attached",
                   "pairwise F1 at that recall and today's precision",
                   "split records that share only a name with their person's customer",
                   "lone records whose full name one other customer holds",
                   "... of which that customer is the right one"],
        "value": [f"{limits['recall_if_value_shared_attached']:.4f}",
                  f"{limits['f1_if_value_shared_attached']:.4f}",
                  f"{limits['split_records_name_only_share']:.1%}",
                  f"{limits['lone_name_attach_candidates']:,.0f}",
                  f"{limits['lone_name_attach_precision']:.1%}"],
    })
    comparisons = next(
        (int(e.event_specific_data.materialization.metadata["comparisons_scored"].value)
         for e in result.all_events
         if e.event_type_value == "ASSET_MATERIALIZATION"
         and e.event_specific_data.materialization.asset_key.path == ["matching", "pairs"]),
        0,
    )
    peak = max((b for _, b in sampler.samples), default=0)
    summary = pl.DataFrame({
        "figure": ["identity records (raw)", "cleaned records", "full_refresh wall",
                   "process peak RSS", "comparisons scored", "pairwise precision",
                   "pairwise recall", "pairwise F1", "cluster (B-cubed) F1", "persons exact"],
        "value": [f"{raw_rows:,}", f"{records:,}", f"{wall:.1f} s", f"{peak / 2**30:.2f} GiB",
                  f"{comparisons:,}", f"{scores['pairwise_precision']:.4f}",
                  f"{scores['pairwise_recall']:.4f}", f"{scores['pairwise_f1']:.4f}",
                  f"{scores['bcubed_f1']:.4f}", f"{scores['persons_exact_share']:.2%}"],
    })
    info = machine()
    text = "\n".join([
        f"# full_refresh benchmark: {raw_rows:,} identity records ({persons:,} persons, "
        f"seed {seed})",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `make bench PERSONS={persons} "
        f"SEED={seed}` (`python -m cdi_pipeline.bench`).",
        "",
        *(f"- {k}: {v}" for k, v in info.items()),
        "",
        "## Totals",
        "",
        _markdown(summary),
        "",
        "## Per layer",
        "",
        "Seconds are the sum of the layer's step durations; peak RSS is the process's highest",
        "resident memory while one of its steps ran (the process, not the step alone).",
        "",
        _markdown(layers),
        "",
        "## What the records allow",
        "",
        "A split record is one outside its person's main customer (the one holding most of "
        "the person's records). The first two rows assume every split record that shares an "
        "e-mail (or its local part), phone, birth date, postcode or identifier with that "
        "customer's records were attached, with nothing lost and no wrong link added: an "
        "optimistic bound on what the records' values allow. The last rows show why a name "
        "alone is no ground to attach (`evidence_limits` in "
        "`cdi_pipeline/lib/matching/evaluation.py`).",
        "",
        _markdown(evidence_table),
        "",
        "## Against a lean Splink script",
        "",
        "`python -m cdi_pipeline.bench_baseline` on the same cleaned records, right after "
        "full_refresh, each in its own process: the six person fields and any identifiers "
        "the data populates, with library defaults, blocking rules on them, EM on birth date "
        "and email, predict, connected components at the "
        "same threshold; no rules, overrides, guards, stable ids or downstream layers. "
        "`full_refresh_x` is full_refresh's wall time (raw to published) over the script's "
        "train + predict + cluster time; `matching_layer_x` the same for the matching layer.",
        "",
        _markdown(baselines),
        "",
        *([
            "## Incremental matching",
            "",
            f"The last {incremental_share:.0%} of every source file is held back; full_refresh "
            "builds the warehouse from the rest. The held-back rows then arrive as "
            "incoming files (incremental_refresh on a copy) and, for comparison, appended to "
            "the sources followed by a full_refresh from the same state.",
            "",
            _markdown(incremental),
            "",
            "Where the incremental run's time went (its `seconds_by_phase` metadata):",
            "",
            phases,
            "",
        ] if incremental is not None else []),
    ])
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"full_refresh_{_size_label(raw_rows)}.md"
    path.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {path}")
    return path


def hold_back(input_dir: Path, share: float) -> list[str]:
    """Move the last `share` of every source file's rows to incoming/<source>/batch.<ext>;
    return the moved files relative to the registry folder."""
    registry = load_registry(input_dir / "sources.yaml")
    moved = []
    for source in registry.sources:
        path = registry.file_of(source)
        target = input_dir / "incoming" / source.name / f"batch{path.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.format == "parquet":
            frame = pl.read_parquet(path)
            keep = frame.height - max(1, int(frame.height * share))
            frame.head(keep).write_parquet(path)
            frame.slice(keep).write_parquet(target)
        else:
            # Byte lines: the file's own encoding survives untouched.
            lines = path.read_bytes().splitlines(keepends=True)
            header = [lines[0]] if source.format == "csv" else []
            body = lines[len(header):]
            keep = len(body) - max(1, int(len(body) * share))
            path.write_bytes(b"".join(header + body[:keep]))
            target.write_bytes(b"".join(header + body[keep:]))
        moved.append(str(target.relative_to(input_dir)))
    return moved


def _restore(input_dir: Path, files: list[str]) -> None:
    """Append the held-back rows to their source files again (for the full rebuild)."""
    registry = load_registry(input_dir / "sources.yaml")
    for relative in files:
        batch = input_dir / relative
        if not batch.exists():
            batch = batch.parent / "loaded" / batch.name
        source = registry.source(batch.parent.name if batch.parent.name != "loaded"
                                 else batch.parent.parent.name)
        path = registry.file_of(source)
        if source.format == "parquet":
            pl.concat([pl.read_parquet(path), pl.read_parquet(batch)],
                      how="diagonal_relaxed").write_parquet(path)
        else:
            lines = batch.read_bytes().splitlines(keepends=True)
            path.write_bytes(path.read_bytes() + b"".join(
                lines[1:] if source.format == "csv" else lines))


def _size_label(records: int) -> str:
    """'100k', '1m', '10m' for the results file name."""
    for size, label in ((10_000_000, "10m"), (1_000_000, "1m"), (100_000, "100k")):
        if records >= size * 0.9:
            return label
    return f"{records}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=43_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch folder (default benchmarks/work/<persons>)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--incremental-share", type=float, default=0.01,
                        help="share of rows for the incremental scenario (0: skip it)")
    parser.add_argument("--child-job", help=argparse.SUPPRESS)
    parser.add_argument("--child-registry", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-warehouse", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_job:
        run_child(args.child_job, args.child_registry, args.child_warehouse, args.child_files)
        return
    run(args.persons, args.seed, args.work or WORK_DIR / str(args.persons), args.out,
        args.incremental_share)


if __name__ == "__main__":
    main()
