"""Sensors of the incremental refresh: one starts it for files dropped in incoming/<source>/,
the other republishes what analysts and marketing read after each successful batch."""

from __future__ import annotations

import hashlib

import dagster as dg

from cdi_pipeline.defs.jobs.jobs import PUBLISH_REFRESH, PUBLISH_REFRESH_JOB
from cdi_pipeline.instance_repair import repair
from cdi_pipeline.lib.raw.incoming import INCOMING_DIR, incoming_files
from cdi_pipeline.lib.registry import Registry

INCOMING_SENSOR = "incoming_files_sensor"
PUBLISH_SENSOR = "publish_after_incremental"
AFTER_RUN_TAG = "cdi/after_run"
# Tag naming the set of incoming files a run loads (a digest of their paths and times).
BATCH_TAG = "cdi/incoming_batch"
# Runs tried for one set of files before the sensor waits for someone to look at them.
MAX_ATTEMPTS = 3
_ENDED_BADLY = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def build_incoming_sensor(registry: Registry, job: dg.JobDefinition) -> dg.SensorDefinition:
    """The sensor that starts `job` (incremental_refresh) for the files waiting in
    incoming/<source>/, at most MAX_ATTEMPTS times for one set of files."""

    @dg.sensor(job=job, name=INCOMING_SENSOR, minimum_interval_seconds=60,
               description="Starts incremental_refresh for files dropped in incoming/<source>/.")
    def incoming_files_sensor(context: dg.SensorEvaluationContext):
        waiting = incoming_files(registry)
        if not waiting:
            return dg.SkipReason(f"no files in {registry.base_dir / INCOMING_DIR}/<source>/")
        relative = [str(p.relative_to(registry.base_dir)) for p in waiting]
        stamp = ",".join(f"{r}@{p.stat().st_mtime_ns}" for r, p in zip(relative, waiting,
                                                                          strict=True))
        batch = hashlib.sha1(stamp.encode()).hexdigest()
        # A run killed hard stays 'started' with no process behind it: mark it failed (and
        # free its pool slot) so its batch is tried again instead of waiting for ever.
        repair(context.instance)
        runs = context.instance.get_runs(filters=dg.RunsFilter(tags={BATCH_TAG: batch}))
        busy = [r for r in runs if r.status not in _ENDED_BADLY]
        if busy:
            return dg.SkipReason(f"run {busy[0].run_id} already handles these files")
        if len(runs) >= MAX_ATTEMPTS:
            return dg.SkipReason(
                f"{len(runs)} runs for these files failed (last: {runs[0].run_id}: "
                f"{_failure(context.instance, runs[0].run_id)}); fix or replace the files in "
                f"{registry.base_dir / INCOMING_DIR} to try again"
            )
        # One run per distinct set of waiting files and attempt; a successful run moves the
        # files to loaded/, a failed one leaves them, and the next tick tries again.
        return dg.RunRequest(
            run_key=f"{batch}-{len(runs) + 1}",
            run_config={"ops": {"incremental_match": {"config": {"files": relative}}}},
            tags={BATCH_TAG: batch},
        )

    return incoming_files_sensor


def _failure(instance: dg.DagsterInstance, run_id: str, limit: int = 500) -> str:
    """Why a run failed, in its step's own words (a gate's findings are by shape)."""
    failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    if not failures:
        return "no step failure recorded"
    error = failures[-1].dagster_event.event_specific_data.error
    # Dagster wraps what the step raised: the step's own message is the innermost cause.
    while error is not None and error.cause is not None:
        error = error.cause
    message = error.message.strip() if error else "no error recorded"
    return message if len(message) <= limit else message[:limit] + "..."


def build_publish_sensor(
    incremental_job: dg.JobDefinition) -> dg.SensorDefinition:
    """After every successful incremental batch, republish what analysts and marketing read.

    A separate run, not a step of the batch: the batch's own time stays the matching work,
    and batches arriving in a burst share one republish (a publish run still waiting to
    start will read the newest warehouse anyway).
    """

    @dg.run_status_sensor(
        name=PUBLISH_SENSOR,
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[incremental_job],
        request_job=PUBLISH_REFRESH_JOB,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Republishes analytics.duckdb and the activation exports after each "
        "successful incremental_refresh.",
    )
    def publish_after_incremental(context: dg.RunStatusSensorContext):
        after = context.dagster_run.run_id
        waiting = context.instance.get_runs(filters=dg.RunsFilter(
            job_name=PUBLISH_REFRESH,
            statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED],
        ))
        if waiting:
            return dg.SkipReason(
                f"publish run {waiting[0].run_id} has not started yet and will include "
                f"incremental run {after}"
            )
        return dg.RunRequest(run_key=f"publish-after-{after}", tags={AFTER_RUN_TAG: after})

    return publish_after_incremental
