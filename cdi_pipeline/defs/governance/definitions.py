"""Governance layer: erasure requests and the suppression list."""

from __future__ import annotations

import dagster as dg

from cdi_pipeline.defs.governance.assets import build_governance_assets
from cdi_pipeline.lib.registry import Registry


def defs(registry: Registry) -> dg.Definitions:
    """This layer's assets and checks for one source registry."""
    return dg.Definitions(assets=build_governance_assets(registry))
