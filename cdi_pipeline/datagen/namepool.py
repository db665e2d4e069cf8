"""Name pools with a realistic, long-tailed frequency distribution.

The vocabulary's name lists are the head of the distribution: the names that many people
share, in their relative order. Real populations add a long tail (in the Netherlands the most
common surname, De Jong, is carried by about half a percent of the people, the top 100 cover
roughly an eighth, and there are over 300,000 distinct surnames), so this module

* composes tens of thousands of synthetic Dutch-looking surnames from morphemes (root + suffix,
  prefix + place word, patronymic and Frisian forms, occupations, tussenvoegsel + place word)
  and gives them Zipf weights that continue below the head's rarest name;
* appends less common given names (without nicknames) to each gender's head list, again with
  weights that continue below the head.

Pools are fixed: they do not depend on the data set's seed (only the draws from them do), and
they are built once, vectorised with polars, on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl

from . import vocabulary as v

# Share of all persons carrying the most common surname (De Jong: ~0.5% in the Netherlands).
TOP_SURNAME_SHARE = 0.005
# The tail's first name is this fraction as frequent as the head's rarest one.
TAIL_START = 0.9
# Share of given names (per gender) that come from the tail.
FIRST_NAME_TAIL_SHARE = 0.35
# How far down the tail each kind of composed surname reaches, relative to its size: every kind
# supplies names at a rate of 1 / spread, so simple forms (van der Hoek, Jacobsen, Hofstra)
# are as frequent as they are plentiful and long compounds stay rare.
_KIND_SPREAD = {
    "tv_word": 1.0,
    "occupation": 1.0,
    "patronym": 1.0,
    "root_suffix": 1.0,
    "frisian": 1.5,
    "prefix_element": 1.0,
    "root_element": 2.0,
    "tv_compound": 2.0,
    "compound_suffix": 4.0,
}
# Fixed seed of the pool layout (ranks and tussenvoegsel choices), independent of data seeds.
_POOL_SEED = 20261001
_VOWELS = "aeiouy"


@dataclass(frozen=True)
class FirstNames:
    """Given names of both genders: index-aligned name, gender, weight and nickname arrays."""

    names: pl.Series
    gender: np.ndarray  # "M" / "F"
    weight: np.ndarray  # relative frequency within the gender
    nick_count: np.ndarray
    nick_offset: np.ndarray
    nick_flat: pl.Series


@dataclass(frozen=True)
class Surnames:
    """Surnames as (tussenvoegsel, base) with their probability (sums to 1)."""

    tv: pl.Series
    base: pl.Series
    weight: np.ndarray


def _frame(kind: str, tv: pl.Expr | str, base: pl.Expr) -> list[pl.Expr]:
    tv_expr = pl.lit(tv) if isinstance(tv, str) else tv
    return [pl.lit(kind).alias("kind"), tv_expr.alias("tv"), base.alias("base")]


def _cross(left: list[str], right: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"a": left}).join(pl.DataFrame({"b": right}), how="cross")


def _joined() -> pl.Expr:
    """a + b, dropping a stem's final e before a vowel (Sikke + inga -> Sikkinga)."""
    a, b = pl.col("a"), pl.col("b")
    drop_e = a.str.ends_with("e") & b.str.slice(0, 1).is_in(list(_VOWELS))
    return pl.when(drop_e).then(a.str.slice(0, a.str.len_chars() - 1)).otherwise(a) + b


