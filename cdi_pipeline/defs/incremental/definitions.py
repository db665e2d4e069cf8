"""Incremental refresh: files dropped in incoming/<source>/ matched against the existing
customers, the sensor that starts it, and the republish that follows it."""

from __future__ import annotations

import dagster as dg

from cdi_pipeline.defs.incremental.refresh import build_incremental
from cdi_pipeline.defs.jobs.jobs import build_publish_sensor
from cdi_pipeline.lib.registry import Registry


def defs(registry: Registry) -> dg.Definitions:
    """The incremental job, its incoming-files sensor and the publish sensor after it."""
    job, incoming_sensor = build_incremental(registry)
    return dg.Definitions(jobs=[job], sensors=[incoming_sensor, build_publish_sensor(job)])
