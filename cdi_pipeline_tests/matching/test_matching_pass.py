"""One matching pass on scored pairs written by hand: how each pair is decided, who ends in
one customer, what goes to review, and the tables built from it."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl

from cdi_pipeline.lib.matching.decisions import decide
from cdi_pipeline.lib.matching.ids import ID_MAP_SCHEMA
from cdi_pipeline.lib.matching.matching_pass import match, match_fields
from cdi_pipeline.lib.matching.scoring import Scoring
from cdi_pipeline.lib.matching.tables import PAIRS_TABLE
from cdi_pipeline.lib.registry import MatchingConfig

CONFIG = MatchingConfig(attach_min_probability=None)
BORN = date(1980, 5, 17)


def _record(key: str, given: str, surname: str, born: date | None = BORN,
            email: str | None = None) -> dict:
    source, record_id = key.split("|")
    return {
        "unique_id": key, "source": source, "source_record_id": record_id,
        "first_name_key": given, "first_name_canonical": given, "first_name_typo": False,
        "first_initial": given[0], "last_name_key": surname, "date_of_birth": born,
        "email": email, "email_block": email, "phone": None, "phone_type": None,
        "phone_block": None, "postcode": None, "house_number": None, "gender": "F",
    }


FRAME = match_fields(pl.DataFrame([
    _record("crm|a1", "anna", "smit"), _record("shop|a2", "anna", "smit"),
    # One email, never scored: the deterministic rule links them.
    _record("crm|c1", "cor", "bos", email="cor@example.nl"),
    _record("shop|c2", "cor", "bos", email="cor@example.nl"),
    _record("crm|d1", "dirk", "vos"), _record("shop|d2", "dirk", "vos"),
    _record("crm|e1", "eva", "kok"), _record("shop|e2", "eva", "kok"),
    _record("crm|f1", "fien", "maas"), _record("shop|f2", "fien", "maas", date(2001, 2, 3)),
]))

# (left, right, probability, level of the birth-date comparison: 5 exact, 0 far apart)
SCORED = pl.DataFrame(
    [("crm|a1", "shop|a2", 0.99, 5), ("crm|d1", "shop|d2", 0.95, 5),
     ("crm|e1", "shop|e2", 0.6, 5), ("crm|f1", "shop|f2", 0.95, 0)],
    schema={"unique_id_l": pl.String, "unique_id_r": pl.String,
            "match_probability": pl.Float64, "gamma_date_of_birth": pl.Int64},
    orient="row",
).with_columns(
    pl.col("match_probability").log(2).alias("match_weight"),
    pl.col("match_probability").alias("mw_date_of_birth"),
)
OVERRIDES = pl.DataFrame(
    [("crm|d1", "shop|d2", "cannot_link", "steward", "two brothers", "2026-01-01")],
    schema=["unique_id_l", "unique_id_r", "decision", "decided_by", "reason", "decided_on"],
    orient="row",
)
NO_XREF = pl.DataFrame(schema={"source": pl.String, "source_record_id": pl.String,
                               "customer_id": pl.String})


def _pass():
    scoring = Scoring(SCORED, pl.DataFrame({"blocking_rule": ["email"]}), {}, 42)
    return match(FRAME, scoring, OVERRIDES, NO_XREF, pl.DataFrame(schema=ID_MAP_SCHEMA),
                 CONFIG, run_id="run-1", model_version="m1", now=datetime(2026, 5, 1))


def test_each_pair_is_decided_by_steward_rule_or_model() -> None:
    decided = decide(FRAME, SCORED, OVERRIDES, CONFIG)
    how = {(r["unique_id_l"], r["unique_id_r"]): (r["decided_by_kind"], r["is_link"])
           for r in decided.pairs.iter_rows(named=True)}
    assert how == {
        ("crm|a1", "shop|a2"): ("model", True),
        ("crm|c1", "shop|c2"): ("rule", True),
        ("crm|d1", "shop|d2"): ("steward", False),
        ("crm|e1", "shop|e2"): ("model", False),
        ("crm|f1", "shop|f2"): ("rule", False),  # birth dates far apart
    }
    assert sorted(decided.cannot.rows()) == [("crm|d1", "shop|d2"), ("crm|f1", "shop|f2")]
    assert decided.apart_fields is not None
    assert {"date_of_birth", "first_name_key"} <= set(decided.apart_fields.columns)


def test_conflicts_that_do_not_block_links_keep_no_fields() -> None:
    config = CONFIG.model_copy(update={"birth_date_conflict_blocks_link": False,
                                       "given_name_conflict_blocks_link": False})
    decided = decide(FRAME, SCORED, OVERRIDES, config)
    assert decided.apart_fields is None
    assert decided.cannot.rows() == [("crm|d1", "shop|d2")]


def test_the_pass_builds_customers_review_queue_and_statistics() -> None:
    outcome = _pass()
    customer = dict(outcome.xref.select(
        pl.concat_str("source", pl.lit("|"), "source_record_id"), "customer_id").iter_rows())
    assert customer["crm|a1"] == customer["shop|a2"]
    assert customer["crm|c1"] == customer["shop|c2"]
    for a, b in (("crm|d1", "shop|d2"), ("crm|e1", "shop|e2"), ("crm|f1", "shop|f2")):
        assert customer[a] != customer[b]
    assert outcome.clusters.height == 8
    assert outcome.clusters.get_column("records").sum() == FRAME.height
    linked_by = dict(outcome.xref.select(
        pl.concat_str("source", pl.lit("|"), "source_record_id"), "linked_by").iter_rows())
    assert linked_by["crm|a1"] == "model" and linked_by["crm|c1"] == "deterministic"
    assert linked_by["crm|e1"] == "singleton"
    assert set(outcome.xref.get_column("model_version")) == {"m1"}
    # Only the undecided model pair inside the band is for a steward.
    assert outcome.review_queue.select("source_record_id_l", "source_record_id_r").rows() == [
        ("e1", "e2")]
    assert outcome.review_queue.get_column("suggested_action").str.starts_with(
        "not linked now").all()
    assert outcome.pairs.columns[:4] == ["source_l", "source_record_id_l", "source_r",
                                         "source_record_id_r"]
    assert outcome.stats == {
        "records": 10, "comparisons_scored": 42, "pairs_scored": 4, "pairs_linked": 2,
        "deterministic_links": 1, "cannot_links": 2, "steward_overrides": 1,
        "customers": 8, "review_queue": 1, "unresolved_cannot_links": 0,
        "singletons_attached": 0,
    }
    assert outcome.ids.events.get_column("event").unique().to_list() == ["created"]


def test_a_table_write_describes_every_column() -> None:
    write = PAIRS_TABLE.write(_pass().pairs)
    assert write.qualified == "matching.pairs"
    assert set(write.frame.columns) <= set(write.column_descriptions)
    assert write.column_descriptions["mw_date_of_birth"] == (
        "Match weight contributed by the date_of_birth comparison.")
