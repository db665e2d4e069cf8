"""The benchmark's evidence figures: how far the records' own values can take recall, and
how often a name alone points at the right customer."""

from __future__ import annotations

import polars as pl
import pytest

from cdi_pipeline.lib.matching.evaluation import evidence_limits


def test_evidence_limits_on_a_hand_checked_set() -> None:
    rows = [
        # record, person, customer, email, phone, first name, last name
        ("A", "P1", "c1", "a@x.nl", None, None, None),
        ("B", "P1", "c1", None, "0612", None, None),
        ("C", "P1", "c2", None, "0612", None, None),  # split; shares B's phone
        ("D", "P2", "c3", None, None, "jan", "bos"),  # tie: c3 is P2's main customer
        ("E", "P2", "c4", None, None, "jan", "bos"),  # split; shares only a name
        ("G", "P3", "c5", None, None, "piet", "smit"),
        ("H", "P4", "c6", None, None, "piet", "smit"),  # a namesake, another person
    ]
    frame = pl.DataFrame(rows, schema=["source_record_id", "person_id", "customer_id", "email",
                                       "phone", "first_name_key", "last_name_key"],
                         orient="row").with_columns(
        pl.lit("crm").alias("source"), pl.lit(None, pl.Date).alias("date_of_birth"),
        pl.lit(None, pl.String).alias("postcode"), pl.lit(None, pl.String).alias("id_loyalty"))
    figures = evidence_limits(
        frame.drop("person_id", "customer_id"),
        frame.select("source", "source_record_id", "customer_id"),
        frame.select("source", "source_record_id", "person_id"),
    )
    # Four true pairs (three of P1, one of P2); only A-B is found. Attaching C to c1 adds
    # A-C and B-C; E has nothing but its name.
    assert figures["recall_if_value_shared_attached"] == pytest.approx(3 / 4)
    assert figures["f1_if_value_shared_attached"] == pytest.approx(2 * 0.75 / 1.75)
    assert figures["split_records_name_only_share"] == pytest.approx(1 / 2)
    # D, E, G and H are alone and share their full name with one other customer: D and E
    # would be attached rightly, G and H wrongly.
    assert figures["lone_name_attach_candidates"] == 4
    assert figures["lone_name_attach_precision"] == pytest.approx(1 / 2)


def test_records_attached_from_two_customers_also_pair_with_each_other() -> None:
    rows = [
        # record, customer, email: one person in three customers
        ("I", "c7", "i@x.nl"),
        ("J", "c7", None),
        ("K", "c8", "i@x.nl"),  # split; shares I's e-mail
        ("L", "c9", "i@x.nl"),  # split from another customer; shares it too
    ]
    frame = pl.DataFrame(rows, schema=["source_record_id", "customer_id", "email"],
                         orient="row").with_columns(
        pl.lit("crm").alias("source"), pl.lit("P5").alias("person_id"),
        pl.lit(None, pl.String).alias("phone"), pl.lit(None, pl.Date).alias("date_of_birth"),
        pl.lit(None, pl.String).alias("postcode"), pl.lit(None, pl.String).alias("first_name_key"),
        pl.lit(None, pl.String).alias("last_name_key"))
    figures = evidence_limits(
        frame.drop("person_id", "customer_id"),
        frame.select("source", "source_record_id", "customer_id"),
        frame.select("source", "source_record_id", "person_id"),
    )
    # Six true pairs, I-J found. Attaching K and L to c7 adds I-K, J-K, I-L, J-L and K-L.
    assert figures["recall_if_value_shared_attached"] == pytest.approx(1.0)
    assert figures["split_records_name_only_share"] == pytest.approx(0.0)
