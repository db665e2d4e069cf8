"""Training: the prior from near-certain rules, u by seeded sampling, m by EM, and the term
frequencies frozen with the trained model."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import polars as pl
from splink import Linker, block_on

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX
from cdi_pipeline.lib.matching.backends import register_input
from cdi_pipeline.lib.matching.spec import ModelSpec, splink_settings
from cdi_pipeline.lib.registry import MatchingConfig

log = logging.getLogger(__name__)


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
    the same records could give m values differing in the last digits, another model
    version, and (scores moving by as much) possibly other links. One thread adds them in
    one order. The prior and u are counts and keep all threads: only EM, and only in runs
    that train, gives up the second thread.
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


def em_iterations(session: Any) -> int:
    """Iterations an EM training session ran (Splink's EMTrainingSession).

    Splink exposes a session's iteration history through its charts only: the chart of the
    prior across iterations holds one record per iteration, the starting values first.
    """
    chart = session.probability_two_random_records_match_iteration_chart()
    return len(chart.chart_dict["data"]["values"]) - 1


def train(
    db_api: Any, frame: pl.DataFrame, spec: ModelSpec, config: MatchingConfig,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Train a model: prior from deterministic rules, u by seeded sampling, m by EM.

    `config` gives the seed, the sample sizes and EM's iteration cap and tolerance. Returns
    the Splink settings dict with parameters, one record per EM session (rule, iterations,
    converged, seconds) for the sanity check and the UI, and the identifier comparisons EM
    could not train, with the prior each falls back to (`apply_identifier_priors`).
    """
    linker = Linker(register_input(db_api, frame), splink_settings(
        spec, 1e-4, max_iterations=config.em_max_iterations,
        em_convergence=config.em_convergence))
    started = time.monotonic()
    linker.training.estimate_probability_two_random_records_match(
        _deterministic_rules(spec), recall=0.7
    )
    log.info("prior estimated in %.1fs; estimating u", time.monotonic() - started)
    # Each chunk is a separate job on Spark, each with its own start-up cost; DuckDB chunks
    # are cheap and let Splink stop early once every level has enough observations.
    chunks = 1 if type(db_api).__name__ == "SparkAPI" else 10
    linker.training.estimate_u_using_random_sampling(
        max_pairs=config.u_max_pairs, seed=config.seed, num_chunks=chunks
    )
    log.info("u estimated after %.1fs", time.monotonic() - started)
    sessions = []
    with _single_threaded(db_api):
        for rule in spec.training_rules:
            t0 = time.monotonic()
            session = linker.training.estimate_parameters_using_expectation_maximisation(
                block_on(*rule), max_pairs=config.em_max_pairs
            )
            iterations = em_iterations(session)
            sessions.append(
                {
                    "blocking_rule": list(rule),
                    "iterations": iterations,
                    "converged": iterations < config.em_max_iterations,
                    "seconds": round(time.monotonic() - t0, 2),
                }
            )
            log.info("EM on %s: %d iterations in %.1fs", rule, iterations,
                     time.monotonic() - t0)
    settings = linker.misc.save_model_to_json()
    return settings, sessions, apply_identifier_priors(settings)


# m of an identifier's exact level when no EM training pair carried the identifier on both
# sides: the same person keeps the same loyalty card or device id most of the time.
IDENTIFIER_PRIOR_M = 0.9


def apply_identifier_priors(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Give identifier comparisons EM could not estimate a documented prior m, in place;
    returns one record per such comparison (comparison, level, prior_m, why).

    Either no training pair carried the identifier on both sides (no m at all), or every
    one that did agreed: EM then leaves the disagreement level untrained, at a value that
    need not sum to 1 with the agreement level (m 1.0 and 1.0 makes disagreeing count as
    evidence for a match). The records go with the model: the sanity rules leave these
    comparisons out (their m was never estimated) and the model check warns about each.
    """
    fallbacks = []
    for comparison in settings["comparisons"]:
        name = comparison["output_column_name"]
        if not name.startswith(IDENTIFIER_PREFIX):
            continue
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        ms = [lv.get("m_probability") for lv in levels]
        if all(isinstance(m, int | float) for m in ms) and abs(sum(ms) - 1) < 1e-6:
            continue
        why = ("no training pair agreed on it" if not isinstance(ms[0], int | float)
               else "no training pair disagreed on it")
        log.warning("%s: EM could not estimate m (%s); using prior m=%.2f", name, why,
                    IDENTIFIER_PRIOR_M)
        levels[0]["m_probability"] = IDENTIFIER_PRIOR_M
        levels[-1]["m_probability"] = 1 - IDENTIFIER_PRIOR_M
        fallbacks.append({"comparison": name, "level": levels[0].get("label_for_charts", ""),
                          "prior_m": IDENTIFIER_PRIOR_M, "why": why})
    return fallbacks


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
