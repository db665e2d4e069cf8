"""Leak detection: identifiers inside free text are found with their kind, near misses pass,
DuckDB and polars give the same verdicts, and findings name places, never values."""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cdi_pipeline.lib.leaks import (
    KINDS,
    LEAK_PATTERNS,
    PHONE_PATTERN,
    Leak,
    describe,
    iban_checksum_ok,
    leak_flags,
    leak_flags_sql,
    scan_database,
    scan_folder,
    scan_frame,
)

# Each text holds exactly one direct identifier, of the given kind.
LEAKS = [
    # email
    ("questions to jan.jansen@example.com", "email"),
    ("jan.jansen@example.com is the contact", "email"),
    ("Contact: <p.de-vries+news@sub.example.co.uk>.", "email"),
    ("MAIL JAN.JANSEN@EXAMPLE.COM NOW", "email"),
    ("first line\nreply to a_b@mail.example.org\nthird line", "email"),
    ("(zoe.o'neill@example.ie)", "email"),
    # phone
    ("Call +31 6 1234 5678 today", "phone"),
    ("bel +31612345678.", "phone"),
    ("tel 06-12345678, of mail", "phone"),
    ("0612345678", "phone"),
    ("(020) 123 4567 is the office", "phone"),
    ("US office: +1 (555) 123-4567", "phone"),
    ("London: +44 20 7946 0958!", "phone"),
    ("Berlin 030/1234567", "phone"),
    ("Paris 06.12.34.56.78", "phone"),
    ("Dial 0031 6 12345678", "phone"),
    ("phones: 020-1234567/06-12345678", "phone"),
    ("line one\n0612345678\nline three", "phone"),
    ("+31 (0)6 1234 5678", "phone"),
    ("TEL.: +31-6-12345678", "phone"),
    # a timestamp right before must not hide it
    ("seen 2024-01-15 10:30, then called 0612345678", "phone"),
    # iban
    ("IBAN NL91ABNA0417164300 please", "iban"),
    ("pay to NL91 ABNA 0417 1643 00.", "iban"),
    ("DE89 3704 0044 0532 0130 00", "iban"),
    ("iban:GB29NWBK60161331926819", "iban"),
    ("Rekening:\nFR14 2004 1010 0505 0001 3M02 606\nDank", "iban"),
    # one character after a candidate that fails the checksum
    ("NL91ABNA0417164301 NL91ABNA0417164300", "iban"),
    # a short capitalised word read as the last group
    ("BE68 5390 0754 7034 EUR 12,50", "iban"),
    # postcode with house number
    ("address 1234 AB 12", "postcode_with_house_number"),
    ("1234AB 12a", "postcode_with_house_number"),
    ("Kerkstraat 12, 1234 AB Utrecht", "postcode_with_house_number"),
    ("Lange Voorhout 5\n2514 EA Den Haag", "postcode_with_house_number"),
    ("KERKSTRAAT 12, 1234 AB UTRECHT", "postcode_with_house_number"),
    ("10 Downing Street, London SW1A 2AA", "postcode_with_house_number"),
    ("Deliver to 221B Baker Street, London NW1 6XE.", "postcode_with_house_number"),
    ("Hauptstraße 5, 10115 Berlin", "postcode_with_house_number"),
    ("Musterweg 12a\n12345 Musterstadt", "postcode_with_house_number"),
    ("Via Roma 12, 00184 Roma", "postcode_with_house_number"),
    ("moved to 5 rue de Rivoli, 75001 Paris", "postcode_with_house_number"),
]

# Each text resembles an identifier but holds none.
NEAR_MISSES = [
    # masked forms
    "j***@gmail.com",
    "mail j***@example.com for info",
    "+31*******01",
    "06******78",
    # keyed hashes and ids: long digit runs glued to letters or longer than a phone
    "b82dbe5433cfaeb5238ada81eadf911798ab04ba8ed69e004ec907826efa758e",
    "0123456789012345678901234567890123456789012345678901234567890123",
    "550e8400-e29b-41d4-a716-446655440000",
    "12345678-1234-4123-8123-123456789012",
    "run 7c9e6679-7425-40de-944b-e07fc1f90ae7 finished",
    "C-000123",
    "cust_8f3a9c2d1e4b",
    "cust_000000123456",
    "transaction 98765432109876543",
    # dates and timestamps
    "2024-01-15",
    "2024-01-15 10:30:00",
    "2024-01-15T10:30:00Z",
    "2024-01-15T10:30:00.123456789+01:00",
    "15-01-2024 10:30",
    "15.01.2024 12 items",
    "2024/01/15 3 orders",
    "2024-01-15 2 returns",
    "01/15/2024 10:30 PM",
    "20240115103000",
    "run 20240115_103000_123456",
    # amounts, years, counts, versions, percentages
    "€ 1.234.567,89",
    "1,234,567.89",
    "€ 1.234.567.890,12",
    "total 12.345.678.901 EUR.",
    "in 2024",
    "3,214 customers",
    "2023/2024",
    "ordered 3 times, 12 items",
    "v1.4.0",
    "cdi_pipeline 0.1.0 (duckdb 2.0.1)",
    "12.5%",
    "98,7 %",
    # postcode areas and addresses without a postcode or number
    "1234",
    "1234 AB",
    "1234 AB Utrecht",
    "SW1A",
    "SW1A 2AA",
    "10115 Berlin",
    "Kerkstraat 12",
    "Hauptstraße, 10115 Berlin",
    "segment 5, 2024 Update",
    "Top 5, 12345 Customers",
    # words, handles, domains, an IBAN that fails its checksum
    "please update your email and phone preferences",
    "E-mail: unknown, phone: withheld",
    "@marketing",
    "follow @cdi_team",
    "example.com",
    "see https://www.example.com/privacy",
    "user@localhost",
    "NL91ABNA0417164301",
]

