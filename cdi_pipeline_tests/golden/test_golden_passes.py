"""Golden records in passes over customer_id ranges: the tables are those of one pass over
everyone, written whole, with the passes' statistics added up."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cdi_pipeline.lib.cleaned.activities import empty_events
from cdi_pipeline.lib.golden.passes import (
    customer_ranges,
    read_golden_inputs,
    survivorship_rules,
    write_golden,
)
from cdi_pipeline.lib.golden.survivorship import (
    FIELD_LINEAGE_COLUMNS,
    GOLDEN_INPUT_COLUMNS,
    build_golden,
)
from cdi_pipeline.lib.registry import GoldenConfig
from cdi_pipeline.lib.storage import TableWrite, read_table, replace_tables

LOADED = datetime(2026, 11, 1, 8, 0)
_SCHEMA = {c: pl.String for c in GOLDEN_INPUT_COLUMNS} | {
    "trust": pl.Int32, "loaded_at": pl.Datetime("us"), "date_of_birth": pl.Date,
}

# Three customers; B has two records that disagree on the email, C a ticket of its own.
RECORDS = pl.DataFrame([
    {"source": "crm", "source_record_id": "C1", "trust": 1, "email": "a@crm.nl",
     "first_name": "Anna", "first_name_key": "anna"},
    {"source": "crm", "source_record_id": "C2", "trust": 1, "email": "b@crm.nl",
     "last_name": "Berg", "last_name_key": "berg"},
    {"source": "shop", "source_record_id": "W2", "trust": 3, "email": "b@shop.nl",
     "phone": "+31612345678", "phone_type": "mobile"},
    {"source": "desk", "source_record_id": "T3", "trust": 4, "email": "c@desk.nl"},
], schema=_SCHEMA).with_columns(pl.lit(LOADED).alias("loaded_at"))
XREF = pl.DataFrame({
    "source": ["crm", "crm", "shop", "desk"],
    "source_record_id": ["C1", "C2", "W2", "T3"],
    "customer_id": ["CUS-A", "CUS-B", "CUS-B", "CUS-C"],
    "match_confidence": [None, 0.97, 0.97, None],
})
EVENTS = pl.concat([empty_events(), pl.DataFrame({
    "source": ["desk"], "event_id": ["T3"], "kind": ["ticket"], "customer_source": ["desk"],
    "customer_record_id": ["T3"], "occurred_at": [datetime(2026, 11, 20, 9, 30)],
})], how="diagonal_relaxed")


@pytest.fixture
def con(tmp_path: Path):
    """A warehouse file holding the golden layer's inputs."""
    con = duckdb.connect(str(tmp_path / "cdi.duckdb"))
    replace_tables(con, [
        TableWrite("cleaned", "customer_records", RECORDS, "Records."),
        TableWrite("cleaned", "activities", EVENTS, "Events."),
        TableWrite("matching", "customer_xref", XREF, "Identity map."),
    ])
    yield con
    con.close()


def test_ranges_hold_the_given_number_of_customers(con) -> None:
    assert customer_ranges(con, 2) == [("CUS-A", "CUS-C"), ("CUS-C", None)]
    assert customer_ranges(con, 5) == [("CUS-A", None)]


def test_inputs_of_a_range_are_its_customers_records_and_own_events(con) -> None:
    inputs = read_golden_inputs(con, "CUS-B", None)
    assert sorted(inputs.records["source_record_id"]) == ["C2", "T3", "W2"]
    assert list(inputs.records.columns) == list(GOLDEN_INPUT_COLUMNS)
    assert sorted(inputs.xref["customer_id"].unique()) == ["CUS-B", "CUS-C"]
    assert inputs.events["event_id"].to_list() == ["T3"]
    assert read_golden_inputs(con, None, "CUS-B").records["source_record_id"].to_list() == ["C1"]


def test_passes_write_what_one_pass_over_everyone_builds(con) -> None:
    config = GoldenConfig(batch_customers=1)
    lines: list[str] = []
    golden = write_golden(con, config, log=lines.append)
    whole = build_golden(RECORDS, XREF, EVENTS, config)
    customers = read_table(con, "golden", "customers")
    lineage = read_table(con, "golden", "field_lineage")
    assert customers.equals(whole.customers)
    order = ["customer_id", "field"]
    assert lineage.sort(order).equals(whole.lineage.sort(order))
    assert lines[0] == "survivorship pass 1/3: 1 records"
    summary = golden.summary
    assert (summary.passes, summary.customers, summary.multi_source) == (3, 3, 1)
    assert summary.records_per_customer().rows() == [(1, 2), (2, 1)]
    filled = dict(summary.filled_share().rows())
    assert (filled["email"], filled["phone"]) == (1.0, round(1 / 3, 4))
    assert summary.deciding_rules().equals(whole.rule_counts)
    assert summary.preview["customer_id"].to_list() == ["CUS-A"]
    assert golden.lineage_rows == lineage.height
    assert golden.contested == lineage["runner_up_source"].count() == 1
    assert golden.lineage.frame.columns == list(FIELD_LINEAGE_COLUMNS)
    # Nothing staged is left behind.
    staging = con.sql("SELECT count(*) FROM duckdb_tables() "
                      "WHERE table_name LIKE '\\_staging\\_%' ESCAPE '\\'").fetchall()
    assert staging == [(0,)]


def test_no_customers_still_gives_both_tables_their_columns(con) -> None:
    con.execute("DELETE FROM matching.customer_xref")
    golden = write_golden(con, GoldenConfig())
    assert golden.summary.passes == 1 and golden.summary.customers == 0
    assert read_table(con, "golden", "customers").columns == golden.customers.frame.columns
    assert read_table(con, "golden", "field_lineage").is_empty()


def test_the_shown_rules_are_numbered_in_order() -> None:
    config = GoldenConfig(survivorship={"email": ["trust", "most_recent"]})
    assert survivorship_rules(config)["email"] == "1. trust\n2. most_recent"
