"""Incremental refresh: files dropped in incoming/<source>/ matched against the existing
customers, the sensor that starts it, and the republish that follows it."""

from __future__ import annotations

import dagster as dg

from cdi_pipeline.defs.incremental.jobs import build_incremental_job
from cdi_pipeline.defs.incremental.sensors import build_incoming_sensor, build_publish_sensor
from cdi_pipeline.lib.registry import Registry


def defs(registry: Registry) -> dg.Definitions:
    """The incremental job, its incoming-files sensor and the publish sensor after it."""
    job = build_incremental_job(registry)
    return dg.Definitions(
        jobs=[job], sensors=[build_incoming_sensor(registry, job), build_publish_sensor(job)]
    )
