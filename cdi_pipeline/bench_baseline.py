"""The yardstick of the benchmark: a lean, hand-written Splink script on the same records.

    python -m cdi_pipeline.bench_baseline --warehouse benchmarks/work/430000/warehouse

What a data engineer would write by hand to deduplicate `cleaned.customer_records`: a
comparison with Splink's library defaults (term frequencies on names) for each of given name,
surname, birth date, email, phone, postcode and any identifier the data populates, blocking on
names, birth date, email, phone, postcode and identifiers, prior from exact email (else an
identifier, else name and birth date), u from seeded random pairs, EM on birth date and on
email (the next populated of postcode and surname standing in for a missing one), predict,
connected components at the pipeline's match threshold.
Two trainings bracket what "lean" means (expert scripts took about 25 s and 70 s at a
million records on a 2-core machine): `light` samples 2 million pairs for u and caps each EM
session at 2 million pairs; `default` samples 10 million for u and lets EM use every blocked pair.

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

from cdi_pipeline.lib.storage import registered

RESULT_MARK = "BASELINE_RESULT "
COLUMNS = ("first_name_key", "last_name_key", "date_of_birth", "email", "phone", "postcode")
# A column carried by fewer records than this is left out, as a hand-written script would
# leave out a field its data does not have (Splink cannot train a comparison never observed).
MIN_COVERAGE = 0.02
IDENTIFIER_PREFIX = "id_"


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
    """The compared columns and a record key, as the script would select them: the six
    person fields and any identifiers, each only when the data populates it."""
    con = duckdb.connect(str(warehouse / "cdi.duckdb"), read_only=True)
    try:
        identifiers = [r[0] for r in con.sql(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'cleaned' AND "
            f"table_name = 'customer_records' AND starts_with(column_name, '{IDENTIFIER_PREFIX}')"
            " ORDER BY column_name").fetchall()]
        frame = con.sql(
            "SELECT source || '|' || source_record_id AS unique_id, "
            + ", ".join([*COLUMNS, *identifiers]) + " FROM cleaned.customer_records"
        ).pl()
    finally:
        con.close()
    share = frame.select(pl.all().is_not_null().mean()).row(0, named=True)
    return frame.select(c for c in frame.columns if c == "unique_id" or share[c] >= MIN_COVERAGE)


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
    with registered(con, "records_arrow", records.to_arrow()):
        con.execute("CREATE TABLE records AS SELECT * FROM records_arrow")
    has = set(records.columns)
    library = {
        "first_name_key": lambda: cl.NameComparison("first_name_key").configure(
            term_frequency_adjustments=True),
        "last_name_key": lambda: cl.NameComparison("last_name_key").configure(
            term_frequency_adjustments=True),
        "date_of_birth": lambda: cl.DateOfBirthComparison("date_of_birth",
                                                          input_is_string=False),
        "email": lambda: cl.EmailComparison("email"),
        "phone": lambda: cl.ExactMatch("phone"),
        "postcode": lambda: cl.ExactMatch("postcode"),
    }
    identifiers = sorted(c for c in has if c.startswith(IDENTIFIER_PREFIX))
    rules = [r for r in (("first_name_key", "last_name_key"), ("last_name_key", "date_of_birth"),
                         ("first_name_key", "date_of_birth"), ("email",), ("phone",),
                         ("postcode", "last_name_key"), *((c,) for c in identifiers))
             if has.issuperset(r)]
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[make() for column, make in library.items() if column in has]
        + [cl.ExactMatch(c) for c in identifiers],
        blocking_rules_to_generate_predictions=[block_on(*r) for r in rules],
    )
    linker = Linker(db_api.register("records"), settings)
    seconds["load"] = time.monotonic() - started

    t0 = time.monotonic()
    # The prior from the most specific rule the data allows; EM on birth date and on email,
    # or on the next fields present when one of them is missing.
    prior_rule = next(r for r in (("email",), *((c,) for c in identifiers),
                                  ("first_name_key", "last_name_key", "date_of_birth"), rules[0])
                      if has.issuperset(r))
    linker.training.estimate_probability_two_random_records_match(
        [block_on(*prior_rule)], recall=0.7
    )
    caps = TRAININGS[training]
    linker.training.estimate_u_using_random_sampling(max_pairs=caps["u_max_pairs"], seed=seed)
    em_rules = [c for c in ("date_of_birth", "email", "postcode", "last_name_key") if c in has][:2]
    for rule in (block_on(c) for c in em_rules):
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
    parser.add_argument("--assignment-out", type=Path, default=None,
                        help="also write (source, source_record_id, customer_id) as Parquet")
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
    parts = assignment.get_column("unique_id").str.splitn("|", 2)
    xref = assignment.select(
        parts.struct.field("field_0").alias("source"),
        parts.struct.field("field_1").alias("source_record_id"),
        pl.col("cluster_id").cast(pl.String).alias("customer_id"),
    )
    if args.assignment_out is not None:
        xref.write_parquet(args.assignment_out)
    if args.truth is not None:
        result["scores"] = score_clusters(xref, read_truth(args.truth))
    print(RESULT_MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
