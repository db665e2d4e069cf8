"""A run killed hard must not leave the warehouse pool blocked for every later run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from cdi_pipeline.datagen import generate
from cdi_pipeline.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent


def _env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CDI_SOURCES": str(root / "input" / "sources.yaml"),
        "CDI_WAREHOUSE_DIR": str(root / "warehouse"),
        "DAGSTER_HOME": str(root / "dagster_home"),
    }


def _execute(env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "dagster"), "job", "execute", "-m", "cdi_pipeline.definitions", "-j",
         "full_refresh"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs,
    )


def test_slots_of_a_killed_run_are_released(tmp_path: Path) -> None:
    generate(persons=300, seed=2, out_dir=tmp_path / "input", progress=False)
    with (tmp_path / "input" / "sources.yaml").open("a", encoding="utf-8") as handle:
        handle.write("max_rejected_share: 0.2\n")
    (tmp_path / "dagster_home").mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster_home" / "dagster.yaml")
    env = _env(tmp_path)

    # Kill the first run with SIGKILL while a step holds the pool slot.
    first = _execute(env)
    deadline = time.monotonic() + 120
    assert first.stdout is not None
    for line in first.stdout:
        if 'STEP_START - Started execution of step "cleaned_customer_records"' in line:
            break
        assert time.monotonic() < deadline, "the first run never reached the cleaned step"
    first.send_signal(signal.SIGKILL)
    first.wait()

    repaired = subprocess.run(
        [str(BIN / "python"), "-m", "cdi_pipeline.instance_repair"], env=env,
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert "released warehouse pool slots of dead run" in repaired.stdout

    # Without the repair this run would wait forever on "blocked by limit for pool".
    second = _execute(env)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out[-3000:]
    assert "RUN_SUCCESS" in out
