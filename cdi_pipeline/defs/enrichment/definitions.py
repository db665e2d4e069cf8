"""Enrichment layer: reference data joined to customers, and quarterly snapshots."""

from __future__ import annotations

import dagster as dg

from cdi_pipeline.defs.enrichment.assets import build_enrichment_assets
from cdi_pipeline.lib.registry import Registry


def defs(registry: Registry) -> dg.Definitions:
    """This layer's assets and checks for one source registry."""
    return dg.Definitions(assets=build_enrichment_assets(registry))