# Shapes whose verdict is debatable (see the module's comments); whatever it is, both engines
# must give the same one.
HARD_CASES = [
    "2021 2022 2023",
    "1234 AB, 12 customers",
    "1234ab 12",
    "ISBN 978-3-16-148410-0",
    "192.168.100.200",
    "1 234 567 890",
    "+31 6 1234 5678 9012 3456 7890",
    "0612345678.5",
    "NL91ABNA0417164300NL",
    "x NL91ABNA0417164301 NL91ABNA0417164300 DE89370400440532013000",
    "Straße 5, 10115 Berlin und Zoë 06 12 34 56 78",
    "ID12345678901",
    "a1234567890123b",
    "",
]


def _polars_kinds(texts: list[str | None]) -> list[set[str]]:
    flags = leak_flags(pl.Series(texts, dtype=pl.String))
    return [{kind for kind in KINDS if row[kind]} for row in flags.iter_rows(named=True)]


def _duckdb_kinds(texts: list[str | None]) -> list[set[str]]:
    con = duckdb.connect()
    con.register("corpus", pl.DataFrame({"position": range(len(texts)), "text": texts},
                                        schema={"position": pl.Int64, "text": pl.String}))
    flags = ", ".join(f"coalesce({flag}, false)" for flag in leak_flags_sql("text").values())
    rows = con.sql(f"SELECT {flags} FROM corpus ORDER BY position").fetchall()
    return [{kind for kind, found in zip(KINDS, row, strict=True) if found} for row in rows]


@pytest.fixture(scope="module")
def verdicts() -> dict[str, tuple[set[str], set[str]]]:
    """Every corpus text's kinds, as (polars, DuckDB), computed once."""
    texts = [text for text, _ in LEAKS] + NEAR_MISSES + HARD_CASES
    return dict(zip(texts, zip(_polars_kinds(texts), _duckdb_kinds(texts), strict=True),
                    strict=True))


def test_corpus_sizes() -> None:
    assert len(LEAKS) >= 30 and len(NEAR_MISSES) >= 30
    assert {kind for _, kind in LEAKS} == set(KINDS) == set(LEAK_PATTERNS)


@pytest.mark.parametrize(("text", "kind"), LEAKS)
def test_leak_in_free_text_is_found_with_its_kind(verdicts, text: str, kind: str) -> None:
    polars_kinds, duckdb_kinds = verdicts[text]
    assert polars_kinds == {kind}
    assert duckdb_kinds == {kind}


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_miss_passes(verdicts, text: str) -> None:
    assert verdicts[text] == (set(), set())


def test_duckdb_and_polars_give_the_same_verdicts(verdicts) -> None:
    differing = {text: kinds for text, kinds in verdicts.items() if kinds[0] != kinds[1]}
    assert differing == {}
    # The hard cases are not all clean, so the comparison covers findings too.
    assert any(verdicts[text][0] for text in HARD_CASES)


def test_null_text_is_no_leak() -> None:
    assert _polars_kinds([None]) == [set()]
    assert _duckdb_kinds([None]) == [set()]


def test_timestamps_are_blanked_before_the_phone_pattern() -> None:
    # On its own the phone pattern reads a timestamp as ten digits joined by separators.
    assert pl.Series(["2024-01-15 10:30:00"]).str.contains(PHONE_PATTERN).item()
    assert _polars_kinds(["2024-01-15 10:30:00"]) == [set()]


