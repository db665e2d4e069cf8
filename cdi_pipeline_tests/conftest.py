"""Shared fixtures: small hand-written source sets in temporary folders, and the small set's
warehouse built once per session (the generated sets' are in integration/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import yaml

from cdi_pipeline_tests.warehouse_state import Site, build_site, shared

# Folders whose tests run whole pipelines: collected first, so that with several pytest workers
# the long runs start early and the short unit tests fill the gaps at the end.
LONG_RUNNING_FOLDERS = ("integration", "bench")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long-running folders first, each folder's own order kept (a stable sort)."""

    def rank(item: pytest.Item) -> int:
        folder = item.path.parent.name
        return LONG_RUNNING_FOLDERS.index(folder) if folder in LONG_RUNNING_FOLDERS else 2

    items.sort(key=rank)


# The layers the small set can build: it is far too small to train a matching model.
SMALL_SET_LAYERS = ("raw", "cleaned", "quality")

CRM_CSV = (
    "contactnummer;voornaam;achternaam;geboortedatum;email;telefoon;postcode\n"
    "C1;Jan;van der Berg;05-03-1980;jan@example.com;06-12345678;1234 AB\n"
    "C2;Piet;Jansen;17-11-1975;piet@example.com;0612345679;5678cd\n"
    "C3;Zoë;de Vries;01-01-1990;zoe@example.com;+31 6 1234 5670;9999 ZZ\n"
)


def write_small_source_set(root: Path) -> Path:
    """Write a three-source registry (csv, parquet, jsonl) under root; return the YAML path."""
    (root / "sources").mkdir(parents=True, exist_ok=True)
    (root / "sources" / "crm.csv").write_text(CRM_CSV, encoding="utf-8")
    pl.DataFrame(
        {
            "customer_number": [10, 11],
            "name": ["Jan van der Berg", "P. Jansen"],
            "email": ["jan@example.com", "piet@example.com"],
        }
    ).write_parquet(root / "sources" / "erp.parquet")
    (root / "sources" / "shop.jsonl").write_text(
        '{"accountId": "W1", "firstName": "Jan", "lastName": "Berg", "email": "jan@example.com"}\n'
        '{"accountId": "W2", "firstName": "Zoe", "lastName": "de Vries", "email": null}\n',
        encoding="utf-8",
    )
    registry = {
        "sources": [
            {
                "name": "crm",
                "path": "sources/crm.csv",
                "format": "csv",
                "options": {"delimiter": ";", "encoding": "utf-8"},
                "record_id": "contactnummer",
                "trust": 1,
                "country": "NL",
                "date_format": "%d-%m-%Y",
                "fields": {
                    "first_name": "voornaam",
                    "last_name": "achternaam",
                    "date_of_birth": "geboortedatum",
                    "email": "email",
                    "phone": "telefoon",
                    "postcode": "postcode",
                },
            },
            {
                "name": "erp",
                "path": "sources/erp.parquet",
                "format": "parquet",
                "record_id": "customer_number",
                "trust": 2,
                "fields": {"full_name": "name", "email": "email"},
            },
            {
                "name": "shop",
                "path": "sources/shop.jsonl",
                "format": "jsonl",
                "record_id": "accountId",
                "trust": 3,
                "fields": {"first_name": "firstName", "last_name": "lastName", "email": "email"},
            },
        ]
    }
    path = root / "sources.yaml"
    path.write_text(yaml.safe_dump(registry, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def small_registry(tmp_path: Path) -> Path:
    """A small valid source set; returns the registry YAML path."""
    return write_small_source_set(tmp_path / "input")


@pytest.fixture
def warehouse_dir(tmp_path: Path) -> Path:
    """An empty warehouse folder."""
    path = tmp_path / "warehouse"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def small_site(tmp_path_factory) -> Iterator[Site]:
    """The small source set with its raw, cleaned and quality layers, built by one real
    Dagster run for the whole session: read it, or copy it (`copy_to`) to change anything."""
    site = build_site(tmp_path_factory.mktemp("small") / "site", write_small_source_set,
                      layers=SMALL_SET_LAYERS)
    assert site.result.success
    with shared(site):
        yield site
