"""Raw layer: each format loads with lineage; each bad file fails clearly and writes nothing."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from cdi_pipeline_tests.warehouse_state import Site, run_job

RAW = ("raw",)  # the raw layer's assets of full_refresh


def _table(warehouse_dir: Path, name: str) -> pl.DataFrame:
    con = duckdb.connect(str(warehouse_dir / "cdi.duckdb"), read_only=True)
    try:
        return con.sql(f"SELECT * FROM raw.{name} ORDER BY _row_number").pl()
    finally:
        con.close()


def test_each_format_loads_with_lineage(small_site: Site) -> None:
    # The session's build of the small set: its raw layer is what a raw-only run writes.
    result, warehouse_dir = small_site.result, small_site.warehouse
    assert result.success
    crm = _table(warehouse_dir, "crm")
    assert crm.height == 3
    # CSV columns stay text: a date is not silently reinterpreted at load time.
    assert crm.schema["geboortedatum"] == pl.String
    assert crm["geboortedatum"].to_list() == ["05-03-1980", "17-11-1975", "01-01-1990"]
    assert crm["voornaam"].to_list() == ["Jan", "Piet", "Zoë"]
    assert crm["_row_number"].to_list() == [1, 2, 3]
    assert crm["_file_hash"].n_unique() == 1 and len(crm["_file_hash"][0]) == 64
    assert crm["_run_id"][0] == result.run_id
    erp = _table(warehouse_dir, "erp")
    assert erp.schema["customer_number"] == pl.Int64  # Parquet keeps its own types
    shop = _table(warehouse_dir, "shop")
    assert shop["accountId"].to_list() == ["W1", "W2"]
    assert shop["email"].to_list() == ["jan@example.com", None]

    materialization = result.asset_materializations_for_node("raw__crm")[0]
    assert materialization.metadata["dagster/row_count"].value == 3
    preview = materialization.metadata["preview"].value
    assert "jan@example.com" not in preview and "j***" in preview

    con = duckdb.connect(str(warehouse_dir / "cdi.duckdb"), read_only=True)
    comment = con.sql(
        "SELECT comment FROM duckdb_columns() WHERE schema_name='raw' AND table_name='crm' "
        "AND column_name='_row_number'"
    ).fetchall()[0][0]
    con.close()
    assert "1-based" in comment


def _break_crm(registry_file: Path, content: bytes) -> None:
    (registry_file.parent / "sources" / "crm.csv").write_bytes(content)


HEADER = b"contactnummer;voornaam;achternaam;geboortedatum;email;telefoon;postcode\n"
BAD_FILES = {
    "missing_column": (
        b"contactnummer;voornaam;geboortedatum;email;telefoon;postcode\nC9;A;01-01-1990;a;b;c\n",
        r"no column 'achternaam' \(mapped as fields.last_name\)",
    ),
    "undecodable": (
        HEADER + "C9;Jos\u00e9;X;01-01-1990;a;b;c\n".encode("latin-1"),
        r"not valid utf-8 \(undecodable byte 0xe9 on line 2\)",
    ),
    "duplicate_ids": (
        HEADER + b"C9;A;B;01-01-1990;a;b;c\nC9;D;E;01-01-1990;a;b;c\n",
        r"column 'contactnummer' must be unique .*'C9' on rows \[1, 2\]",
    ),
    "empty": (b"", r"is empty \(0 bytes\)"),
    "ragged": (
        HEADER + b"C9;A;B;01-01-1990;a;b;c;extra;more\n",
        r"not a readable CSV with delimiter ';'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_fails_clearly_and_keeps_previous_table(
    small_site: Site, tmp_path: Path, case: str
) -> None:
    # A copy of the session's built small set is the previous state.
    site = small_site.copy_to(tmp_path / "site")
    small_registry, warehouse_dir = site.registry, site.warehouse
    before = _table(warehouse_dir, "crm")
    content, pattern = BAD_FILES[case]
    _break_crm(small_registry, content)
    result = run_job(small_registry, warehouse_dir, layers=RAW)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.cause.message
    assert "crm.csv" in message
    assert pl.Series([message]).str.contains(pattern).item(), message
    assert _table(warehouse_dir, "crm").equals(before)


def test_missing_file_names_the_registry_key(small_registry: Path, warehouse_dir: Path) -> None:
    (small_registry.parent / "sources" / "shop.jsonl").unlink()
    with pytest.raises(Exception, match=r"source 'shop': file .*shop.jsonl does not exist"):
        run_job(small_registry, warehouse_dir, layers=RAW, raise_on_error=True)


def test_broken_json_line_is_located(small_registry: Path, warehouse_dir: Path) -> None:
    path = small_registry.parent / "sources" / "shop.jsonl"
    path.write_text(path.read_text() + '{"accountId": "W3", "firstName": \n', encoding="utf-8")
    with pytest.raises(Exception, match=r"shop.jsonl line 3 is not valid JSON"):
        run_job(small_registry, warehouse_dir, layers=RAW, raise_on_error=True)


def test_bom_and_windows_1252_files_load(small_registry: Path, warehouse_dir: Path) -> None:
    import yaml

    crm = small_registry.parent / "sources" / "crm.csv"
    text = crm.read_text(encoding="utf-8")
    crm.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    run_job(small_registry, warehouse_dir, layers=RAW, raise_on_error=True)
    assert _table(warehouse_dir, "crm").columns[0] == "contactnummer"

    crm.write_bytes(text.encode("windows-1252"))
    data = yaml.safe_load(small_registry.read_text())
    data["sources"][0]["options"]["encoding"] = "windows-1252"
    small_registry.write_text(yaml.safe_dump(data))
    run_job(small_registry, warehouse_dir, layers=RAW, raise_on_error=True)
    assert _table(warehouse_dir, "crm")["voornaam"].to_list()[2] == "Zoë"
