"""The benchmark's incremental scenario splits source files and puts them back intact."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from cdi_pipeline.bench import _restore, _size_label, hold_back
from cdi_pipeline.datagen import generate
from cdi_pipeline.lib.registry import load_registry


def test_hold_back_and_restore_round_trip(tmp_path: Path) -> None:
    original = tmp_path / "original"
    generate(persons=200, seed=4, out_dir=original, progress=False)
    work = tmp_path / "work"
    shutil.copytree(original, work)
    files = hold_back(work, 0.05)
    registry = load_registry(work / "sources.yaml")
    assert len(files) == len(registry.sources)
    for source in registry.sources:
        batch = work / "incoming" / source.name / f"batch{registry.file_of(source).suffix}"
        assert str(batch.relative_to(work)) in files
        if source.format == "parquet":
            kept, held = pl.read_parquet(registry.file_of(source)), pl.read_parquet(batch)
            assert held.height >= 1
            assert kept.height + held.height == pl.read_parquet(
                original / source.path).height
        else:
            # CSV batches carry the header, so the source's reader takes them as they are.
            first = batch.read_bytes().splitlines()[0]
            if source.format == "csv":
                assert first == (original / source.path).read_bytes().splitlines()[0]
    _restore(work, files)
    for source in registry.sources:
        if source.format == "parquet":
            assert pl.read_parquet(work / source.path).equals(
                pl.read_parquet(original / source.path))
        else:
            assert (work / source.path).read_bytes() == (original / source.path).read_bytes()


def test_result_file_names() -> None:
    assert [_size_label(n) for n in (99_665, 1_002_733, 9_950_000, 10_139)] == [
        "100k", "1m", "10m", "10139"]
