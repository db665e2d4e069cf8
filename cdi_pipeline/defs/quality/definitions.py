"""Quality layer: field profiles of the cleaned records and their checks."""

from __future__ import annotations

import dagster as dg

from cdi_pipeline.defs.quality.assets import field_profile_asset, invalid_value_share_check
from cdi_pipeline.lib.registry import Registry


def defs(registry: Registry) -> dg.Definitions:
    """This layer's assets and checks for one source registry."""
    return dg.Definitions(assets=[field_profile_asset], asset_checks=[invalid_value_share_check])
