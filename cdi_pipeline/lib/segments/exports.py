"""Activation exports: per segment, the contactable customers a campaign may use.

Files are written to a staging folder, audited there, and published by swapping one symlink
(`exports/activation` -> `activation-<run>`), so a CRM job that picks files up sees the old
set or the new set, never a half-written or a failed one. Only customers who opted in and
have a valid channel are exported, only the configured campaign columns leave the warehouse,
and no direct identifier sits anywhere but in the contact column made for it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cdi_pipeline.lib.leaks import describe, scan_folder
from cdi_pipeline.lib.registry import ExportConfig

CURRENT_LINK = "activation"
# The export's contact columns and the one kind of identifier each holds by design.
CONTACT_KINDS = {"email": {"email"}, "phone": {"phone"}}


class ExportRefused(RuntimeError):
    """The staged export failed its audit; the published one was left as it was."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("activation export not published, the previous set stays: "
                         + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ExportResult:
    """What was published: the folder, and one row per segment file set."""

    folder: Path
    manifest: pl.DataFrame


def export_rows(customer_360: pl.DataFrame, config: ExportConfig) -> pl.DataFrame:
    """The rows and columns that may leave: contactable customers, campaign columns only."""
    columns = list(dict.fromkeys([*config.columns, config.by]))
    return (
        customer_360.filter(pl.col("contactable"))
        .select(columns)
        .sort(config.by, "customer_id")
    )


def publish_exports(
    customer_360: pl.DataFrame, config: ExportConfig, root: Path, run_id: str
) -> ExportResult:
    """Write CSV and Parquet per segment to a staging folder, audit them (`export_problems`)
    and switch `root/activation` to them atomically only if the audit found nothing.

    Raises `ExportRefused` otherwise: the staging folder is deleted and the published set,
    its link and the older sets are left as they were.
    """
    root.mkdir(parents=True, exist_ok=True)
    rows = export_rows(customer_360, config)
    final = root / f"{CURRENT_LINK}-{run_id}"
    staging = root / f".staging-{run_id}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    manifest = []
    for (segment,), part in rows.partition_by(config.by, as_dict=True, maintain_order=True).items():
        name = str(segment)
        part = part.select(config.columns)
        part.write_csv(staging / f"{name}.csv")
        part.write_parquet(staging / f"{name}.parquet")
        manifest.append({"segment": name, "customers": part.height,
                         "csv": f"{name}.csv", "parquet": f"{name}.parquet"})
    frame = pl.DataFrame(
        manifest,
        schema={"segment": pl.String, "customers": pl.Int64, "csv": pl.String,
                "parquet": pl.String},
    )
    (staging / "manifest.json").write_text(
        json.dumps(
            {"run_id": run_id, "split_by": config.by, "columns": config.columns,
             "files": manifest},
            indent=2,
        ),
        encoding="utf-8",
    )
    problems = export_problems(staging, customer_360, config)
    if problems:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportRefused(problems)
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    link = root / CURRENT_LINK
    temporary_link = root / f".{CURRENT_LINK}-{run_id}.link"
    temporary_link.unlink(missing_ok=True)
    temporary_link.symlink_to(final.name)
    if link.is_dir() and not link.is_symlink():
        # A copied warehouse turns the link into a real folder: move it aside so it can be
        # replaced (and cleaned up with the other stale sets below).
        link.rename(root / f"{CURRENT_LINK}-copied-{run_id}")
    # os.replace of a symlink is atomic: readers follow either the old or the new target.
    os.replace(temporary_link, link)
    for stale in root.glob(f"{CURRENT_LINK}-*"):
        if stale != final:
            shutil.rmtree(stale, ignore_errors=True)
    for debris in root.glob(".staging-*"):
        shutil.rmtree(debris, ignore_errors=True)
    return ExportResult(folder=final, manifest=frame)


def export_problems(folder: Path, customer_360: pl.DataFrame, config: ExportConfig) -> list[str]:
    """What is wrong with an export folder: rows that may not leave, wrong columns, gaps, and
    direct identifiers outside the contact columns (by place and kind, never the values)."""
    problems: list[str] = []
    leaks = scan_folder(folder, CONTACT_KINDS)
    if leaks:
        problems.append(f"direct identifiers: {describe(leaks)}")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    files = manifest["files"]
    exported = [pl.read_parquet(folder / f["parquet"]) for f in files]
    for entry, frame in zip(files, exported, strict=True):
        if frame.columns != config.columns:
            problems.append(f"{entry['parquet']}: columns {frame.columns}, expected "
                            f"{config.columns}")
        csv_rows = pl.read_csv(folder / entry["csv"], infer_schema=False).height
        if csv_rows != frame.height or frame.height != entry["customers"]:
            problems.append(f"{entry['segment']}: csv {csv_rows} rows, parquet {frame.height}, "
                            f"manifest {entry['customers']}")
    ids = (
        pl.concat([f.select("customer_id") for f in exported])
        if exported else pl.DataFrame(schema={"customer_id": pl.String})
    )
    allowed = customer_360.filter(pl.col("contactable")).select("customer_id")
    leaked = ids.join(allowed, on="customer_id", how="anti").height
    if leaked:
        problems.append(f"{leaked} exported customer(s) are not contactable")
    missing = allowed.join(ids, on="customer_id", how="anti").height
    if missing:
        problems.append(f"{missing} contactable customer(s) are in no export file")
    if ids.height != ids.unique().height:
        problems.append("a customer appears in more than one export file")
    return problems
