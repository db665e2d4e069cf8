"""The yardstick of the benchmark: a lean, hand-written Splink script on the same records.

    python -m cdi_pipeline.bench_baseline --warehouse benchmarks/work/430000/warehouse

What a data engineer would write by hand to deduplicate `cleaned.customer_records`: six
comparisons with Splink's library defaults (term frequencies on names), blocking on names,
birth date, email, phone and postcode, prior from exact email, u from seeded random pairs, EM
on birth date and on email, predict, connected components at the pipeline's match threshold.
Two trainings bracket what "lean" means (FIELD_NOTES measured 25 s and 70 s at a million
records): `light` samples 2 million pairs for u and caps each EM session at 2 million pairs;
`default` samples 10 million for u and lets EM use every blocked pair.

No deterministic rules, overrides, guards, stable ids, tables or charts: that is what the
pipeline adds, and the benchmark reports full_refresh's time as a multiple of this
script's train + predict + cluster time, measured on the same machine in the same session
(timings here vary by up to 50% between sessions, so only same-run ratios mean anything).

It runs in a child process of the benchmark, so its peak memory is its own, and prints one
JSON line: seconds per phase, peak RSS, pairs scored, and its accuracy against the truth.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import duckdb
import polars as pl

RESULT_MARK = "BASELINE_RESULT "
COLUMNS = ("first_name_key", "last_name_key", "date_of_birth", "email", "phone", "postcode")


def peak_rss() -> int:
    """This process's highest resident memory in bytes (VmHWM).

    Not `getrusage`: its ru_maxrss survives exec, so a child forked from the benchmark's
    large process would report the parent's size.
    """
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def read_records(warehouse: Path) -> pl.DataFrame:
    """The six compared columns and a record key, as the script would select them."""
    con = duckdb.connect(str(warehouse / "cdi.duckdb"), read_only=True)
    try:
        return con.sql(
            "SELECT source || '|' || source_record_id AS unique_id, "
            + ", ".join(COLUMNS) + " FROM cleaned.customer_records"
        ).pl()
    finally:
        con.close()


TRAININGS = {
    "light": {"u_max_pairs": 2e6, "em_max_pairs": 2e6},
    "default": {"u_max_pairs": 1e7, "em_max_pairs": None},
}


def lean_splink(
    records: pl.DataFrame, threshold: float, training: str = "light", seed: int = 1
) -> tuple[pl.DataFrame, dict[str, float], int]:
    """Train, predict and cluster; return (unique_id, cluster_id), seconds per phase and the
    number of pairs scored."""
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    seconds: dict[str, float] = {}
    started = time.monotonic()
    db_api = DuckDBAPI()
    con = db_api.duckdb_con
    con.register("records_arrow", records.to_arrow())
    con.execute("CREATE TABLE records AS SELECT * FROM records_arrow")
    con.unregister("records_arrow")
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("first_name_key").configure(term_frequency_adjustments=True),
            cl.NameComparison("last_name_key").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=False),
            cl.EmailComparison("email"),
            cl.ExactMatch("phone"),
            cl.ExactMatch("postcode"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("first_name_key", "last_name_key"),
            block_on("last_name_key", "date_of_birth"),
            block_on("first_name_key", "date_of_birth"),
            block_on("email"),
            block_on("phone"),
            block_on("postcode", "last_name_key"),
        ],
    )
    linker = Linker(db_api.register("records"), settings)
    seconds["load"] = time.monotonic() - started

    t0 = time.monotonic()
    linker.training.estimate_probability_two_random_records_match(
        [block_on("email")], recall=0.7
    )
    caps = TRAININGS[training]
    linker.training.estimate_u_using_random_sampling(max_pairs=caps["u_max_pairs"], seed=seed)
    for rule in (block_on("date_of_birth"), block_on("email")):
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, max_pairs=caps["em_max_pairs"]
        )
    seconds["train"] = time.monotonic() - t0

    t0 = time.monotonic()
    blocked = linker.inference.compute_blocked_pairs_for_predict()
    pairs = con.sql(f"SELECT count(*) FROM {blocked.physical_name}").fetchall()[0][0]
    predicted = linker.inference.predict(threshold_match_probability=0.5)
    seconds["predict"] = time.monotonic() - t0

    t0 = time.monotonic()
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predicted, threshold_match_probability=threshold
    )
    assignment = pl.from_arrow(con.sql(
        f"SELECT unique_id, cluster_id FROM {clusters.physical_name}").arrow())
    seconds["cluster"] = time.monotonic() - t0
    seconds["total"] = time.monotonic() - started
    return assignment, seconds, int(pairs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--truth", type=Path, default=None)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--training", choices=sorted(TRAININGS), default="light")
    args = parser.parse_args(argv)

    from cdi_pipeline.lib.matching.evaluation import read_truth, score_clusters

    records = read_records(args.warehouse)
    assignment, seconds, pairs = lean_splink(records, args.threshold, args.training)
    result: dict[str, object] = {
        "training": args.training,
        "records": records.height,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "peak_rss": peak_rss(),
        "comparisons": pairs,
    }
    if args.truth is not None:
        parts = assignment.get_column("unique_id").str.splitn("|", 2)
        xref = assignment.select(
            parts.struct.field("field_0").alias("source"),
            parts.struct.field("field_1").alias("source_record_id"),
            pl.col("cluster_id").cast(pl.String).alias("customer_id"),
        )
        result["scores"] = score_clusters(xref, read_truth(args.truth))
    print(RESULT_MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
