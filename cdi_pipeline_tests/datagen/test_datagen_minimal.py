"""Tests for the minimal source set: names, dates of birth and postcodes only."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from cdi_pipeline.datagen import REFERENCE_DATE
from cdi_pipeline.datagen.__main__ import main
from cdi_pipeline.datagen.minimal import (
    MINIMAL_SOURCE_FILES,
    MINIMAL_TRUTH_FILE,
    generate_minimal,
)
from cdi_pipeline.lib.cleaned.records import CleanResult, clean_source
from cdi_pipeline.lib.raw.sources import load_source
from cdi_pipeline.lib.registry import Registry, load_registry

PERSONS = 300
SEED = 5
ALLOWED_FIELDS = {"first_name", "last_name", "full_name", "date_of_birth", "postcode"}
# Columns that would give matching something stronger than names, birth dates and postcodes.
FORBIDDEN = ("mail", "phone", "tel", "street", "straat", "house", "huis", "loyal", "device")


@pytest.fixture(scope="module")
def gen(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("minimal")
    return out, generate_minimal(PERSONS, SEED, out)


@pytest.fixture(scope="module")
def registry(gen) -> Registry:
    out, _ = gen
    return load_registry(out / "sources.yaml", require_files=True)


@pytest.fixture(scope="module")
def cleaned(registry) -> dict[str, CleanResult]:
    # Fixed load time and "today", so the run does not depend on the wall clock.
    loaded_at = datetime(2026, 10, 1, tzinfo=UTC)
    results = {}
    for source in registry.sources:
        raw = load_source(registry, source, run_id="t", loaded_at=loaded_at).frame
        results[source.name] = clean_source(raw, source, run_id="t", today=REFERENCE_DATE)
    return results


@pytest.fixture(scope="module")
def truth(gen) -> pl.DataFrame:
    out, _ = gen
    return pl.read_csv(out / MINIMAL_TRUTH_FILE, infer_schema=False)


def test_registry_maps_only_names_dates_and_postcodes(gen, registry):
    out, counts = gen
    assert [s.name for s in registry.sources] == list(MINIMAL_SOURCE_FILES)
    assert registry.truth_file() == (out / MINIMAL_TRUTH_FILE).resolve()
    mapped = set()
    for source in registry.sources:
        assert source.identifiers == {}
        assert source.activity is None
        assert source.country == "NL"
        assert source.date_format is not None
        mapped |= set(source.fields)
    assert mapped <= ALLOWED_FIELDS
    assert {"date_of_birth", "postcode"} <= mapped
    assert mapped & {"first_name", "last_name", "full_name"}

    members = pl.read_csv(out / MINIMAL_SOURCE_FILES["members"], infer_schema=False)
    registrations = pl.read_parquet(out / MINIMAL_SOURCE_FILES["registrations"])
    assert members.columns == ["member_no", "first_name", "surname", "birth_date", "postcode"]
    assert registrations.columns == ["reg_id", "name", "dob", "zip"]
    for column in members.columns + registrations.columns:
        assert not any(word in column for word in FORBIDDEN), column
    assert counts["members"] == members.height
    assert counts["registrations"] == registrations.height


def test_truth_covers_every_record_once(gen, registry, truth):
    out, counts = gen
    assert truth.columns == ["source", "source_record_id", "person_id"]
    assert truth.select(pl.struct("source", "source_record_id").is_unique().all()).item()
    expected = set()
    for source in registry.sources:
        raw = load_source(registry, source, run_id="t").frame
        expected |= {(source.name, str(i)) for i in raw[source.record_id]}
    assert set(zip(truth["source"], truth["source_record_id"], strict=True)) == expected
    assert truth.height == counts["truth"] == counts["members"] + counts["registrations"]

    per_person = truth.group_by("person_id").len()
    assert per_person.height == PERSONS
    assert per_person["len"].min() >= 1 and per_person["len"].max() <= 3
    # Duplicates within one source exist, not only links across the two sources.
    within = truth.group_by("person_id", "source").len()
    assert (within["len"] > 1).any()


def test_deterministic_per_seed(gen, tmp_path):
    out, _ = gen
    members = MINIMAL_SOURCE_FILES["members"]
    again, other = tmp_path / "again", tmp_path / "other"
    generate_minimal(PERSONS, SEED, again)
    generate_minimal(PERSONS, SEED + 1, other)
    for rel in [*MINIMAL_SOURCE_FILES.values(), MINIMAL_TRUTH_FILE, "sources.yaml"]:
        assert (again / rel).read_bytes() == (out / rel).read_bytes(), rel
    assert (other / members).read_bytes() != (out / members).read_bytes()


def test_noise_is_present(gen):
    out, _ = gen
    members = pl.read_csv(out / MINIMAL_SOURCE_FILES["members"], infer_schema=False)
    registrations = pl.read_parquet(out / MINIMAL_SOURCE_FILES["registrations"])
    postcodes = pl.concat([members["postcode"], registrations["zip"]]).drop_nulls()
    assert postcodes.str.contains(r"^\d{4} [A-Z]{2}$").any()
    assert postcodes.str.contains(r"^\d{4}[A-Z]{2}$").any()
    assert postcodes.str.contains(r"^\d{4} ?[a-z]{2}$").any()
    assert registrations["name"].str.contains(r"^[A-Z]\. ").any()
    for df, column in ((members, "birth_date"), (registrations, "dob")):
        share = df[column].null_count() / df.height
        assert 0.03 < share < 0.2, column


def test_hard_negatives_exist(cleaned, truth):
    records = pl.concat(
        [
            r.records.select(
                "source",
                "source_record_id",
                "last_name_key",
                "date_of_birth",
                "postcode",
                "first_name_key",
            )
            for r in cleaned.values()
        ]
    ).join(truth, on=["source", "source_record_id"])
    key = ["last_name_key", "date_of_birth", "postcode"]
    twins = (
        records.drop_nulls(key)
        .group_by(key)
        .agg(pl.col("person_id").n_unique().alias("persons"))
        .filter(pl.col("persons") > 1)
    )
    assert twins.height >= 1
    # Namesakes: the same given name and surname on different persons with other birth dates.
    namesakes = (
        records.drop_nulls(["first_name_key", "last_name_key", "date_of_birth"])
        .group_by("first_name_key", "last_name_key")
        .agg(
            pl.col("person_id").n_unique().alias("persons"),
            pl.col("date_of_birth").n_unique().alias("dobs"),
        )
        .filter((pl.col("persons") > 1) & (pl.col("dobs") > 1))
    )
    assert namesakes.height >= 1


def test_cleans_end_to_end(cleaned):
    for name, result in cleaned.items():
        assert result.raw_rows > 0, name
        assert result.quarantine.height / result.raw_rows < 0.05, name
        assert result.records.height + result.rejected_records == result.raw_rows, name
        records = result.records
        assert records["date_of_birth"].is_not_null().mean() > 0.8, name
        assert records["last_name_key"].is_not_null().mean() > 0.9, name
        assert records["postcode"].is_not_null().mean() > 0.8, name
        # Nothing beyond the mapped fields can come out of these sources.
        assert records["email"].is_null().all() and records["phone"].is_null().all(), name


def test_cli_minimal_shape(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["--persons", "40", "--seed", "3", "--out", str(out), "--shape", "minimal"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "members.csv" in printed and "identity records" in printed
    load_registry(out / "sources.yaml", require_files=True)
    assert not (out / "sources" / "crm_contacts.csv").exists()
