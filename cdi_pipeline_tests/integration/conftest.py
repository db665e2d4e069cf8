"""Warehouses built once per session, one per data shape, for the tests that read them.

Each is a real `full_refresh` run on a generated source set: in process (`run_job`), or for
the end-to-end shape as `make run` starts it (`refresh`). A test reads the shared site as it
is, or copies it (`Site.copy_to`) into its own folder before changing anything; the fixture
fails the session if a test changed a byte of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from cdi_pipeline.datagen.minimal import generate_minimal
from cdi_pipeline_tests.warehouse_state import (
    GENERATED_PERSONS,
    GENERATED_SEED,
    RefreshRun,
    Site,
    Workspace,
    build_site,
    generated_input,
    refresh,
    shared,
    succeeded,
    workspace,
    write_e2e_input,
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


@dataclass(frozen=True)
class EndToEndRun:
    """One `dagster job execute` of full_refresh on a fresh warehouse."""

    workspace: Workspace
    run: RefreshRun
    day: str  # UTC day(s) the run spanned, "first/last"


def _utc_day() -> str:
    return datetime.now(UTC).date().isoformat()


@pytest.fixture(scope="session")
def e2e_run(tmp_path_factory) -> Iterator[EndToEndRun]:
    """The end-to-end shape (E2E_PERSONS persons, one erasure request, a fixed reference
    date) refreshed once as `make run` does: test_pipeline_run reads what it left behind and
    test_reliability_determinism reruns a copy of it. Judged by the tests, not here."""
    root = tmp_path_factory.mktemp("e2e")
    ws = workspace(root, write_e2e_input(root / "input"))
    first = _utc_day()
    run = refresh(ws)
    with shared(Site(root)):
        yield EndToEndRun(ws, run, f"{first}/{_utc_day()}")
