"""The cleaned layer's gates are registry settings whose defaults keep matchable records.

Birth-date validity ranges and the identifiability minimum are set under `gates:` at the
top level of the registry or per source; a record with a name and one of birth date,
postcode, city or email is matchable by default, and a birth date in 1850 is a real date.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
import yaml

from cdi_pipeline.lib.cleaned.records import clean_source
from cdi_pipeline.lib.raw.sources import load_source
from cdi_pipeline.lib.registry import RegistryError, load_registry

TODAY = date(2026, 12, 1)
HEADER = "id;first;last;born;city;email\n"
ROWS = [
    "P1;Anna;Smith;03-04-1850;;",         # a pre-1900 birth date: real in an archive
    "P2;Anna;;03-04-1851;;",              # a given name and a birth date, no surname
    "P3;Karl;;;Uppsala;",                 # a given name and a city
    "P4;;Berg;;;berg@example.org",        # a surname and an email
    "P5;Olle;;;;",                        # a given name alone: nothing to match on
]


def _registry(root: Path, gates: dict | None = None, source_gates: dict | None = None) -> Path:
    (root / "sources").mkdir(parents=True, exist_ok=True)
    (root / "sources" / "people.csv").write_text(HEADER + "\n".join(ROWS) + "\n",
                                                 encoding="utf-8")
    source = {
        "name": "people", "path": "sources/people.csv", "format": "csv",
        "options": {"delimiter": ";"}, "record_id": "id", "date_format": "%d-%m-%Y",
        "fields": {"first_name": "first", "last_name": "last", "date_of_birth": "born",
                   "city": "city", "email": "email"},
    }
    if source_gates is not None:
        source["gates"] = source_gates
    registry = {"sources": [source], **({"gates": gates} if gates is not None else {})}
    path = root / "sources.yaml"
    path.write_text(yaml.safe_dump(registry, sort_keys=False), encoding="utf-8")
    return path


def _clean(path: Path):
    registry = load_registry(path)
    source = registry.source("people")
    raw = load_source(registry, source, run_id="r").frame
    return clean_source(raw, source, run_id="r", today=TODAY, gates=registry.gates_for(source))


def _held_back(result) -> list[str]:
    return sorted(result.quarantine.filter(pl.col("scope") == "record")
                  .get_column("source_record_id").to_list())


def test_defaults_keep_every_matchable_record_and_old_birth_dates(tmp_path: Path) -> None:
    result = _clean(_registry(tmp_path))
    assert _held_back(result) == ["P5"]
    kept = result.records.sort("source_record_id")
    assert kept.get_column("source_record_id").to_list() == ["P1", "P2", "P3", "P4"]
    assert kept.get_column("date_of_birth").to_list()[:2] == [date(1850, 4, 3),
                                                              date(1851, 4, 3)]
    assert result.quarantine.filter(pl.col("rule") == "date_out_of_range").is_empty()
    # Conservation: every raw row is a cleaned record or a held-back record.
    assert result.records.height + len(_held_back(result)) == result.raw_rows


def test_a_source_can_narrow_the_birth_date_range(tmp_path: Path) -> None:
    result = _clean(_registry(tmp_path, source_gates={"birth_date_earliest": "1900-01-01"}))
    # P1's birth date is nulled and quarantined as a value, the record kept (it has a
    # surname); P2 is left with a given name alone and held back whole, its values with it.
    nulled = result.quarantine.filter(pl.col("rule") == "date_out_of_range")
    assert nulled.get_column("source_record_id").to_list() == ["P1"]
    assert "gates.birth_date_earliest" in nulled.get_column("message")[0]
    p1 = result.records.filter(pl.col("source_record_id") == "P1")
    assert p1.get_column("date_of_birth").to_list() == [None]
    assert _held_back(result) == ["P2", "P5"]


def test_top_level_gates_apply_and_a_source_overrides_single_keys(tmp_path: Path) -> None:
    path = _registry(tmp_path, gates={"identifiable_when": [["email"]],
                                      "birth_date_latest": "1850-12-31"},
                     source_gates={"birth_date_latest": "2000-01-01"})
    registry = load_registry(path)
    gates = registry.gates_for(registry.source("people"))
    assert gates.identifiable_when == (("email",),)
    assert gates.birth_date_latest == date(2000, 1, 1)
    result = _clean(path)
    assert _held_back(result) == ["P1", "P2", "P3", "P5"]
    message = result.quarantine.filter(pl.col("scope") == "record").get_column("message")[0]
    assert "gates.identifiable_when" in message


@pytest.mark.parametrize(("gates", "expected"), [
    ({"identifiable_when": [["name", "shoe_size"]]},
     r"source 'people', key 'gates.identifiable_when'.*unknown part\(s\) \['shoe_size'\]"),
    ({"identifiable_when": [[]]}, r"source 'people', key 'gates.identifiable_when'.*is empty"),
    ({"birth_date_earliest": "not a date"},
     r"source 'people', key 'gates.birth_date_earliest'.*valid date"),
    ({"birth_date_earliest": "1990-01-01", "birth_date_latest": "1980-01-01"},
     r"birth_date_earliest 1990-01-01 is not before"),
])
def test_bad_gate_settings_name_file_source_and_key(tmp_path: Path, gates: dict,
                                                    expected: str) -> None:
    path = _registry(tmp_path, source_gates=gates)
    with pytest.raises(RegistryError, match=expected) as error:
        load_registry(path)
    assert str(path.resolve()) in str(error.value)


def test_source_and_top_level_ranges_that_cross_are_refused(tmp_path: Path) -> None:
    path = _registry(tmp_path, gates={"birth_date_latest": "1800-01-01"},
                     source_gates={"birth_date_earliest": "1900-01-01"})
    with pytest.raises(RegistryError, match=r"source 'people': gates.birth_date_earliest"):
        load_registry(path)
