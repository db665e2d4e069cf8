"""Cleaned layer: the canonical customer records and activities, behind their contracts."""

from __future__ import annotations

import dagster as dg

from cdi_pipeline.defs.cleaned.assets import build_cleaned_assets
from cdi_pipeline.defs.cleaned.checks import build_cleaned_checks
from cdi_pipeline.lib.registry import Registry


def defs(registry: Registry) -> dg.Definitions:
    """This layer's assets and checks for one source registry."""
    return dg.Definitions(
        assets=[build_cleaned_assets(registry)], asset_checks=build_cleaned_checks(registry)
    )
