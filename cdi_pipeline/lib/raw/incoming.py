"""Files dropped in `incoming/<source>/` beside the registry: which wait, which source each
belongs to, and where a loaded file goes (`incoming/<source>/loaded/`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from cdi_pipeline.lib.registry import Registry, Source

INCOMING_DIR = "incoming"
LOADED_DIR = "loaded"
FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl"}


def incoming_files(registry: Registry) -> list[Path]:
    """Files waiting in incoming/<source>/ (not yet moved to loaded/), oldest first."""
    root = registry.base_dir / INCOMING_DIR
    names = {s.name for s in registry.sources}
    found = [
        p for p in root.glob("*/*")
        if p.is_file() and p.parent.name in names and p.suffix in FORMATS
    ]
    return sorted(found, key=lambda p: (p.stat().st_mtime, str(p)))


def incoming_source(registry: Registry, relative: str) -> tuple[Source, Path]:
    """The registered source an incoming file belongs to (its folder's name), pointed at the
    file, and the file's path. Raises ValueError for a file outside incoming/ or in another
    format than its source delivers."""
    path = (registry.base_dir / relative).resolve()
    if not path.is_relative_to((registry.base_dir / INCOMING_DIR).resolve()):
        raise ValueError(f"{relative} is not inside {registry.base_dir / INCOMING_DIR}")
    source = registry.source(path.parent.name)
    if FORMATS.get(path.suffix) != source.format:
        raise ValueError(f"{path}: source {source.name!r} delivers {source.format} files")
    return source.model_copy(update={"path": path.relative_to(registry.base_dir)}), path


def loaded_path(path: Path) -> Path:
    """Where an incoming file is kept once its rows are in the warehouse."""
    return path.parent / LOADED_DIR / path.name


def move_to_loaded(paths: list[Path]) -> None:
    """Move loaded files out of the way, so the sensor does not offer them again."""
    for path in paths:
        target = loaded_path(path)
        target.parent.mkdir(exist_ok=True)
        shutil.move(str(path), target)
