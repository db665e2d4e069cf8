"""Published layer: the analyst file, masked, described and audited before it is swapped in."""

from __future__ import annotations

import dagster as dg

from cdi_pipeline.defs.published.assets import analytics_file
from cdi_pipeline.lib.registry import Registry


def defs(registry: Registry) -> dg.Definitions:
    """This layer's assets and checks for one source registry."""
    return dg.Definitions(assets=[analytics_file])
