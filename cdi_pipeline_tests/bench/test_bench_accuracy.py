"""The accuracy benchmark's scoring: records a gate held back count as lost, for both sides."""

from __future__ import annotations

import polars as pl

from cdi_pipeline.bench_accuracy import every_record, table
from cdi_pipeline.lib.matching.evaluation import score_clusters

TRUTH = pl.DataFrame({"source": ["a"] * 4, "source_record_id": ["1", "2", "3", "4"],
                      "person_id": ["p", "p", "p", "q"]})


def test_held_back_records_are_customers_of_their_own() -> None:
    # Record 3 was held back by the cleaned layer: the xref does not hold it.
    xref = pl.DataFrame({"source": ["a"] * 3, "source_record_id": ["1", "2", "4"],
                         "customer_id": ["C1", "C1", "C2"]})
    completed = every_record(xref, TRUTH)
    assert completed.height == 4
    assert completed.filter(pl.col("source_record_id") == "3").item(0, "customer_id") == (
        "held back|a|3")
    scores = score_clusters(completed, TRUTH)
    # Person p has 3 pairs; only (1, 2) is found. Scored on what came through it would be 1.
    assert scores["pairwise_recall"] == 1 / 3
    assert score_clusters(xref, TRUTH)["pairwise_recall"] == 1.0


def test_the_table_reports_stops_and_the_gap_to_the_lean_script() -> None:
    ours = {"pairwise_precision": 1.0, "pairwise_recall": 0.5, "pairwise_f1": 2 / 3,
            "bcubed_f1": 0.8, "persons_exact_share": 0.5}
    lean = {**ours, "pairwise_f1": 0.5, "bcubed_f1": 0.7}
    text = table([
        {"data set": "x", "records": 4, "persons": 2, "job": "ran", "stops": [],
         "held back": 1, "pipeline": ours, "baseline": {"scores": lean}},
        {"data set": "y", "records": 9, "persons": 3, "job": "stopped",
         "stops": ["matching__model: the trained model is implausible"]},
    ])
    assert "| x | 4 | 2 | ran | 1 | 1.0000 | 0.5000 | 0.6667 |" in text
    assert "| +0.1667 |" in text
    assert "| y | 9 | 3 | stopped | - |" in text
    assert "- `y`: matching__model: the trained model is implausible" in text
