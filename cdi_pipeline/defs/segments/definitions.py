"""Segments layer: segment membership, summaries and activation exports."""

from __future__ import annotations

import dagster as dg

from cdi_pipeline.defs.segments.assets import build_segment_assets
from cdi_pipeline.defs.segments.checks import build_segment_checks
from cdi_pipeline.lib.registry import Registry


def defs(registry: Registry) -> dg.Definitions:
    """This layer's assets and checks for one source registry."""
    return dg.Definitions(
        assets=build_segment_assets(registry), asset_checks=build_segment_checks(registry)
    )
