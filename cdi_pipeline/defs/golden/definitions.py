"""Golden layer: one golden record per customer with lineage, features and the 360."""

from __future__ import annotations

import dagster as dg

from cdi_pipeline.defs.golden.assets import build_golden_assets
from cdi_pipeline.defs.golden.checks import build_golden_checks
from cdi_pipeline.lib.registry import Registry


def defs(registry: Registry) -> dg.Definitions:
    """This layer's assets and checks for one source registry."""
    return dg.Definitions(assets=build_golden_assets(registry), asset_checks=build_golden_checks())
