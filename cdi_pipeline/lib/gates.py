"""Gates: what a layer's stored state must satisfy before anything is built from it.

A gate is a plain function of a warehouse connection (and the registry's settings) that
returns a `GateResult`. The full refresh shows each as a blocking Dagster asset check; the
incremental refresh runs the same functions inside its write transaction, on the tables as
the batch leaves them, and rolls the batch back when one fails. So a rule is written once
and holds on both paths.

Results describe findings by count and shape, never by a person's values: they end up in
Dagster's event log, which erasure cannot reach.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict: figures and tables for the UI, a one-line description."""

    name: str
    passed: bool
    description: str
    figures: dict[str, int | float | str] = field(default_factory=dict)
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # markdown, already by shape


class GateFailed(RuntimeError):
    """One or more gates failed; nothing was committed."""

    def __init__(self, failed: list[GateResult]) -> None:
        super().__init__("gates failed, nothing written: " + "; ".join(
            f"{r.name}: {r.description}" for r in failed))
        self.failed = failed


def require(results: Iterable[GateResult]) -> list[GateResult]:
    """The results, all passed; else `GateFailed` naming every failed one."""
    results = list(results)
    failed = [r for r in results if not r.passed]
    if failed:
        raise GateFailed(failed)
    return results
