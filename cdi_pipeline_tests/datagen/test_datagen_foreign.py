"""Tests for the international and archival benchmark source sets (datagen/foreign.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import yaml

from cdi_pipeline.datagen.__main__ import main
from cdi_pipeline.datagen.foreign import (
    ARCHIVAL_SOURCE_FILES,
    FOREIGN_TRUTH_FILE,
    INTERNATIONAL_SOURCE_FILES,
    _international_people,
    generate_archival,
    generate_international,
)
from cdi_pipeline.lib.raw.sources import load_source
from cdi_pipeline.lib.registry import load_registry

PERSONS = 300
SEED = 11
GENERATORS = {
    "international": (generate_international, INTERNATIONAL_SOURCE_FILES),
    "archival": (generate_archival, ARCHIVAL_SOURCE_FILES),
}
# The registry only maps fields: tuning (matching, gates, trust) is the benchmark's business.
MAPPING_KEYS = {
    "name", "description", "path", "format", "options", "record_id", "country", "date_format",
    "fields", "identifiers",
}  # fmt: skip


def _read(path: Path) -> pl.DataFrame:
    if path.suffix == ".csv":
        return pl.read_csv(path, infer_schema=False)
    if path.suffix == ".jsonl":
        return pl.read_ndjson(path)
    return pl.read_parquet(path)


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", params=list(GENERATORS))
def gen(request, tmp_path_factory) -> tuple[str, Path, dict]:
    shape = request.param
    generate, _ = GENERATORS[shape]
    out = tmp_path_factory.mktemp(shape)
    return shape, out, generate(PERSONS, SEED, out)


@pytest.fixture(scope="module")
def international(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("international_only")
    generate_international(PERSONS, SEED, out)
    return out


@pytest.fixture(scope="module")
def archival(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("archival_only")
    generate_archival(PERSONS, SEED, out)
    return out


def _sources(out: Path, files: dict[str, str]) -> dict[str, pl.DataFrame]:
    return {name: _read(out / path) for name, path in files.items()}


def test_same_seed_gives_same_bytes(gen, tmp_path):
    shape, out, counts = gen
    generate, _ = GENERATORS[shape]
    again = generate(PERSONS, SEED, tmp_path / "again")
    assert again == counts
    assert _files(out) == _files(tmp_path / "again")
    other = generate(PERSONS, SEED + 1, tmp_path / "other")
    assert _files(out) != _files(tmp_path / "other")
    assert other["persons"] == PERSONS


def test_same_bytes_in_another_process(tmp_path):
    # Faker builds some lists from sets, whose order follows PYTHONHASHSEED; none of that may
    # leak into the files.
    script = (
        "import sys; from pathlib import Path; "
        "from cdi_pipeline.datagen.foreign import generate_archival, generate_international; "
        f"out = Path(sys.argv[1]); generate_international({PERSONS}, {SEED}, out / 'i'); "
        f"generate_archival({PERSONS}, {SEED}, out / 'a')"
    )
    for hash_seed in ("1", "2"):
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / hash_seed)],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            cwd=Path(__file__).resolve().parents[2],
            check=True,
        )
    assert _files(tmp_path / "1") == _files(tmp_path / "2")


def test_registry_only_maps_fields_and_loads(gen):
    shape, out, counts = gen
    _, files = GENERATORS[shape]
    raw = yaml.safe_load((out / "sources.yaml").read_text(encoding="utf-8"))
    assert set(raw) == {"sources", "truth"}
    for entry in raw["sources"]:
        assert set(entry) <= MAPPING_KEYS, entry["name"]
    registry = load_registry(out / "sources.yaml", require_files=True)
    assert [s.name for s in registry.sources] == list(files)
    assert registry.truth_file() == (out / FOREIGN_TRUTH_FILE).resolve()
    loaded_at = datetime(2026, 10, 1, tzinfo=UTC)
    for source in registry.sources:
        # Every mapped column exists, and the pipeline's own reader accepts the file.
        frame = _read(registry.file_of(source))
        assert set(source.mapped_columns()) <= set(frame.columns), source.name
        assert source.country is not None and source.country != "NL"
        raw_frame = load_source(registry, source, run_id="t", loaded_at=loaded_at).frame
        assert raw_frame.height == counts[source.name] == frame.height


def test_truth_covers_every_record_exactly_once(gen):
    shape, out, counts = gen
    _, files = GENERATORS[shape]
    truth = pl.read_csv(out / FOREIGN_TRUTH_FILE, infer_schema=False)
    assert truth.columns == ["source", "source_record_id", "person_id"]
    assert truth.height == counts["truth"]
    assert not truth.select("source", "source_record_id").is_duplicated().any()
    assert truth["person_id"].n_unique() <= PERSONS
    registry = load_registry(out / "sources.yaml")
    for name, frame in _sources(out, files).items():
        ids = frame[registry.source(name).record_id].cast(pl.String)
        assert ids.null_count() == 0 and ids.n_unique() == frame.height
        in_truth = truth.filter(pl.col("source") == name)["source_record_id"]
        assert sorted(ids.to_list()) == sorted(in_truth.to_list()), name
    per_person = truth.group_by("person_id").len()["len"]
    limit = 4 if shape == "international" else 3
    assert per_person.min() >= 1 and per_person.max() <= limit


def test_archival_is_historical_and_sparse(archival):
    registry = load_registry(archival / "sources.yaml")
    sources = _sources(archival, ARCHIVAL_SOURCE_FILES)
    for source in registry.sources:
        assert not {"email", "phone", "street", "house_number"} & set(source.fields)
    for frame in sources.values():
        assert not [c for c in frame.columns if "mail" in c or "phone" in c or "street" in c]

    register, census = sources["parish_register"], sources["census"]
    years = pl.concat(
        [
            register["born"].str.to_date("%d/%m/%Y", strict=False).dt.year(),
            census["birth_date"].str.to_date("%Y-%m-%d", strict=False).dt.year(),
        ]
    ).drop_nulls()
    assert (years < 1900).mean() > 0.6
    assert years.min() >= 1700 and years.max() <= 1950

    one_token = register["name"].str.contains(r"^\S+$")
    assert one_token.sum() > 0.04 * register.height
    surnameless = census.filter(
        pl.col("last_name").is_null()
        & pl.col("first_name").is_not_null()
        & pl.col("birth_date").is_not_null()
        & pl.col("postcode").is_not_null()
    )
    assert surnameless.height > 0.04 * census.height


def test_international_mixes_locales_without_shared_addresses(international):
    sources = _sources(international, INTERNATIONAL_SOURCE_FILES)
    crm = sources["crm"]
    codes = {"United Kingdom": "GB", "England": "GB", "United States": "US", "USA": "US",
             "Germany": "DE", "Deutschland": "DE", "France": "FR", "Spain": "ES",
             "España": "ES", "Italy": "IT", "Italia": "IT", "Poland": "PL", "Polska": "PL",
             "Sweden": "SE", "Sverige": "SE"}  # fmt: skip
    countries = crm["country_code"].drop_nulls().replace(codes)
    assert countries.n_unique() >= 7

    names = pl.concat(
        [
            crm["first_name"],
            crm["last_name"],
            sources["shop"]["full_name"],
            sources["events"]["last_name"],
        ]  # fmt: skip
    ).drop_nulls()
    # Letters that only some of the locales use: several locales must be present.
    families = [r"[äöü]", r"[éèêç]", r"[ñá]", r"[łśżźć]", r"[å]", r"[ìò]"]
    assert sum(names.str.contains(f).any() for f in families) >= 4
    shop = sources["shop"]["full_name"].drop_nulls()
    assert shop.str.contains(r"^\p{Lu}+, ").any() and shop.str.contains(r"^[^,]+ [^,]+$").any()

    truth = pl.read_csv(international / FOREIGN_TRUTH_FILE, infer_schema=False)
    located = (
        crm.join(
            truth.filter(pl.col("source") == "crm"),
            left_on="contact_id",
            right_on="source_record_id",
        )
        .drop_nulls(["street", "house_number", "postcode"])
        .group_by("street", "house_number", "postcode")
        .agg(pl.col("person_id").n_unique().alias("persons"))
    )
    assert located.height > 0
    assert located["persons"].max() == 1


def test_international_has_namesakes_born_on_other_days():
    people = _international_people(PERSONS, SEED)
    shared = people.group_by("first", "middle", "last", "last2").agg(
        pl.len().alias("persons"), pl.col("dob").n_unique().alias("dobs")
    )
    namesakes = shared.filter(pl.col("persons") > 1)
    assert namesakes.height > 0
    assert (namesakes["dobs"] == namesakes["persons"]).all()
    addresses = people.select("street", "number", "postcode")
    assert not addresses.is_duplicated().any()


@pytest.mark.parametrize("shape", list(GENERATORS))
def test_cli_shapes(shape, tmp_path, capsys):
    assert main(["--persons", "40", "--seed", "2", "--out", str(tmp_path), "--shape", shape]) == 0
    _, files = GENERATORS[shape]
    for path in [*files.values(), FOREIGN_TRUTH_FILE, "sources.yaml"]:
        assert (tmp_path / path).is_file(), path
    assert "identity records" in capsys.readouterr().out