def _iban(country: str, bban: str) -> str:
    """An IBAN with correct check digits."""
    digits = "".join(str(int(char, 36)) for char in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def test_iban_checksum_in_python_and_sql_agree_with_iso_13616() -> None:
    assert iban_checksum_ok("NL91 ABNA 0417 1643 00")
    assert iban_checksum_ok(" GB29NWBK60161331926819,")
    assert not iban_checksum_ok("NL91ABNA0417164301")
    assert not iban_checksum_ok("")
    # Right check digits but shorter than any country's IBAN (15 characters at least).
    too_short = _iban("NO", "12345678")
    assert not iban_checksum_ok(too_short)
    grouped = f"{too_short[:4]} {too_short[4:8]} {too_short[8:]}"
    assert _duckdb_kinds([grouped]) == _polars_kinds([grouped]) == [set()]
    rng = random.Random(7)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    valid = [_iban(rng.choice(["NL", "DE", "BE", "FR"]),
                   "".join(rng.choice(alphabet) for _ in range(rng.randint(12, 28))))
             for _ in range(60)]
    # One check digit off: never valid.
    broken = [f"{iban[:2]}{(int(iban[2:4]) + 1) % 100:02d}{iban[4:]}" for iban in valid]
    texts = [f"pay {iban} now" for iban in valid + broken]
    expected = [True] * len(valid) + [False] * len(broken)
    assert [iban_checksum_ok(iban) for iban in valid + broken] == expected
    assert ["iban" in kinds for kinds in _duckdb_kinds(texts)] == expected
    assert ["iban" in kinds for kinds in _polars_kinds(texts)] == expected


def test_describe_names_kind_place_and_rows() -> None:
    leaks = [Leak("segment_summary.description", "email", 1), Leak("t.note", "phone", 1234)]
    assert describe(leaks) == (
        "email in segment_summary.description (1 row); phone in t.note (1,234 rows)"
    )
    assert describe([]) == "no direct identifiers found"


# --- scanning a database ---------------------------------------------------------------------

LEAKED_VALUES = ["jan.jansen", "example.com", "12345678", "1234 5678", "ABNA", "Kerkstraat",
                 "1234 AB", "7946", "0958"]


def _write_leaky_database(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.sql("CREATE TABLE segment_summary (segment VARCHAR, description VARCHAR, customers INT)")
    con.sql("INSERT INTO segment_summary VALUES "
            "('loyal', 'Loyal since 2019; questions to jan.jansen@example.com', 120), "
            "('new', 'Joined 2024-01-15 10:30:00, mailed j***@example.com', 80), "
            "('lapsed', 'no purchase in 12 months', 40)")
    con.sql("COMMENT ON COLUMN segment_summary.segment IS "
            "'Segment name; ask 06-12345678 for changes'")
    con.sql('CREATE TABLE customers (customer_id VARCHAR, tags VARCHAR[], '
            '"jan@example.com" VARCHAR)')
    con.sql("INSERT INTO customers VALUES "
            "('C-000001', ['vip', 'call +31 6 1234 5678'], 'Kerkstraat 12, 1234 AB Utrecht'), "
            "('C-000002', ['new'], NULL)")
    con.sql("COMMENT ON TABLE customers IS 'Refunds to NL91 ABNA 0417 1643 00'")
    con.sql('CREATE TABLE "to jan@example.com" (note VARCHAR)')
    con.sql("""INSERT INTO "to jan@example.com" VALUES ('call 0612345678')""")
    con.sql("CREATE SCHEMA quality")
    con.sql("CREATE TABLE quality.notes (note VARCHAR)")
    con.sql("INSERT INTO quality.notes VALUES ('call +44 20 7946 0958'), ('ok'), "
            "('again +44 20 7946 0958')")
    con.close()


EXPECTED_DATABASE_LEAKS = [
    Leak("table customers (comment)", "iban", 1),
    Leak("column name of customers (column 3)", "email", 1),
    Leak("customers.tags", "phone", 1),
    Leak("customers.column 3", "postcode_with_house_number", 1),
    Leak("segment_summary.segment (comment)", "phone", 1),
    Leak("segment_summary.description", "email", 1),
    Leak("table name (table 3)", "email", 1),
    Leak("table 3.note", "phone", 1),
    Leak("quality.notes.note", "phone", 2),
]


def test_scan_database_reports_each_leak_at_its_place(tmp_path: Path) -> None:
    path = tmp_path / "analytics.duckdb"
    _write_leaky_database(path)
    con = duckdb.connect(str(path), read_only=True)
    leaks = scan_database(con)
    assert leaks == EXPECTED_DATABASE_LEAKS
    report = describe(leaks) + repr(leaks)
    assert [value for value in LEAKED_VALUES if value in report] == []


def test_scan_database_scans_the_named_database_only(tmp_path: Path) -> None:
    path = tmp_path / "analytics.duckdb"
    _write_leaky_database(path)
    con = duckdb.connect()
    con.sql(f"ATTACH '{path}' AS published (READ_ONLY)")
    assert scan_database(con, "published") == EXPECTED_DATABASE_LEAKS
    assert scan_database(con) == []


def test_clean_database_reports_nothing(tmp_path: Path) -> None:
    path = tmp_path / "clean.duckdb"
    con = duckdb.connect(str(path))
    con.sql("CREATE TABLE segment_summary (segment VARCHAR, description VARCHAR, "
            "email_masked VARCHAR, tags VARCHAR[])")
    con.register("near_misses", pl.DataFrame({"text": NEAR_MISSES}))
    con.sql("INSERT INTO segment_summary SELECT 'loyal', text, 'j***@example.com', "
            "['2024-01-15', text] FROM near_misses")
    con.sql("COMMENT ON TABLE segment_summary IS 'Segments as of 2024-01-15 10:30:00'")
    con.sql("COMMENT ON COLUMN segment_summary.email_masked IS "
            "'e-mail masked as j***@example.com; phone as +31*******01'")
    con.close()
    con = duckdb.connect(str(path), read_only=True)
    assert con.sql("SELECT count(*) FROM segment_summary").fetchall() == [(len(NEAR_MISSES),)]
    assert scan_database(con) == []


# --- scanning frames and folders -------------------------------------------------------------


def test_scan_frame_reports_text_columns_and_column_names() -> None:
    frame = pl.DataFrame({
        "customer_id": ["C-000001", "C-000002", "C-000003"],
        "note": ["mail jan@example.com", "MAIL PIET@EXAMPLE.NL", "2024-01-15 10:30:00"],
        "segment": pl.Series(["loyal", "refund NL91ABNA0417164300", "loyal"],
                             dtype=pl.Categorical),
        "phone 0612345678": ["Kerkstraat 12, 1234 AB Utrecht", None, "1234 AB"],
        # Not text: numbers are not scanned.
        "customers": [31612345678, 1, 2],
    })
    assert scan_frame("export", frame) == [
        Leak("column name of export (column 4)", "phone", 1),
        Leak("export:note", "email", 2),
        Leak("export:segment", "iban", 1),
        Leak("export:column 4", "postcode_with_house_number", 1),
    ]


def test_scan_frame_of_a_clean_frame_reports_nothing() -> None:
    assert scan_frame("export", pl.DataFrame({"text": NEAR_MISSES})) == []


def test_scan_folder_reads_csv_as_text_parquet_and_json(tmp_path: Path) -> None:
    # All digits: read with inferred types this would become a number and go unscanned.
    (tmp_path / "export.csv").write_text(
        "customer_id,phone,segment\nC-000001,31612345678,loyal\nC-000002,,new\n",
        encoding="utf-8")
    pl.DataFrame({
        "customer_id": ["C-000001", "C-000002"],
        "note": ["ok", "questions to jan.jansen@example.com"],
        "customers": [1, 2],
    }).write_parquet(tmp_path / "export.parquet")
    manifest = {
        "run_id": "550e8400-e29b-41d4-a716-446655440000",
        "created": "2024-01-15T10:30:00Z",
        "files": [{"name": "export.csv", "rows": 2, "note": "checked by\n0612345678"},
                  {"name": "export.parquet", "rows": 2}],
        "owner": {"iban": "NL91 ABNA 0417 1643 00"},
        "contacts": {"jan@example.com": True},
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (tmp_path / "to jan@example.com.csv").write_text("note\ncall 0612345678\n", encoding="utf-8")
    leaks = scan_folder(tmp_path)
    assert leaks == [
        Leak("export.csv:phone", "phone", 1),
        Leak("export.parquet:note", "email", 1),
        # Key paths in sorted order: contacts, contacts."jan@example.com", created, ...
        Leak("column name of manifest.json (column 2)", "email", 1),
        Leak("manifest.json:files[].note", "phone", 1),
        Leak("manifest.json:owner.iban", "iban", 1),
        Leak("file name (file 4)", "email", 1),
        Leak("file 4:note", "phone", 1),
    ]
    report = describe(leaks) + repr(leaks)
    assert [value for value in LEAKED_VALUES if value in report] == []


def test_allowed_kinds_pass_only_in_their_own_column(tmp_path: Path) -> None:
    # An activation export's contact columns hold e-mail and phone by design; an e-mail in
    # the phone column, or any identifier in another column, is still a finding.
    frame = pl.DataFrame({
        "email": ["jan@example.com", "piet@example.nl"],
        "phone": ["+31612345678", "ask jan@example.com"],
        "segment": ["loyal", "call +31612345678"],
    })
    allowed = {"email": {"email"}, "phone": {"phone"}}
    expected = [Leak("export:phone", "email", 1), Leak("export:segment", "phone", 1)]
    assert scan_frame("export", frame, allowed) == expected
    assert len(scan_frame("export", frame)) == 4
    frame.write_parquet(tmp_path / "export.parquet")
    assert scan_folder(tmp_path, allowed) == [
        Leak("export.parquet:phone", "email", 1), Leak("export.parquet:segment", "phone", 1)]
