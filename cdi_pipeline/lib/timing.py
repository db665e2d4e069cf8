"""Phase timing for long steps: each phase's seconds are logged as it ends and kept for
the step's metadata, so an engineer sees where a run's time went without a profiler."""

import logging
import time


class Stopwatch:
    """Seconds per named phase, measured from the end of the previous phase."""

    def __init__(self, log: logging.Logger | logging.LoggerAdapter, step: str) -> None:
        self._log = log
        self._step = step
        self._started = self._last = time.monotonic()
        self.phases: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        """End `phase` now: keep and log its seconds."""
        now = time.monotonic()
        self.phases[phase] = round(self.phases.get(phase, 0.0) + now - self._last, 2)
        self._log.info("%s: %s took %.1fs", self._step, phase, now - self._last)
        self._last = now

    @property
    def total(self) -> float:
        """Seconds since the stopwatch started."""
        return round(time.monotonic() - self._started, 2)
