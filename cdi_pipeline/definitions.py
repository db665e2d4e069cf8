"""The `cdi_pipeline` code location: every folder of `defs/` with a `definitions.py` (a layer,
the refresh jobs, the incremental refresh) contributes its `defs(registry)`."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from pathlib import Path

import dagster as dg

from cdi_pipeline import defs as defs_package
from cdi_pipeline import settings
from cdi_pipeline.defs.shared.resources import FileReferenceResource, WarehouseResource
from cdi_pipeline.lib.registry import load_registry

# The library's progress messages (training steps, pre-flight pair counts, pairs scored) are
# INFO; dagster.yaml lists the `cdi_pipeline` logger so they reach the run logs in the UI.
logging.getLogger("cdi_pipeline").setLevel(logging.INFO)


def defs_folders() -> list[str]:
    """The folders of `defs/` that define something (each has a `definitions.py`)."""
    root = Path(defs_package.__file__).parent
    return sorted(
        m.name
        for m in pkgutil.iter_modules(defs_package.__path__)
        if m.ispkg and (root / m.name / "definitions.py").is_file()
    )


def build_definitions(
    registry_file: Path | None = None, warehouse_dir: Path | None = None
) -> dg.Definitions:
    """Assemble the code location for one source registry and warehouse folder."""
    registry = load_registry(registry_file or settings.registry_path())
    folders = [
        importlib.import_module(f"{defs_package.__name__}.{name}.definitions").defs(registry)
        for name in defs_folders()
    ]
    warehouse = WarehouseResource(
        directory=str(warehouse_dir or settings.warehouse_dir()),
        memory_limit=settings.duckdb_memory_limit(),
    )
    resources = dg.Definitions(
        resources={
            "warehouse": warehouse,
            "reference": FileReferenceResource(directory=str(settings.reference_dir())),
        }
    )
    return dg.Definitions.merge(*folders, resources)


defs = build_definitions()
