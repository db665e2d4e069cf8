"""Run config shared by the assets that depend on 'today'."""

from __future__ import annotations

from datetime import date

import dagster as dg

from cdi_pipeline.lib.registry import Registry


class ReferenceDateConfig(dg.Config):
    """The 'today' of a run (the quarterly schedule sets it to the quarter's first day)."""

    reference_date: str | None = None
    """ISO date; empty: the registry's segments.reference_date, else the run's date."""


def run_date(config: ReferenceDateConfig, registry: Registry) -> date:
    """Run config, then registry, then the calendar."""
    if config.reference_date:
        return date.fromisoformat(config.reference_date)
    return registry.segments.reference_date or date.today()
