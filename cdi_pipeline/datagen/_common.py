"""Vectorised helpers shared by the person model and the source writers."""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

# Fixed "now" of the synthetic world; using the wall clock would break determinism.
REFERENCE_DATE = date(2026, 10, 1)
EPOCH = date(1970, 1, 1)
REF_DAYS = (REFERENCE_DATE - EPOCH).days

Scalar = str | int | float | None
Value = pl.Series | pl.Expr | Scalar


def stream(seed: int, name: str) -> np.random.Generator:
    """Independent RNG per named stream, so adding one source never reshuffles another."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def weighted_index(rng: np.random.Generator, n: int, weights: Sequence[float]) -> np.ndarray:
    """Draw n indices into `weights` proportionally to the weights."""
    p = np.asarray(weights, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum())


def choose(
    rng: np.random.Generator,
    n: int,
    options: Sequence[str],
    weights: Sequence[float] | None = None,
) -> pl.Series:
    """Draw n strings from `options` (uniform unless weights are given)."""
    if weights is None:
        idx = rng.integers(0, len(options), size=n)
    else:
        idx = weighted_index(rng, n, weights)
    return pl.Series(list(options), dtype=pl.String).gather(idx)


def mask(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    """Boolean array that is True with probability p."""
    return rng.random(n) < p


def _expr(value: Value) -> pl.Expr:
    if isinstance(value, pl.Expr):
        return value
    if isinstance(value, pl.Series):
        return pl.lit(value)
    # A bare null must not force a String dtype onto e.g. a Date column.
    return pl.lit(value, dtype=pl.String) if isinstance(value, str) else pl.lit(value)


def where(cond: np.ndarray | pl.Series, a: Value, b: Value) -> pl.Series:
    """Element-wise `a if cond else b` for Series/scalars."""
    c = cond if isinstance(cond, pl.Series) else pl.Series(cond, dtype=pl.Boolean)
    return pl.select(pl.when(pl.lit(c)).then(_expr(a)).otherwise(_expr(b))).to_series()


def select(*exprs: pl.Expr) -> pl.Series:
    """Evaluate an expression built from Series literals into a Series."""
    return pl.select(*exprs).to_series()


def digits(values: np.ndarray, width: int) -> pl.Series:
    """Zero-padded decimal strings of integer values."""
    return pl.Series(values, dtype=pl.Int64).cast(pl.String).str.zfill(width)


def blank(rng: np.random.Generator, s: pl.Series, p: float) -> pl.Series:
    """Null out a fraction p of the values (missing data)."""
    return where(mask(rng, len(s), p), None, s)


def scatter(s: pl.Series, rows: np.ndarray, values: pl.Series | Scalar) -> pl.Series:
    """Copy of s with rows replaced by values."""
    out = s.clone()
    if len(rows):
        out.scatter(rows, values)
    return out


def strip_accents(s: pl.Series | pl.Expr):
    """Remove diacritics ("Zoë" -> "Zoe"), as systems without Unicode support do."""
    return s.str.normalize("NFKD").str.replace_all(r"\p{Mn}", "")


def typo(rng: np.random.Generator, s: pl.Series, p: float) -> pl.Series:
    """Drop, swap or replace one letter in a fraction p of the values."""
    n = len(s)
    length = s.str.len_chars().fill_null(0).to_numpy()
    hit = mask(rng, n, p) & (length >= 3)
    pos = (rng.random(n) * np.maximum(length - 1, 1)).astype(np.int64)
    kind = rng.integers(0, 3, size=n)
    letter = choose(rng, n, list("aeioulnrstdkm"))
    col, pc = pl.lit(s), pl.lit(pl.Series(pos))
    head = col.str.slice(0, pc)
    drop = head + col.str.slice(pc + 1)
    swap = head + col.str.slice(pc + 1, 1) + col.str.slice(pc, 1) + col.str.slice(pc + 2)
    repl = head + pl.lit(letter) + col.str.slice(pc + 1)
    k = pl.lit(pl.Series(kind))
    return select(
        pl.when(~pl.lit(pl.Series(hit)))
        .then(col)
        .when(k == 0)
        .then(drop)
        .when(k == 1)
        .then(swap)
        .otherwise(repl)
    )


def case_noise(rng: np.random.Generator, s: pl.Series, p_upper: float, p_lower: float) -> pl.Series:
    """Upper- or lower-case some values, as typed with caps lock or lazily."""
    u = rng.random(len(s))
    return select(
        pl.when(pl.lit(pl.Series(u < p_upper)))
        .then(pl.lit(s).str.to_uppercase())
        .when(pl.lit(pl.Series(u > 1 - p_lower)))
        .then(pl.lit(s).str.to_lowercase())
        .otherwise(pl.lit(s))
    )


def space_noise(rng: np.random.Generator, s: pl.Series, p: float) -> pl.Series:
    """Leading/trailing or doubled inner spaces in a fraction p of the values."""
    u = rng.random(len(s))
    col = pl.lit(s)
    third = p / 3
    return select(
        pl.when(pl.lit(pl.Series(u < third)))
        .then(pl.lit(" ") + col)
        .when(pl.lit(pl.Series(u < 2 * third)))
        .then(col + pl.lit("  "))
        .when(pl.lit(pl.Series(u < p)))
        .then(col.str.replace(" ", "  ", literal=True))
        .otherwise(col)
    )


def seconds_to_datetime(seconds: np.ndarray) -> pl.Series:
    """Seconds since 1970-01-01 -> polars Datetime(us) Series."""
    return pl.Series(seconds.astype(np.int64) * 1_000_000).cast(pl.Datetime("us"))


def hex_strings(rng: np.random.Generator, n: int, nchars: int) -> np.ndarray:
    """n random lowercase hex strings of nchars characters (fixed-width bytes array)."""
    lut = np.frombuffer(b"0123456789abcdef", dtype="S1")
    nibbles = rng.integers(0, 16, size=(n, nchars), dtype=np.uint8)
    return np.ascontiguousarray(lut[nibbles]).view(f"S{nchars}").ravel()


def hex_series(rng: np.random.Generator, n: int, nchars: int) -> pl.Series:
    """n random lowercase hex strings as a polars String Series."""
    return pl.Series(hex_strings(rng, n, nchars)).cast(pl.String)


def csv_bytes(df: pl.DataFrame) -> bytes:
    """A frame as comma-separated bytes with Unix line ends (the same bytes on every OS)."""
    buf = io.BytesIO()
    df.write_csv(buf, line_terminator="\n")
    return buf.getvalue()


def prepare_out_dir(persons: int, seed: int, out_dir: Path) -> Path:
    """Check a generator's arguments and create `out_dir`'s sources/ and truth/ folders."""
    if persons < 1:
        raise ValueError("persons must be >= 1")
    if seed < 0:
        raise ValueError("seed must be >= 0")
    out_dir = Path(out_dir)
    (out_dir / "sources").mkdir(parents=True, exist_ok=True)
    (out_dir / "truth").mkdir(parents=True, exist_ok=True)
    return out_dir
