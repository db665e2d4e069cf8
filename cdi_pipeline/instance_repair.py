"""Free warehouse pool slots held by runs whose process is gone.

A run killed hard (SIGKILL, out of memory, a closed terminal) cannot release the pool slot
its current step holds, and with a pool limit of 1 every later run then waits forever
("Step still blocked by limit for pool cdi_warehouse"). `make run` calls this first: any slot
holder that is not a run in progress in a live process on this machine is released, and such
a run is marked failed so the UI tells the truth about it. It judges liveness by process id
on this machine, so it is meant for the local instance `make run` uses, not for an instance
whose runs are launched on other hosts.

Usage: python -m cdi_pipeline.instance_repair
"""

from __future__ import annotations

import os
import re

import dagster as dg
from dagster import DagsterEventType, DagsterRunStatus

_PID = re.compile(r"\(pid: (\d+)\)")
_IN_PROGRESS = {DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_pids(instance: dg.DagsterInstance, run_id: str) -> set[int]:
    """Process ids the run reported executing its steps in."""
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ENGINE_EVENT
    ).records
    return {
        int(m.group(1))
        for r in records
        if (m := _PID.search(r.event_log_entry.user_message or ""))
    }


def repair(instance: dg.DagsterInstance) -> list[str]:
    """Release slots of dead runs; return the run ids released."""
    released = []
    in_progress = {
        r.run_id for r in instance.get_runs(filters=dg.RunsFilter(statuses=list(_IN_PROGRESS)))
    }
    holders = instance.event_log_storage.get_concurrency_run_ids()
    for run_id in sorted(holders | in_progress):
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status in _IN_PROGRESS:
            pids = _run_pids(instance, run_id)
            if not pids or any(_process_alive(p) for p in pids):
                # Alive, or launched elsewhere (a daemon, another machine): not ours to judge.
                continue
            instance.report_run_failed(run, "its process is gone; pool slots released")
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        released.append(run_id)
    return released


def main() -> None:
    with dg.DagsterInstance.get() as instance:
        for run_id in repair(instance):
            print(f"released warehouse pool slots of dead run {run_id}")


if __name__ == "__main__":
    main()
