"""CLI: python -m cdi_pipeline.datagen --persons N --seed S --out DIR [options].

Options: --shape full|minimal|international|archival (default full; minimal writes only
names, birth dates and postcodes; international and archival write the benchmark sets of
`foreign.py`, whose noise is unlike ours), --no-progress.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import SOURCE_FILES, TRUTH_FILE, generate
from .foreign import (
    ARCHIVAL_SOURCE_FILES,
    FOREIGN_TRUTH_FILE,
    INTERNATIONAL_SOURCE_FILES,
    generate_archival,
    generate_international,
)
from .minimal import MINIMAL_SOURCE_FILES, MINIMAL_TRUTH_FILE, generate_minimal

# Shapes written by a plain function (persons, seed, out_dir) -> row counts per source.
_SIMPLE_SHAPES = {
    "minimal": (generate_minimal, MINIMAL_SOURCE_FILES, MINIMAL_TRUTH_FILE),
    "international": (generate_international, INTERNATIONAL_SOURCE_FILES, FOREIGN_TRUTH_FILE),
    "archival": (generate_archival, ARCHIVAL_SOURCE_FILES, FOREIGN_TRUTH_FILE),
}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, generate the data set and print a short summary."""
    parser = argparse.ArgumentParser(
        prog="python -m cdi_pipeline.datagen",
        description="Generate seeded synthetic Dutch customer sources with ground truth.",
    )
    parser.add_argument("--persons", type=int, required=True, help="number of true persons")
    parser.add_argument("--seed", type=int, required=True, help="random seed (>= 0)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--shape",
        choices=["full", *_SIMPLE_SHAPES],
        default="full",
        help="full: six sources with contact details; minimal: two sources with only names, "
        "dates of birth and postcodes; international: eight countries, three layouts, heavy "
        "noise; archival: persons born 1700-1950, names, dates and places only",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.persons < 1 or args.seed < 0:
        parser.error("--persons must be >= 1 and --seed >= 0")
    if args.shape in _SIMPLE_SHAPES:
        return _simple(args.shape, args.persons, args.seed, args.out)

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


def _simple(shape: str, persons: int, seed: int, out: Path) -> int:
    # Fast enough without a progress bar even at tens of thousands of persons.
    generate, source_files, truth_file = _SIMPLE_SHAPES[shape]
    started = time.perf_counter()
    counts = generate(persons, seed, out)
    seconds = time.perf_counter() - started
    paths = {**source_files, "truth": truth_file}
    print(f"Wrote {len(paths) + 1} files to {out}:")
    print("  sources.yaml")
    for name, path in paths.items():
        print(f"  {path:<40} {counts[name]:>10,} rows")
    records = sum(counts[name] for name in source_files)
    print(f"{persons:,} persons, {records:,} identity records in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
