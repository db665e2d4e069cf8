"""A run killed hard must not leave the warehouse pool blocked for every later run."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from cdi_pipeline.datagen import generate
from cdi_pipeline_tests.warehouse_state import BIN, start_refresh, workspace


def test_slots_of_a_killed_run_are_released(tmp_path: Path) -> None:
    generate(persons=300, seed=2, out_dir=tmp_path / "input", progress=False)
    with (tmp_path / "input" / "sources.yaml").open("a", encoding="utf-8") as handle:
        handle.write("max_rejected_share: 0.2\n")
    # The repository's instance config (one warehouse pool slot), as `make run` has it.
    ws = workspace(tmp_path, tmp_path / "input" / "sources.yaml")

    # Kill the first run with SIGKILL while a step holds the pool slot.
    first = start_refresh(ws, repair_first=False)
    deadline = time.monotonic() + 120
    assert first.stdout is not None
    for line in first.stdout:
        if 'STEP_START - Started execution of step "cleaned_customer_records"' in line:
            break
        assert time.monotonic() < deadline, "the first run never reached the cleaned step"
    first.send_signal(signal.SIGKILL)
    first.wait()

    repaired = subprocess.run(
        [str(BIN / "python"), "-m", "cdi_pipeline.instance_repair"], env=ws.env(),
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert "released warehouse pool slots of dead run" in repaired.stdout

    # Without the repair this run would wait forever on "blocked by limit for pool".
    second = start_refresh(ws, repair_first=False)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out[-3000:]
    assert "RUN_SUCCESS" in out
