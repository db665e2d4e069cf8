"""A source holding customers of several countries: each phone number is read in its record's
country, the source's `country` only standing in where the record names none."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import yaml

from cdi_pipeline.lib.cleaned.records import clean_source
from cdi_pipeline.lib.raw.sources import load_source
from cdi_pipeline.lib.registry import load_registry


def test_national_numbers_are_read_in_the_records_own_country(tmp_path: Path) -> None:
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "crm.csv").write_text(
        "id,first,last,phone,country\n"
        "1,Hans,Weber,030 12345678,DE\n"       # a Berlin number, written nationally
        "2,Marie,Dubois,01 42 68 53 00,France\n"
        "3,Tom,Hill,020 7946 0018,\n",         # no country: the source's (GB)
        encoding="utf-8",
    )
    registry_file = tmp_path / "sources.yaml"
    registry_file.write_text(yaml.safe_dump({"sources": [{
        "name": "crm", "path": "sources/crm.csv", "format": "csv", "record_id": "id",
        "country": "GB",
        "fields": {"first_name": "first", "last_name": "last", "phone": "phone",
                   "country": "country"},
    }]}), encoding="utf-8")
    registry = load_registry(registry_file)
    source = registry.source("crm")
    result = clean_source(load_source(registry, source, run_id="r").frame, source, run_id="r",
                          today=date(2026, 12, 1))
    phones = dict(result.records.select("source_record_id", "phone").iter_rows())
    assert phones == {"1": "+493012345678", "2": "+33142685300", "3": "+442079460018"}
    assert result.quarantine.filter(pl.col("rule") == "phone_invalid").is_empty()
