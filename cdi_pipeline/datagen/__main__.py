"""CLI: python -m cdi_pipeline.datagen --persons N --seed S --out DIR [--no-progress]."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import SOURCE_FILES, TRUTH_FILE, generate


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, generate the data set and print a short summary."""
    parser = argparse.ArgumentParser(
        prog="python -m cdi_pipeline.datagen",
        description="Generate seeded synthetic Dutch customer sources with ground truth.",
    )
    parser.add_argument("--persons", type=int, required=True, help="number of true persons")
    parser.add_argument("--seed", type=int, required=True, help="random seed (>= 0)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.persons < 1 or args.seed < 0:
        parser.error("--persons must be >= 1 and --seed >= 0")

    summary = generate(args.persons, args.seed, args.out, progress=not args.no_progress)
    paths = {**SOURCE_FILES, "truth": TRUTH_FILE}
    print(f"Wrote {len(summary.records) + 1} files to {summary.out_dir}:")
    print("  sources.yaml")
    for name, rows in summary.records.items():
        print(f"  {paths[name]:<40} {rows:>10,} rows")
    print(
        f"{summary.persons:,} persons, {summary.identity_records:,} identity records "
        f"in {summary.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
