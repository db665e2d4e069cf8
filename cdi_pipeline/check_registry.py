"""Check the source registry before a run and say plainly what is wrong with it.

The code location loads the registry when Dagster imports it, so a broken registry otherwise
surfaces as an import traceback with the message at its foot. `make run` calls this first:
a valid registry prints one line per source; an invalid one prints only the message (file,
source, key and what was expected) and exits with status 2.

Usage: python -m cdi_pipeline.check_registry [REGISTRY]   (default: CDI_SOURCES or data/)
"""

from __future__ import annotations

import sys
from pathlib import Path

from cdi_pipeline import settings
from cdi_pipeline.lib.registry import RegistryError, load_registry


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]).resolve() if args else settings.registry_path()
    try:
        registry = load_registry(path)
    except RegistryError as error:
        print(error, file=sys.stderr)
        return 2
    for source in registry.sources:
        print(f"{source.name}: {source.format} {registry.file_of(source)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
