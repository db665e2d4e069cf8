"""Warehouses built once per session, one per data shape, for the tests that read them.

Each is a real `full_refresh` run (`run_job`) on a generated source set. A test reads the
shared site as it is, or copies it (`Site.copy_to`) into its own folder before changing
anything; the fixture fails the session if a test changed a byte of it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cdi_pipeline.datagen.minimal import generate_minimal
from cdi_pipeline_tests.warehouse_state import (
    GENERATED_PERSONS,
    GENERATED_SEED,
    Site,
    build_site,
    generated_input,
    shared,
    succeeded,
)


@pytest.fixture(scope="session")
def generated_site(tmp_path_factory) -> Iterator[Site]:
    """Our generator's source set (GENERATED_PERSONS persons), refreshed once: the baseline of
    the matching, privacy and Spark tests. The tests are about matching and publishing, not
    the cleaned layer's reject gate: at a few hundred persons the generator's injected rejects
    can cross its 5% default by chance, so the registry allows 20%."""
    site = build_site(
        tmp_path_factory.mktemp("generated") / "site",
        generated_input(GENERATED_PERSONS, GENERATED_SEED, "max_rejected_share: 0.2\n"),
    )
    succeeded(site.result)
    with shared(site):
        yield site


@pytest.fixture(scope="session")
def minimal_site(tmp_path_factory) -> Iterator[Site]:
    """The minimal generator's shape (names, birth dates and postcodes only), 600 persons,
    refreshed once; its result is left for the tests to judge."""
    site = build_site(tmp_path_factory.mktemp("minimal") / "site",
                      lambda folder: generate_minimal(persons=600, seed=3, out_dir=folder))
    with shared(site):
        yield site
