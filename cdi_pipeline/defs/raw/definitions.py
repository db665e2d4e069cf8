"""Raw layer: one asset per registered source file, loaded as it is."""

from __future__ import annotations

import dagster as dg

from cdi_pipeline.defs.raw.assets import build_raw_assets
from cdi_pipeline.lib.registry import Registry


def defs(registry: Registry) -> dg.Definitions:
    """This layer's assets and checks for one source registry."""
    return dg.Definitions(assets=build_raw_assets(registry))
