"""Malformed inputs: every bad file is refused with a message naming file, column or line and
what was expected, or its bad rows reach the quarantine with a reason; nothing is lost.

Complements test_raw.py (0-byte file, undecodable bytes, one missing column, duplicate ids,
one broken JSON line, BOM and Windows-1252 CSVs), test_registry.py (unknown key, wrong type,
paths outside, hostile source names) and test_cleaned_gates.py (the rejected-share gate).
Fixtures are written into temporary folders; most cases run through the lib functions, two
through a real Dagster run of the raw, cleaned and quality layers.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml

from cdi_pipeline.lib.cleaned.records import clean_source, conservation
from cdi_pipeline.lib.governance.erasure import ErasureTargets, purge_rows
from cdi_pipeline.lib.raw.sources import SourceFileError, load_source
from cdi_pipeline.lib.registry import Registry, RegistryError, load_registry
from cdi_pipeline_tests.conftest import SMALL_SET_LAYERS, write_small_source_set
from cdi_pipeline_tests.warehouse_state import run_job

HEADER = "contactnummer;voornaam;achternaam;geboortedatum;email;telefoon;postcode\n"
TODAY = date(2024, 6, 1)
# The real Dagster runs below (raw, cleaned and quality layers) clean as of TODAY too.
AS_OF_TODAY = {"ops": {"cleaned_customer_records": {"config": {
    "reference_date": TODAY.isoformat()}}}}


def _edit(registry_file: Path, change) -> Path:
    data = yaml.safe_load(registry_file.read_text(encoding="utf-8"))
    change(data)
    registry_file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
                             encoding="utf-8")
    return registry_file


def _source_file(registry_file: Path, name: str) -> Path:
    return registry_file.parent / "sources" / name


def _load(registry_file: Path, name: str) -> tuple[Registry, pl.DataFrame]:
    registry = load_registry(registry_file)
    return registry, load_source(registry, registry.source(name), run_id="r").frame


def _clean(registry_file: Path, name: str):
    registry, raw = _load(registry_file, name)
    result = clean_source(raw, registry.source(name), run_id="r", today=TODAY)
    balance = conservation({name: raw.height}, result.records, result.quarantine)
    assert balance.get_column("holds").all(), balance
    return raw, result


# --- files refused whole -------------------------------------------------------------------

def _csv(text: str, encoding: str = "utf-8"):
    return lambda registry_file: _source_file(registry_file, "crm.csv").write_bytes(
        text.encode(encoding)
    )


def _parquet(frame: pl.DataFrame):
    return lambda registry_file: frame.write_parquet(_source_file(registry_file, "erp.parquet"))


def _jsonl(text: str):
    return lambda registry_file: _source_file(registry_file, "shop.jsonl").write_text(
        text, encoding="utf-8"
    )


ROW = "C9;Anna;Bakker;01-01-1990;anna@example.com;0612345678;1234 AB\n"
REFUSED = {
    "csv_too_few_fields": (
        "crm", _csv(HEADER + ROW + "C8;Piet;Jansen;01-01-1990\n"),
        r"not a readable CSV with delimiter ';': 1 row\(s\) with the wrong number of fields, "
        r"line 3 has 4; expected 7 field\(s\) on every row, as on the header",
    ),
    "csv_too_many_fields": (
        "crm", _csv(HEADER + ROW + ROW.replace("C9", "C8").strip() + ";extra\n"),
        r"line 3 has 8; expected 7 field\(s\)",
    ),
    "csv_unquoted_sql_value_with_delimiter": (
        "crm", _csv(HEADER + "C9;'; DROP TABLE x; --;Bakker;01-01-1990;a@example.com;;\n"),
        r"line 2 has 9; expected 7 .*must be quoted",
    ),
    "csv_header_only": ("crm", _csv(HEADER), r"has columns but no data rows"),
    "csv_whitespace_only": ("crm", _csv(" \n\n"), r"is empty; expected a header line"),
    "csv_repeated_column": (
        "crm", _csv(HEADER.strip() + ";email\n" + ROW.strip() + ";b@example.com\n"),
        r"has column 'email' twice",
    ),
    "csv_columns_differ_in_case": (
        "crm", _csv(HEADER.strip() + ";Email\n" + ROW.strip() + ";b@example.com\n"),
        r"column 'Email' and 'email' \(names differ only in case\)",
    ),
    "csv_unnamed_column": (
        "crm", _csv(HEADER.strip() + ";\n" + ROW.strip() + ";\n"),
        r"no name for column\(s\) at position \[8\] of 8",
    ),
    "csv_lineage_column_in_other_case": (
        "crm", _csv(HEADER.strip() + ";_Row_Number\n" + ROW.strip() + ";1\n"),
        r"column '_Row_Number', which is reserved for lineage",
    ),
    "csv_utf8_bom_declared_latin1": (
        "crm", lambda f: (
            _edit(f, lambda d: d["sources"][0]["options"].update(encoding="latin-1")),
            _source_file(f, "crm.csv").write_bytes(b"\xef\xbb\xbf" + (HEADER + ROW).encode()),
        ),
        r"starts with a UTF-8 byte-order mark.*declares options.encoding: latin-1",
    ),
    "csv_ids_differ_by_inner_space": (
        "crm", _csv(HEADER + ROW.replace("C9", "C 9") + ROW.replace("C9", "C  9")),
        r"'contactnummer' must be unique .*'C 9' on rows \[1, 2\] "
        r"\(delivered as \['C 9', 'C  9'\]\)",
    ),
    "csv_ids_differ_by_zero_width_or_nul": (
        "crm", _csv(HEADER + ROW + ROW.replace("C9", "C9\u200b") + ROW.replace("C9", "C9\x00")),
        r"'C9' on rows \[1, 2, 3\]",
    ),
    "parquet_no_rows": (
        "erp", _parquet(pl.DataFrame(schema={"customer_number": pl.Int64, "name": pl.String,
                                             "email": pl.String})),
        r"erp.parquet has columns but no data rows",
    ),
    "parquet_struct_in_mapped_column": (
        "erp", _parquet(pl.DataFrame({"customer_number": [10], "email": ["a@example.com"],
                                      "name": [{"first": "Jan", "last": "Berg"}]})),
        r"column 'name' \(mapped as fields.full_name\) holds Struct.* values; expected text",
    ),
    "parquet_list_in_mapped_column": (
        "erp", _parquet(pl.DataFrame({"customer_number": [10], "name": ["Jan Berg"],
                                      "email": [["a@example.com", "b@example.com"]]})),
        r"column 'email' \(mapped as fields.email\) holds List\(String\) values",
    ),
    "parquet_record_id_with_fraction": (
        "erp", _parquet(pl.DataFrame({"customer_number": [10.0, 10.5], "name": ["A B", "C D"],
                                      "email": ["a@example.com", "c@example.com"]})),
        r"column 'customer_number' \(mapped as record_id\) holds 1 decimal number\(s\) such "
        r"as 10.5; expected whole numbers or text",
    ),
    "jsonl_object_in_mapped_field": (
        "shop", _jsonl('{"accountId": "W1", "firstName": {"given": "Jan"}, "lastName": "Berg", '
                       '"email": "jan@example.com"}\n'),
        r"column 'firstName' \(mapped as fields.first_name\) holds Struct",
    ),
    "jsonl_array_line": (
        "shop", _jsonl('{"accountId": "W1", "firstName": "Jan", "lastName": "Berg", '
                       '"email": "jan@example.com"}\n["W2", "Zoe"]\n'),
        r"shop.jsonl line 2 holds a list; expected a JSON object",
    ),
    "jsonl_repeated_key": (
        # Valid JSON, but one of the two addresses would be dropped unseen.
        "shop", _jsonl('{"accountId": "W1", "firstName": "Jan", "lastName": "Berg", '
                       '"email": "jan@example.com"}\n'
                       '{"accountId": "W2", "firstName": "Zoe", "note": "email: \\"x\\"", '
                       '"lastName": "Berg", "email": "zoe@example.com", '
                       '"email": "zoe.berg@example.com"}\n'),
        r"shop.jsonl line 2 has the key 'email' twice; expected each key once per object",
    ),
    "jsonl_mapped_key_never_present": (
        "shop", _jsonl('{"accountId": "W1", "firstName": "Jan", "lastName": "Berg"}\n'),
        r"has no column 'email' \(mapped as fields.email\)",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_malformed_file_is_refused_with_file_and_reason(small_registry: Path, case: str) -> None:
    name, damage, pattern = REFUSED[case]
    damage(small_registry)
    registry = load_registry(small_registry)
    with pytest.raises(SourceFileError) as err:
        load_source(registry, registry.source(name), run_id="r")
    message = str(err.value)
    assert f"source {name!r}: file {registry.file_of(registry.source(name))}" in message
    assert pl.Series([message]).str.contains(pattern).item(), message


# --- files that load: bad values are quarantined with a reason, nothing is lost -------------

def test_bad_and_impossible_dates_are_quarantined(small_registry: Path) -> None:
    _csv(HEADER + "".join(
        f"C{i};Anna;Bakker;{dob};anna{i}@example.com;;\n"
        for i, dob in enumerate(["31-02-1990", "01-01-1500", "01-01-2090", "gisteren",
                                 "1990-01-31", "05-03-1980"])
    ))(small_registry)
    _, result = _clean(small_registry, "crm")
    rules = dict(result.quarantine.select("source_record_id", "rule").iter_rows())
    assert rules == {"C0": "date_impossible", "C1": "date_out_of_range",
                     "C2": "date_out_of_range", "C3": "date_unparsable", "C4": "date_unparsable"}
    assert result.quarantine.get_column("offending_value").to_list() == [
        "31-02-1990", "01-01-1500", "01-01-2090", "gisteren", "1990-01-31"]
    assert result.quarantine.get_column("message").str.len_chars().min() > 20
    # A bad date costs the value, not the record.
    assert result.records.height == 6
    assert result.records.filter(pl.col("source_record_id") == "C5")["date_of_birth"].item() == (
        date(1980, 3, 5))


def test_long_strings_control_characters_and_sql_text(small_registry: Path) -> None:
    long_name = "A" * 10_000
    rows = [
        f"C1;{long_name};Bakker;01-01-1990;c1@example.com;;",
        'C2;"Ja\x00n\x1b";"van\rBerg\u200b";01-01-1990;c2@exam\u200bple.com;;',
        "C3;\"'; DROP TABLE x; --\";\"Robert'); DROP TABLE students;--\";01-01-1990;;;",
        "C4;Lotte;\"de; Vries\";01-01-1990;c4@example.com;;",
        "",  # a blank line: polars reads an all-null row, which must not vanish
        "C5;Sem;Visser;01-01-1990;c5@example.com;;",
    ]
    _csv(HEADER + "\n".join(rows) + "\n")(small_registry)
    raw, result = _clean(small_registry, "crm")
    # The raw layer keeps every value exactly as delivered.
    assert raw.height == 6
    assert raw["voornaam"].to_list()[:3] == [long_name, "Ja\x00n\x1b", "'; DROP TABLE x; --"]
    assert raw["achternaam"].to_list()[1:4] == [
        "van\rBerg\u200b", "Robert'); DROP TABLE students;--", "de; Vries"]
    records = {r["source_record_id"]: r for r in result.records.iter_rows(named=True)}
    quarantined = {(r["source_record_id"], r["rule"]) for r in result.quarantine.iter_rows(
        named=True)}
    assert ("C1", "value_too_long") in quarantined and records["C1"]["first_name"] is None
    assert (records["C2"]["first_name"], records["C2"]["last_name"]) == ("Jan", "Berg")
    assert records["C2"]["name_prefix"] == "van"
    assert records["C2"]["email"] == "c2@example.com"
    # SQL text in a name is held back as a reason, not run, and not taken for a name.
    assert ("C3", "record_unidentifiable") in quarantined
    assert "C3" not in records
    # A quoted delimiter is read as part of the value; in a name it is junk, kept as delivered.
    c4 = result.quarantine.filter(pl.col("source_record_id") == "C4").row(0, named=True)
    assert (c4["rule"], c4["scope"]) == ("name_looks_like_code", "value")
    assert "de; Vries" in c4["offending_value"] and records["C4"]["last_name"] is None
    assert (None, "record_id_missing") in quarantined
    assert set(records) == {"C1", "C2", "C4", "C5"}


def test_parquet_with_wrong_types_loads_and_quarantines(small_registry: Path) -> None:
    # pandas writes an integer column with a gap as float64; birth dates as yyyymmdd ints;
    # a nested column nobody maps rides along untouched.
    pl.DataFrame({
        "customer_number": [10.0, 11.0, None],
        "name": ["Jan van der Berg", "P. Jansen", "Zoë de Vries"],
        "email": ["jan@example.com", "piet@example.com", "zoe@example.com"],
        "dob": [19800305, 17111975, None],
        "extra": [{"a": 1}, {"a": 2}, None],
    }).write_parquet(_source_file(small_registry, "erp.parquet"))
    _edit(small_registry, lambda d: d["sources"][1]["fields"].update(date_of_birth="dob"))
    raw, result = _clean(small_registry, "erp")
    assert raw.schema["customer_number"] == pl.Int64
    assert raw.schema["extra"] == pl.Struct({"a": pl.Int64})
    assert result.records["source_record_id"].to_list() == ["10", "11"]
    rules = sorted(result.quarantine.select("source_record_id", "rule").iter_rows(),
                   key=str)
    assert rules == [("10", "date_unparsable"), ("11", "date_unparsable"),
                     (None, "record_id_missing")]


def test_float_customer_reference_still_meets_its_record(small_registry: Path) -> None:
    from cdi_pipeline.lib.cleaned.activities import clean_activity

    pl.DataFrame({"order_id": [1.0, 2.0], "account": [10.0, None],
                  "order_date": ["2024-01-02", "2024-01-03"], "total": ["12.50", "3"]},
                 ).write_parquet(_source_file(small_registry, "orders.parquet"))
    _edit(small_registry, lambda d: d["sources"].append({
        "name": "orders", "path": "sources/orders.parquet", "format": "parquet",
        "record_id": "order_id", "date_format": "%d-%m-%Y",
        "activity": {"kind": "order", "customer": {"source": "erp", "column": "account"},
                     "occurred_at": "order_date", "occurred_at_format": "%Y-%m-%d",
                     "amount": "total"},
    }))
    registry, raw = _load(small_registry, "orders")
    result = clean_activity(raw, registry.source("orders"), run_id="r")
    # '10', as the erp record id is stored; '10.0' would have orphaned the order.
    assert result.events.select("event_id", "customer_record_id").rows() == [("1", "10")]
    assert result.quarantine.select("source_record_id", "rule").rows() == [
        ("2", "event_customer_missing")]


def test_latin1_and_bom_jsonl_load_intact(small_registry: Path) -> None:
    _edit(small_registry, lambda d: d["sources"][0]["options"].update(encoding="latin-1"))
    _source_file(small_registry, "crm.csv").write_bytes(
        (HEADER + "C9;José;Ñúñez;01-01-1990;jose@example.com;;\n").encode("latin-1"))
    _, crm = _load(small_registry, "crm")
    assert crm.row(0)[:3] == ("C9", "José", "Ñúñez")
    shop = _source_file(small_registry, "shop.jsonl")
    shop.write_bytes(b"\xef\xbb\xbf" + shop.read_bytes())
    _, frame = _load(small_registry, "shop")
    assert frame["accountId"].to_list() == ["W1", "W2"]


# --- the registry --------------------------------------------------------------------------

REGISTRY_MISTAKES = {
    "nested_unknown_key": (
        lambda d: d["sources"][0]["options"].update(encodng="utf-8"),
        r"source 'crm', key 'options.encodng': unknown key",
    ),
    "unknown_top_level_key": (
        lambda d: d.update(sourcez=[]), r"top level, key 'sourcez': unknown key"),
    "unknown_matching_key": (
        lambda d: d.update(matching={"treshold": 0.9}),
        r"top level, key 'matching.treshold': unknown key",
    ),
    "fields_as_list": (
        lambda d: d["sources"][0].update(fields=["voornaam"]), r"source 'crm', key 'fields'"),
    "sources_as_mapping": (lambda d: d.update(sources={"crm": {}}), r"key 'sources'"),
    "two_character_delimiter": (
        lambda d: d["sources"][0]["options"].update(delimiter=";;"),
        r"source 'crm', key 'options.delimiter'",
    ),
    "absolute_path_outside": (
        lambda d: d["sources"][0].update(path="/etc/passwd"), r"source 'crm', key 'path'.*outside"),
    "overrides_outside": (
        lambda d: d.update(overrides="../outside.csv"), r"key 'overrides'.*outside"),
    "empty_column_name": (
        lambda d: d["sources"][0]["fields"].update(email=" "),
        r"source 'crm', key 'fields.email': .*cannot be empty",
    ),
    "control_character_in_column": (
        lambda d: d["sources"][0].update(record_id="id\x00"),
        r"source 'crm', key 'record_id': .*control character",
    ),
    "wildcard_column": (
        lambda d: d["sources"][1]["fields"].update(email="*"),
        r"source 'erp', key 'fields.email': .*reads as a column pattern",
    ),
    "regex_column": (
        lambda d: d["sources"][2].update(attributes=["^.*$"]),
        r"source 'shop', key 'attributes.0': .*reads as a column pattern",
    ),
    "value_tier_as_path": (
        lambda d: d.update(segments={"value_tiers": [{"name": "../../etc/x", "top_share": 1.0}]}),
        r"key 'segments.value_tiers.0.name'.*snake_case",
    ),
}


@pytest.mark.parametrize("case", sorted(REGISTRY_MISTAKES))
def test_registry_mistake_is_named(small_registry: Path, case: str) -> None:
    change, pattern = REGISTRY_MISTAKES[case]
    _edit(small_registry, change)
    with pytest.raises(RegistryError) as err:
        load_registry(small_registry)
    message = str(err.value)
    assert str(small_registry.resolve()) in message
    assert pl.Series([message]).str.contains(pattern).item(), message


def test_symlink_out_of_the_registry_folder_is_refused(small_registry: Path,
                                                       tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text(HEADER, encoding="utf-8")
    link = _source_file(small_registry, "crm.csv")
    link.unlink()
    link.symlink_to(secret)
    with pytest.raises(RegistryError, match=r"source 'crm', key 'path'.*outside"):
        load_registry(small_registry)


def test_registry_root_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text("- name: crm\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="must be a mapping with a 'sources' list"):
        load_registry(path)


# --- config-driven names reaching SQL ------------------------------------------------------

HOSTILE = {
    "record_id": 'x"; DROP TABLE raw.crm; --',
    "first_name": "select",
    "last_name": 'achter "naam"',
    "date_of_birth": "geboorte datum",
    "email": "é-mail ✉",
    "phone": "Robert'); DROP TABLE students;--",
    "postcode": "post\u200bcode",
}


def _hostile_source_set(root: Path) -> Path:
    registry_file = write_small_source_set(root)
    crm = pl.read_csv(_source_file(registry_file, "crm.csv"), separator=";", infer_schema=False)
    renames = dict(zip(crm.columns, [HOSTILE["record_id"], HOSTILE["first_name"],
                                     HOSTILE["last_name"], HOSTILE["date_of_birth"],
                                     HOSTILE["email"], HOSTILE["phone"], HOSTILE["postcode"]],
                       strict=True))
    crm.rename(renames).with_columns(pl.lit("1").alias("klant'nr")).write_csv(
        _source_file(registry_file, "crm.csv"), separator=";")

    pl.DataFrame({'order"id': ["O1", "O2"], "klant; nr": ["C1", "C2"],
                  "datum'); --": ["2024-01-02", "2024-01-03"], "from": ["12,50", "3"]},
                 ).write_parquet(_source_file(registry_file, "orders.parquet"))

    def hostile(d):
        crm_entry = d["sources"][0]
        crm_entry["record_id"] = HOSTILE["record_id"]
        crm_entry["fields"] = {f: HOSTILE[f] for f in crm_entry["fields"]}
        crm_entry["identifiers"] = {"klantnummer": "klant'nr"}
        crm_entry["attributes"] = ["select"]
        d["sources"].append({
            "name": "orders", "path": "sources/orders.parquet", "format": "parquet",
            "record_id": 'order"id',
            "activity": {"kind": "order", "customer": {"source": "crm", "column": "klant; nr"},
                         "occurred_at": "datum'); --", "occurred_at_format": "%Y-%m-%d",
                         "amount": "from"},
        })

    return _edit(registry_file, hostile)


def test_hostile_column_names_are_quoted_everywhere(tmp_path: Path) -> None:
    registry_file = _hostile_source_set(tmp_path / "input")
    warehouse = tmp_path / "warehouse"
    warehouse.mkdir()
    con = duckdb.connect(str(warehouse / "cdi.duckdb"))
    # Tables the names try to drop; they must survive the run.
    con.execute("CREATE TABLE x AS SELECT 1 AS keep; CREATE TABLE students AS SELECT 2 AS keep")
    con.close()

    result = run_job(registry_file, warehouse, layers=SMALL_SET_LAYERS, run_config=AS_OF_TODAY)
    assert result.success

    con = duckdb.connect(str(warehouse / "cdi.duckdb"))
    try:
        assert con.sql("SELECT keep FROM x").fetchall() == [(1,)]
        assert con.sql("SELECT keep FROM students").fetchall() == [(2,)]
        crm = con.sql("SELECT * FROM raw.crm ORDER BY _row_number").pl()
        assert [c for c in crm.columns if not c.startswith("_")] == [
            *HOSTILE.values(), "klant'nr"]
        assert crm[HOSTILE["record_id"]].to_list() == ["C1", "C2", "C3"]
        assert crm[HOSTILE["phone"]].to_list()[0] == "06-12345678"
        for name in ("erp", "shop"):
            assert con.sql(f"SELECT count(*) FROM raw.{name}").fetchall()[0][0] == 2
        records = con.sql(
            "SELECT source_record_id, first_name, last_name, email, phone, attributes, "
            "id_klantnummer FROM cleaned.customer_records WHERE source = 'crm' "
            "ORDER BY source_record_id").fetchall()
        assert records[0] == ("C1", "Jan", "Berg", "jan@example.com", "+31612345678",
                              '{"select":"Jan"}', "1")
        assert len(records) == 3
        assert con.sql("SELECT event_id, customer_record_id, amount FROM cleaned.activities "
                       "ORDER BY 1").fetchall() == [("O1", "C1", 12.5), ("O2", "C2", 3.0)]

        # Erasure deletes raw rows by the record id column: the name is quoted there too.
        purge_rows(con, ErasureTargets(
            records=pl.DataFrame({"source": ["crm"], "source_record_id": ["C2"]}),
            events=pl.DataFrame({"source": ["orders"], "event_id": ["O2"]}),
            customer_ids=pl.DataFrame(schema={"customer_id": pl.String}),
            emails=pl.Series([], dtype=pl.String), phones=pl.Series([], dtype=pl.String),
            per_request=pl.DataFrame(),
        ), load_registry(registry_file))
        assert con.sql(f'SELECT "{HOSTILE["record_id"].replace(chr(34), chr(34) * 2)}" '
                       "FROM raw.crm ORDER BY 1").fetchall() == [("C1",), ("C3",)]
        assert con.sql('SELECT "order""id" FROM raw.orders').fetchall() == [("O1",)]
        assert con.sql("SELECT count(*) FROM x").fetchall() == [(1,)]
    finally:
        con.close()


# --- a real Dagster run on a malformed source set ------------------------------------------

def test_dagster_run_on_messy_sources_quarantines_and_conserves(
    small_registry: Path, warehouse_dir: Path
) -> None:
    _csv(HEADER + "".join([
        "C1;Jan;van der Berg;31-02-1980;jan@example.com;06-12345678;1234 AB\n",
        f"C2;{'P' * 10_000};Jansen;17-11-1975;piet@example.com;0612345679;5678cd\n",
        "C3;\"Zo\u00eb\x00\";\"de\rVries\u200b\";01-01-2090;zoe@example.com;;9999 ZZ\n",
        "C4;\"'; DROP TABLE x; --\";Bakker;01-01-1990;;;\n",
    ]))(small_registry)
    pl.DataFrame({"customer_number": [10.0, None], "name": ["Jan van der Berg", "P. Jansen"],
                  "email": ["jan@example.com", "piet@example.com"]}).write_parquet(
        _source_file(small_registry, "erp.parquet"))
    shop = _source_file(small_registry, "shop.jsonl")
    shop.write_bytes(b"\xef\xbb\xbf" + shop.read_bytes())
    # Half of erp is unusable by design here; the share gate is test_cleaned_gates' subject.
    _edit(small_registry, lambda d: d.update(max_rejected_share=0.6))

    result = run_job(small_registry, warehouse_dir, layers=SMALL_SET_LAYERS,
                     run_config=AS_OF_TODAY)
    assert result.success
    check = next(e.asset_check_evaluation_data for e in result.all_events
                 if e.event_type_value == "ASSET_CHECK_EVALUATION"
                 and e.asset_check_evaluation_data.check_name == "conservation")
    assert check.passed
    con = duckdb.connect(str(warehouse_dir / "cdi.duckdb"), read_only=True)
    try:
        counts = con.sql(
            "SELECT r.source, r.raw, coalesce(c.n, 0), coalesce(q.n, 0) FROM (SELECT 'crm' AS "
            "source, count(*) AS raw FROM raw.crm UNION ALL SELECT 'erp', count(*) FROM raw.erp "
            "UNION ALL SELECT 'shop', count(*) FROM raw.shop) r "
            "LEFT JOIN (SELECT source, count(*) AS n FROM cleaned.customer_records GROUP BY 1) "
            "c USING (source) LEFT JOIN (SELECT source, count(*) AS n FROM cleaned.quarantine "
            "WHERE scope = 'record' GROUP BY 1) q USING (source) ORDER BY 1").fetchall()
        rules = con.sql("SELECT source, source_record_id, rule FROM cleaned.quarantine "
                        "ORDER BY ALL").fetchall()
        erp_ids = con.sql("SELECT source_record_id FROM cleaned.customer_records "
                          "WHERE source = 'erp'").fetchall()
    finally:
        con.close()
    assert counts == [("crm", 4, 4, 0), ("erp", 2, 1, 1), ("shop", 2, 2, 0)]
    assert {
        ("crm", "C1", "date_impossible"), ("crm", "C2", "value_too_long"),
        ("crm", "C3", "date_out_of_range"), ("crm", "C4", "name_looks_like_code"),
        ("erp", None, "record_id_missing"),
    } <= set(rules)
    assert erp_ids == [("10",)]


def test_dagster_run_on_a_ragged_file_fails_readably_and_writes_nothing(
    small_registry: Path, warehouse_dir: Path
) -> None:
    crm = _source_file(small_registry, "crm.csv")
    crm.write_text(crm.read_text(encoding="utf-8") + "C4;Anna;Bakker\n", encoding="utf-8")
    result = run_job(small_registry, warehouse_dir, layers=SMALL_SET_LAYERS,
                     run_config=AS_OF_TODAY)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["raw__crm"]
    error = failures[0].step_failure_data.error.cause
    assert error.cls_name == "SourceFileError"
    assert f"file {crm.resolve()} is not a readable CSV" in error.message
    assert "1 row(s) with the wrong number of fields" in error.message
    assert "line 5 has 3; expected 7" in error.message
    # The cleaned layer never ran on a partial source set.
    assert result.asset_materializations_for_node("cleaned_customer_records") == []
    con = duckdb.connect(str(warehouse_dir / "cdi.duckdb"), read_only=True)
    try:
        tables = {r[0] for r in con.sql("SELECT schema_name || '.' || table_name "
                                        "FROM duckdb_tables()").fetchall()}
    finally:
        con.close()
    assert "raw.crm" not in tables and "cleaned.customer_records" not in tables
