"""The warehouse resource every layer writes through."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from cdi_pipeline.lib.enrichment.reference import FileReferenceData, ReferenceData
from cdi_pipeline.lib.storage import WAREHOUSE_FILE, move_tables, writer_lock

# All assets that write the warehouse share this pool; the instance config limits it to 1 so
# the Dagster UI queues them, and the file lock below covers runs outside that instance.
WAREHOUSE_POOL = "cdi_warehouse"


class WarehouseResource(dg.ConfigurableResource):
    """The pipeline's DuckDB warehouse (cdi.duckdb) and the folder for reports and exports."""

    directory: str = Field(description="Folder holding cdi.duckdb, reports and exports.")
    memory_limit: str = Field("1536MB", description="DuckDB memory_limit for pipeline connections.")
    threads: int = Field(2, description="DuckDB threads for pipeline connections.")
    lock_timeout_seconds: float = Field(
        3600.0, description="How long a run waits for another run's write to finish."
    )

    @property
    def root(self) -> Path:
        """The warehouse folder, created on first use."""
        path = Path(self.directory).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def database_path(self) -> Path:
        """Path of the pipeline's own DuckDB file (analysts get a separate published file)."""
        return self.root / WAREHOUSE_FILE

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """An exclusive read-write connection, held under the writer lock."""
        with writer_lock(self.root / ".cdi.lock", self.lock_timeout_seconds):
            spill = self.root / ".duckdb_tmp"
            spill.mkdir(exist_ok=True)
            con = duckdb.connect(
                str(self.database_path),
                config={
                    "memory_limit": self.memory_limit,
                    "threads": self.threads,
                    "temp_directory": str(spill),
                },
            )
            try:
                moved = move_tables(con)
                if moved:
                    logging.getLogger(__name__).warning(
                        "moved to the layer that writes them: %s", ", ".join(moved))
                yield con
            finally:
                con.close()


class ReferenceResource(dg.ConfigurableResource):
    """Where enrichment reference data comes from. Subclass it for a live provider and bind
    that under the key `reference`; the enrichment assets only call `provider()`."""

    def provider(self) -> ReferenceData:
        """The reference data to enrich with."""
        raise NotImplementedError("bind a concrete reference resource, e.g. FileReferenceResource")


class FileReferenceResource(ReferenceResource):
    """Reference data from the CSV files shipped in data/reference/."""

    directory: str = Field(description="Folder holding the reference CSV files and VERSION.")

    def provider(self) -> ReferenceData:
        return FileReferenceData(Path(self.directory))
