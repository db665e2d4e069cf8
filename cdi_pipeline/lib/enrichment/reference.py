"""Reference data for enrichment, behind one interface.

`ReferenceData` is what the enrichment layer needs; `FileReferenceData` reads the CSV files
shipped in `data/reference/`. A live provider (a postcode API, a domain-reputation service)
implements the same three methods and is bound as a different resource; no asset changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import polars as pl


class ReferenceDataError(ValueError):
    """A reference file is missing or not in the documented shape."""


class ReferenceData(ABC):
    """Lookups the enrichment layer uses."""

    @abstractmethod
    def version(self) -> str:
        """Version of the reference data, stored next to every enrichment row."""

    @abstractmethod
    def postcode_provinces(self) -> pl.DataFrame:
        """pc2 (Int32), province, region."""

    @abstractmethod
    def postcode_municipalities(self) -> pl.DataFrame:
        """pc4_from, pc4_to (Int32, non-overlapping ranges), municipality."""

    @abstractmethod
    def email_domains(self) -> pl.DataFrame:
        """domain, domain_type (free_mail or disposable; others count as business)."""


_EXPECTED = {
    "postcode_provinces.csv": {"pc2": pl.Int32, "province": pl.String, "region": pl.String},
    "postcode_municipalities.csv": {
        "pc4_from": pl.Int32, "pc4_to": pl.Int32, "municipality": pl.String
    },
    "email_domains.csv": {"domain": pl.String, "domain_type": pl.String},
}


class FileReferenceData(ReferenceData):
    """Reference data from CSV files in one folder (the shipped `data/reference/`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _read(self, name: str) -> pl.DataFrame:
        path = self.directory / name
        expected = _EXPECTED[name]
        if not path.is_file():
            raise ReferenceDataError(f"reference file {path} does not exist")
        try:
            frame = pl.read_csv(path, schema_overrides=expected)
        except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError) as exc:
            raise ReferenceDataError(
                f"reference file {path} is not readable as {expected}: {exc}"
            ) from exc
        missing = [c for c in expected if c not in frame.columns]
        if missing:
            raise ReferenceDataError(
                f"reference file {path} lacks column(s) {missing}; expected {list(expected)}"
            )
        return frame.select(list(expected))

    def version(self) -> str:
        path = self.directory / "VERSION"
        return path.read_text(encoding="utf-8").strip() if path.is_file() else "unversioned"

    def postcode_provinces(self) -> pl.DataFrame:
        return self._read("postcode_provinces.csv")

    def postcode_municipalities(self) -> pl.DataFrame:
        frame = self._read("postcode_municipalities.csv").sort("pc4_from")
        overlap = frame.filter(pl.col("pc4_from") <= pl.col("pc4_to").shift(1))
        if not overlap.is_empty() or not frame.filter(
            pl.col("pc4_from") > pl.col("pc4_to")
        ).is_empty():
            raise ReferenceDataError(
                f"{self.directory / 'postcode_municipalities.csv'}: ranges must not overlap "
                f"and need pc4_from <= pc4_to; first bad row: {overlap.head(1).to_dicts()}"
            )
        return frame

    def email_domains(self) -> pl.DataFrame:
        frame = self._read("email_domains.csv")
        unknown = set(frame["domain_type"]) - {"free_mail", "disposable"}
        if unknown:
            raise ReferenceDataError(
                f"{self.directory / 'email_domains.csv'}: domain_type must be free_mail or "
                f"disposable, found {sorted(unknown)}"
            )
        return frame.with_columns(pl.col("domain").str.to_lowercase())
