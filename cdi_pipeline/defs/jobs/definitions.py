"""The refresh jobs, the quarterly schedule and the publish-after-incremental sensor."""

from __future__ import annotations

import dagster as dg

from cdi_pipeline.defs.jobs.jobs import (
    FULL_REFRESH_JOB,
    PUBLISH_REFRESH_JOB,
    QUARTERLY_REFRESH_JOB,
    quarterly_refresh_schedule,
)
from cdi_pipeline.lib.registry import Registry


def defs(registry: Registry) -> dg.Definitions:
    """The jobs that span every layer (the registry does not change them)."""
    return dg.Definitions(
        jobs=[FULL_REFRESH_JOB, QUARTERLY_REFRESH_JOB, PUBLISH_REFRESH_JOB],
        schedules=[quarterly_refresh_schedule],
    )
