"""Jobs, schedules and sensors: the end-to-end refresh, the quarterly enrichment refresh, and
the republishing of analyst-facing files after an incremental batch."""

from __future__ import annotations

import dagster as dg

from cdi_pipeline.defs.keys import (
    ACTIVATION_EXPORTS,
    ANALYTICS,
    CUSTOMER_ENRICHMENT,
    CUSTOMER_FEATURES,
    CUSTOMER_SNAPSHOTS,
    SEGMENT_SNAPSHOTS,
    XREF_SNAPSHOTS,
)

FULL_REFRESH = "full_refresh"
QUARTERLY_REFRESH = "quarterly_refresh"
QUARTERLY_SCHEDULE = "quarterly_refresh_schedule"
PUBLISH_REFRESH = "publish_refresh"
# 03:00 on the first day of January, April, July and October.
QUARTERLY_CRON = "0 3 1 1,4,7,10 *"
SCHEDULE_TIMEZONE = "Europe/Amsterdam"
# Assets whose config carries the run's 'today' (see defs/shared/config.py).
DATED_STEPS = ("golden__customer_features", "enrichment__customer_enrichment",
               "quarterly_snapshots")

# Enrichment, the features whose recency moves with the calendar, and everything downstream
# of them: segments, the customer 360, exports, snapshots and the analyst file. Raw loading
# and matching are not repeated: the quarterly run re-reads what full_refresh built.
QUARTERLY_SELECTION = (
    dg.AssetSelection.assets(CUSTOMER_ENRICHMENT, CUSTOMER_FEATURES).downstream()
    | dg.AssetSelection.assets(XREF_SNAPSHOTS, CUSTOMER_SNAPSHOTS, SEGMENT_SNAPSHOTS).downstream()
)


def dated_run_config(reference_date: str) -> dict:
    """Run config giving every dated step the same 'today'."""
    return {"ops": {step: {"config": {"reference_date": reference_date}}
                    for step in DATED_STEPS}}


FULL_REFRESH_JOB = dg.define_asset_job(
    name=FULL_REFRESH,
    selection=dg.AssetSelection.all(),
    description="Rebuild every layer from the raw source files to the published tables.",
    # One process: the layers run one after another on one warehouse file anyway, and this
    # saves a Python start-up per step.
    executor_def=dg.in_process_executor,
    tags={"cdi/job": FULL_REFRESH},
)
QUARTERLY_REFRESH_JOB = dg.define_asset_job(
    name=QUARTERLY_REFRESH,
    selection=QUARTERLY_SELECTION,
    description="Re-run enrichment and everything downstream (features, segments, customer "
    "360, exports), keep this quarter's snapshots and republish the analyst file.",
    executor_def=dg.in_process_executor,
    tags={"cdi/job": QUARTERLY_REFRESH},
)
PUBLISH_REFRESH_JOB = dg.define_asset_job(
    name=PUBLISH_REFRESH,
    selection=dg.AssetSelection.assets(ANALYTICS, ACTIVATION_EXPORTS),
    description="Rebuild the analyst file and the activation exports from the warehouse as "
    "it is (after an incremental batch).",
    executor_def=dg.in_process_executor,
    tags={"cdi/job": PUBLISH_REFRESH},
)




@dg.schedule(
    name=QUARTERLY_SCHEDULE,
    cron_schedule=QUARTERLY_CRON,
    execution_timezone=SCHEDULE_TIMEZONE,
    job_name=QUARTERLY_REFRESH,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Quarterly enrichment refresh on the first day of each quarter; the quarter's "
    "first day is the run's reference date, so snapshots are tagged with that quarter.",
)
def quarterly_refresh_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = context.scheduled_execution_time.date().isoformat()
    return dg.RunRequest(
        run_key=f"quarterly-{day}",
        run_config=dated_run_config(day),
        tags={"cdi/reference_date": day},
    )