def _awkward(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """Junctions that do not read as Dutch: Bos + sma, Zee + ink, Kamp + kamp."""
    last = a.str.to_lowercase().str.slice(-1)
    first = b.str.slice(0, 1)
    vowel_clash = last.is_in(list(_VOWELS)) & first.is_in(list(_VOWELS))
    return (last == first) | vowel_clash | a.str.to_lowercase().str.ends_with(b)


def _composed_surnames() -> pl.DataFrame:
    """Every composed surname once, as kind / tv / base."""
    a, b = pl.col("a"), pl.col("b")
    parts = [
        _cross(v.SURNAME_ROOTS, v.SURNAME_SUFFIXES)
        .filter(~_awkward(a, b))
        .select(_frame("root_suffix", "", a + b)),
        _cross(v.SURNAME_PREFIXES, v.SURNAME_ELEMENTS)
        .filter(~_awkward(a, b))
        .select(_frame("prefix_element", "", a + b)),
        _cross(v.SURNAME_ROOTS, v.SURNAME_ELEMENTS)
        .filter(~_awkward(a, b))
        .select(_frame("root_element", "", a + b)),
        # Patronymics keep a doubled s: Teunis + sen -> Teunissen (but not Teunis + s).
        _cross(v.PATRONYM_STEMS, v.PATRONYM_SUFFIXES)
        .filter(~(a.str.ends_with("s") & (b == "s")))
        .select(_frame("patronym", "", _joined())),
        _cross(v.FRISIAN_STEMS, v.FRISIAN_SUFFIXES)
        .filter(~(a.str.ends_with("s") & b.str.starts_with("s")))
        .select(_frame("frisian", "", _joined())),
        pl.DataFrame({"a": v.SURNAME_OCCUPATIONS}).select(_frame("occupation", "", a)),
        pl.DataFrame({"a": v.SURNAME_OCCUPATIONS})
        .filter(~a.str.ends_with("s"))
        .select(_frame("occupation", "", a + "s")),
        pl.DataFrame({"a": v.SURNAME_OCCUPATIONS + v.SURNAME_DESCRIPTIONS}).select(
            _frame("occupation", "de", a)
        ),
    ]
    plain = pl.concat(parts)
    rng = np.random.default_rng(_POOL_SEED)

    # Tussenvoegsel + place word (van der Hoek, ter Heide) and + compound (van Oosterhout).
    tv_names = [t for t, _ in v.TAIL_TUSSENVOEGSELS]
    tv_weights = np.array([w for _, w in v.TAIL_TUSSENVOEGSELS], dtype=np.float64)
    words = pl.Series([e[:1].upper() + e[1:] for e in v.SURNAME_ELEMENTS])
    tv_word = _cross(tv_names, words.to_list()).select(_frame("tv_word", a, b))
    compounds = plain.filter(pl.col("kind").is_in(["prefix_element", "root_element"]))
    pick = rng.choice(len(tv_names), size=compounds.height, p=tv_weights / tv_weights.sum())
    tv_compound = compounds.select(
        pl.lit("tv_compound").alias("kind"),
        pl.Series("tv", tv_names).gather(pick),
        pl.col("base"),
    )
    # A few compounds carry one more ending: Oosterveldman, Hoogeveens.
    compound_suffix = _cross(compounds["base"].to_list(), ["man", "s"]).filter(
        ~_awkward(a, b)
    ).select(_frame("compound_suffix", "", a + b))
    return pl.concat([plain, tv_word, tv_compound, compound_suffix]).unique(
        ["tv", "base"], keep="first", maintain_order=True
    )


def _zipf_tail(size: int, total: float, first: float) -> np.ndarray:
    """size weights c / (k + b) summing to total, the first equal to `first` (b by bisection)."""
    k = np.arange(1, size + 1, dtype=np.float64)
    lo, hi = 0.0, 1e9
    for _ in range(200):
        b = (lo + hi) / 2
        w = 1 / (k + b)
        c = total / w.sum()
        if c * w[0] > first:
            lo = b
        else:
            hi = b
    w = 1 / (k + (lo + hi) / 2)
    return total * w / w.sum()


@cache
def surnames() -> Surnames:
    """Head surnames (vocabulary order and relative weights) followed by the composed tail."""
    head = pl.DataFrame(
        {
            "tv": [s[0] for s in v.SURNAMES],
            "base": [s[1] for s in v.SURNAMES],
            "w": [float(s[2]) for s in v.SURNAMES],
        }
    )
    head_share = min(1.0, TOP_SURNAME_SHARE * head["w"].sum() / head["w"].max())
    head_w = head_share * head["w"].to_numpy() / head["w"].sum()

    tail = _composed_surnames().join(head, on=["tv", "base"], how="anti")
    rng = np.random.default_rng([_POOL_SEED, 1])
    size = tail.group_by("kind").len().rename({"len": "size"})
    spread = (
        tail.join(size, on="kind", how="left", maintain_order="left")
        .select(pl.col("kind").replace_strict(_KIND_SPREAD, return_dtype=pl.Float64) * "size")
        .to_series()
        .to_numpy()
    )
    order = np.argsort(rng.random(tail.height) * spread, kind="stable")
    tail = tail[order]
    tail_w = _zipf_tail(tail.height, 1.0 - head_share, TAIL_START * head_w.min())
    return Surnames(
        tv=pl.concat([head["tv"], tail["tv"]]),
        base=pl.concat([head["base"], tail["base"]]),
        weight=np.concatenate([head_w, tail_w]),
    )


def _gender_block(
    head: list[tuple[str, float, tuple[str, ...]]], tail: list[str], taken: set[str], stream: int
) -> list[tuple[str, float, tuple[str, ...]]]:
    extra = [name for name in dict.fromkeys(tail) if name not in taken]
    # The tail list is alphabetical-ish; its frequency order must not be.
    order = np.random.default_rng([_POOL_SEED, stream]).permutation(len(extra))
    extra = [extra[i] for i in order]
    head_w = np.array([w for _, w, _ in head], dtype=np.float64)
    total = head_w.sum() * FIRST_NAME_TAIL_SHARE / (1 - FIRST_NAME_TAIL_SHARE)
    tail_w = _zipf_tail(len(extra), total, TAIL_START * head_w.min()) if extra else []
    return list(head) + [(name, float(w), ()) for name, w in zip(extra, tail_w, strict=True)]


@cache
def first_names() -> FirstNames:
    """Male names (head, then tail) followed by female names (head, then tail)."""
    taken = {n for n, _, _ in v.MALE_FIRST_NAMES + v.FEMALE_FIRST_NAMES}
    male = _gender_block(v.MALE_FIRST_NAMES, v.MALE_FIRST_NAMES_TAIL, taken, 2)
    taken |= {n for n, _, _ in male}
    female = _gender_block(v.FEMALE_FIRST_NAMES, v.FEMALE_FIRST_NAMES_TAIL, taken, 3)
    entries = [(n, "M", w, nicks) for n, w, nicks in male] + [
        (n, "F", w, nicks) for n, w, nicks in female
    ]
    nick_count = np.array([len(e[3]) for e in entries])
    return FirstNames(
        names=pl.Series([e[0] for e in entries], dtype=pl.String),
        gender=np.array([e[1] for e in entries]),
        weight=np.array([e[2] for e in entries], dtype=np.float64),
        nick_count=nick_count,
        nick_offset=np.concatenate([[0], np.cumsum(nick_count)[:-1]]),
        nick_flat=pl.Series([n for e in entries for n in e[3]] or [""], dtype=pl.String),
    )
