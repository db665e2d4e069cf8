"""The ground-truth population: who the synthetic customers really are.

Everything is drawn column-wise with numpy/polars, so a million persons cost seconds.
The returned frame holds both the current and the "older" version of every attribute
that changes over a life (address, surname, e-mail); the source builders pick one per record.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from . import vocabulary as v
from ._common import (
    EPOCH,
    REF_DAYS,
    choose,
    digits,
    hex_series,
    mask,
    stream,
    strip_accents,
    weighted_index,
    where,
)
from .namepool import first_names, surnames

# Dutch postcodes skip F I O Q U Y in the letter pair, and SA/SD/SS are never issued.
_PC_LETTERS = "ABCDEGHJKLMNPRSTVWXZ"
PC_LETTER_PAIRS = [
    a + b for a in _PC_LETTERS for b in _PC_LETTERS if a + b not in ("SA", "SD", "SS")
]

# Long-tailed name pools (head = the vocabulary's lists, then a composed/rarer tail).
_FN = first_names()
FIRST_NAMES = _FN.names
_FIRST_GENDER = _FN.gender
_FIRST_WEIGHT = _FN.weight
_NICK_COUNT = _FN.nick_count
_NICK_OFFSET = _FN.nick_offset
_NICK_FLAT = _FN.nick_flat

_SN = surnames()
_TV = _SN.tv
_BASE = _SN.base
_SN_WEIGHT = _SN.weight

DOB_FIRST = (np.datetime64("1935-01-01") - np.datetime64(EPOCH)).astype(int)
DOB_LAST = (np.datetime64("2006-12-31") - np.datetime64(EPOCH)).astype(int)

FOREIGN_CODES = list(v.FOREIGN)
_FOREIGN_WEIGHTS = [v.FOREIGN[c]["weight"] for c in FOREIGN_CODES]
# Foreign mobile numbers: national significant number prefix and how many random digits follow.
_FOREIGN_MOBILE = {"BE": ("47", 7), "DE": ("151", 8), "GB": ("77", 8), "US": ("2125", 6)}


def _house_numbers(rng: np.random.Generator, n: int) -> tuple[np.ndarray, pl.Series]:
    # Low numbers are far more common than high ones on real streets.
    number = 1 + np.floor(249 * rng.random(n) ** 2.2).astype(np.int64)
    add_names = [a for a, _ in v.HOUSE_NUMBER_ADDITIONS]
    add = choose(rng, n, add_names, [w for _, w in v.HOUSE_NUMBER_ADDITIONS])
    return number, where(mask(rng, n, 0.15), add, None)


def _nl_addresses(rng: np.random.Generator, n: int) -> pl.DataFrame:
    city_idx = weighted_index(rng, n, [c[5] for c in v.NL_CITIES])
    lo = np.array([c[2] for c in v.NL_CITIES])[city_idx]
    hi = np.array([c[3] for c in v.NL_CITIES])[city_idx]
    pc_num = lo + np.floor(rng.random(n) * (hi - lo + 1)).astype(np.int64)
    letters = choose(rng, n, PC_LETTER_PAIRS)
    number, addition = _house_numbers(rng, n)
    cities = pl.Series([c[0] for c in v.NL_CITIES]).gather(city_idx)
    alts = pl.Series([c[1] or None for c in v.NL_CITIES], dtype=pl.String).gather(city_idx)
    return pl.DataFrame(
        {
            "country": pl.Series(["NL"] * 1, dtype=pl.String).gather(np.zeros(n, dtype=int)),
            "city": cities,
            "city_alt": alts,
            "street": choose(rng, n, v.NL_STREETS),
            "hnr": number,
            "hadd": addition,
            "postcode": digits(pc_num, 4) + " " + letters,
            "area": pl.Series([c[4] for c in v.NL_CITIES]).gather(city_idx),
        }
    )


def _foreign_addresses(rng: np.random.Generator, n: int, code: str) -> pl.DataFrame:
    spec = v.FOREIGN[code]
    cities = spec["cities"]
    if code == "GB":
        # Pick an outward code, the city follows from it; inward is digit + 2 letters.
        flat = [(ci, out) for ci, (_, outs) in enumerate(cities) for out in outs]
        entry = rng.integers(0, len(flat), size=n)
        city_idx = np.array([f[0] for f in flat])[entry]
        outward = pl.Series([f[1] for f in flat]).gather(entry)
        inward = (
            digits(rng.integers(0, 10, size=n), 1)
            + choose(rng, n, list(v.UK_INWARD_LETTERS))
            + choose(rng, n, list(v.UK_INWARD_LETTERS))
        )
        postcode = outward + " " + inward
    else:
        city_idx = rng.integers(0, len(cities), size=n)
        lo = np.array([c[1][0] for c in cities])[city_idx]
        hi = np.array([c[1][1] for c in cities])[city_idx]
        num = lo + np.floor(rng.random(n) * (hi - lo + 1)).astype(np.int64)
        postcode = digits(num, 4 if code == "BE" else 5)
    number, addition = _house_numbers(rng, n)
    return pl.DataFrame(
        {
            "country": pl.Series([code], dtype=pl.String).gather(np.zeros(n, dtype=int)),
            "city": pl.Series([c[0] for c in cities]).gather(city_idx),
            "city_alt": pl.Series([None] * n, dtype=pl.String),
            "street": choose(rng, n, spec["streets"]),
            "hnr": number,
            "hadd": addition,
            "postcode": postcode,
            "area": pl.Series([None] * n, dtype=pl.String),
        }
    )


def addresses(rng: np.random.Generator, n: int, foreign_rate: float) -> pl.DataFrame:
    """n random addresses, a fraction foreign_rate outside the Netherlands."""
    abroad = mask(rng, n, foreign_rate)
    country = np.where(abroad, 1 + weighted_index(rng, n, _FOREIGN_WEIGHTS), 0)
    parts = []
    for ci, code in enumerate(["NL", *FOREIGN_CODES]):
        rows = np.flatnonzero(country == ci)
        if not len(rows):
            continue
        df = (
            _nl_addresses(rng, len(rows))
            if code == "NL"
            else _foreign_addresses(rng, len(rows), code)
        )
        parts.append(df.with_columns(_row=pl.Series(rows)))
    return pl.concat(parts).sort("_row").drop("_row")


def _fix_same_first_name(fn: np.ndarray, other: np.ndarray) -> np.ndarray:
    # Siblings/partners/twins never share a first name: move to the next name of that gender.
    nxt = (fn + 1) % len(FIRST_NAMES)
    block_start = np.where(_FIRST_GENDER[fn] == "M", _first_block("M")[0], _first_block("F")[0])
    nxt = np.where(_FIRST_GENDER[nxt] != _FIRST_GENDER[fn], block_start, nxt)
    return np.where(fn == other, nxt, fn)


def _first_block(g: str) -> np.ndarray:
    return np.flatnonzero(g == _FIRST_GENDER)


def _ascii_lower(values: pl.Series) -> pl.Series:
    return strip_accents(values).str.to_lowercase().str.replace_all(r"[^a-z]", "")


# E-mail building blocks per vocabulary entry, cleaned once instead of per person.
_FIRST_MAIL = _ascii_lower(FIRST_NAMES)
_SN_FULL_MAIL = _ascii_lower(_TV + _BASE)
_SN_BASE_MAIL = _ascii_lower(_BASE)


def _email_locals(
    rng: np.random.Generator, fn: np.ndarray, sn: np.ndarray, yob: np.ndarray
) -> pl.Series:
    n = len(fn)
    f = pl.lit(_FIRST_MAIL.gather(fn))
    sf = pl.lit(_SN_FULL_MAIL.gather(sn))
    sb = pl.lit(_SN_BASE_MAIL.gather(sn))
    yy = pl.lit(digits(yob % 100, 2))
    yyyy = pl.lit(digits(yob, 4))
    rnd = pl.lit(pl.Series(rng.integers(1, 1000, size=n)).cast(pl.String))
    rnd2 = pl.lit(digits(rng.integers(0, 100, size=n), 2))
    pat = pl.lit(pl.Series(weighted_index(rng, n, [25, 10, 10, 10, 8, 5, 10, 7, 15])))
    return pl.select(
        pl.when(pat == 0)
        .then(f + "." + sf)
        .when(pat == 1)
        .then(f + sf)
        .when(pat == 2)
        .then(f.str.slice(0, 1) + "." + sf)
        .when(pat == 3)
        .then(f + "." + sb + yy)
        .when(pat == 4)
        .then(f + "_" + sf + rnd)
        .when(pat == 5)
        .then(sf + "." + f)
        .when(pat == 6)
        .then(f.str.slice(0, 1) + sf + rnd)
        .when(pat == 7)
        .then(f + yyyy)
        .otherwise(f + sb + rnd2)
    ).to_series()


def _email_domains(rng: np.random.Generator, n: int) -> pl.Series:
    consumer = choose(
        rng, n, [d for d, _ in v.CONSUMER_EMAIL_DOMAINS], [w for _, w in v.CONSUMER_EMAIL_DOMAINS]
    )
    company = choose(rng, n, v.COMPANY_EMAIL_DOMAINS)
    return where(mask(rng, n, 0.1), company, consumer)


def _unique_emails(rng: np.random.Generator, local: pl.Series, domain: pl.Series) -> pl.Series:
    # Distinct people must not share an address by accident: append digits until unique.
    for _ in range(50):
        email = local + "@" + domain
        dup = ~email.is_first_distinct()
        if not dup.any():
            return email
        extra = pl.Series(rng.integers(1, 10_000, size=len(local))).cast(pl.String)
        local = where(dup, local + extra, local)
    raise RuntimeError("could not make e-mail addresses unique")


def build_persons(n: int, seed: int) -> pl.DataFrame:
    """The true persons, one row each, with current and older attribute versions."""
    rng = stream(seed, "persons")
    idx = np.arange(n)

    # Households: a "joiner" lives with the nearest preceding non-joiner (its root).
    joiner = mask(rng, n, 0.08)
    joiner[0] = False
    root = np.maximum.accumulate(np.where(joiner, 0, idx))
    twin = joiner & mask(rng, n, 0.05)

    u = rng.random(n)
    gender = np.where(u < 0.495, 0, np.where(u < 0.99, 1, 2))  # 0 female, 1 male, 2 other
    fn = np.empty(n, dtype=np.int64)
    for g, code in ((0, "F"), (1, "M")):
        rows = np.flatnonzero(gender == g)
        block = _first_block(code)
        fn[rows] = block[weighted_index(rng, len(rows), _FIRST_WEIGHT[block])]
    rows = np.flatnonzero(gender == 2)
    fn[rows] = weighted_index(rng, len(rows), _FIRST_WEIGHT)
    sn = weighted_index(rng, n, _SN_WEIGHT)
    dob = rng.integers(DOB_FIRST, DOB_LAST + 1, size=n)

    # Namesakes: distinct people (elsewhere, other birthday) with the very same name. Real
    # namesakes carry common names (two unrelated Hofstravelds are rare), so the name is
    # copied from a person with a surname of the common head of the list.
    namesake = mask(rng, n, 0.02) & ~joiner
    donors = np.flatnonzero(sn < len(v.SURNAMES))
    if donors.size == 0:
        donors = np.arange(n)
    src = donors[rng.integers(0, donors.size, size=n)]
    gender = np.where(namesake, gender[src], gender)
    fn = np.where(namesake, fn[src], fn)
    sn = np.where(namesake, sn[src], sn)

    age_days = REF_DAYS - dob
    married = (gender == 0) & (age_days >= 25 * 365) & ~twin & mask(rng, n, 0.11)
    partner_is_root = married & joiner & (gender[root] == 1)
    random_sn = weighted_index(rng, n, _SN_WEIGHT)
    random_sn = np.where(random_sn == sn, (random_sn + 1) % len(_TV), random_sn)
    sn_married = np.where(partner_is_root, sn[root], random_sn)
    double = married & mask(rng, n, 0.4)

    copy_sn = joiner & (twin | (mask(rng, n, 0.6) & ~married))
    sn = np.where(copy_sn, sn[root], sn)
    sn_married = np.where(married, sn_married, sn)
    dob = np.where(twin, dob[root], dob)
    fn = np.where(joiner, _fix_same_first_name(fn, fn[root]), fn)

    first = FIRST_NAMES.gather(fn)
    nick_pick = _NICK_OFFSET[fn] + np.floor(rng.random(n) * np.maximum(_NICK_COUNT[fn], 1))
    nick = where(
        _NICK_COUNT[fn] > 0,
        _NICK_FLAT.gather(np.minimum(nick_pick, len(_NICK_FLAT) - 1).astype(np.int64)),
        None,
    )
    initial2 = where(mask(rng, n, 0.5), choose(rng, n, list("JPMCAHWEGTLR")), None)

    tvs, bases = _TV, _BASE
    tv_b, base_b = tvs.gather(sn), bases.gather(sn)
    tv_m, base_m = tvs.gather(sn_married), bases.gather(sn_married)
    maiden_full = pl.select(
        pl.when(pl.lit(tv_b) == "")
        .then(pl.lit(base_b))
        .otherwise(pl.lit(tv_b) + " " + pl.lit(base_b))
    ).to_series()
    # Dutch double name: partner's name first, own (maiden) name after the hyphen.
    base_c = where(double, base_m + "-" + maiden_full, base_m)

    cur = addresses(rng, n, 0.03)[root]
    old = addresses(rng, n, 0.01)
    moved = mask(rng, n, 0.08)

    dob_s = pl.Series(dob.astype(np.int32)).cast(pl.Date)
    yob = dob_s.dt.year().to_numpy().astype(np.int64)
    locals_ = pl.concat([_email_locals(rng, fn, sn, yob) for _ in range(3)])
    domains = _email_domains(rng, 3 * n)
    emails = _unique_emails(rng, locals_, domains)
    email_cur, email_old, email_alt = emails[:n], emails[n : 2 * n], emails[2 * n :]
    changed = mask(rng, n, 0.07)
    email_old = where(changed, email_old, email_cur)
    # Some households share one family mailbox: a hard negative for matching on e-mail.
    share_mail = joiner & mask(rng, n, 0.1)
    email_cur = where(share_mail, email_cur.gather(root), email_cur)
    email_old = where(share_mail, email_old.gather(root), email_old)

    country = cur["country"]
    cc = country.replace_strict(v.DIAL_CODES, return_dtype=pl.String)
    # Dutch mobile numbers in use start 061-065: others fail validation, as they should.
    mobile_num = rng.choice(5 * 10**7, size=n, replace=n > 5 * 10**6)
    mobile = "6" + digits(10**7 + mobile_num, 8)
    for code, (prefix, width) in _FOREIGN_MOBILE.items():
        mobile = where(country == code, prefix + digits(mobile_num % 10**width, width), mobile)

    in_household = joiner | (np.bincount(root[joiner], minlength=n) > 0)
    has_land = (in_household | mask(rng, n, 0.25))[root] & (country == "NL").to_numpy()
    land_num = 1_000_000 + rng.choice(9 * 10**6, size=n, replace=n > 10**6)
    area = cur["area"].fill_null("010")
    land_k = (area.str.len_chars() - 1).to_numpy()
    landline = area.str.slice(1) + digits(land_num, 7).str.slice(pl.Series(land_k - 2))
    landline = where(has_land, landline.gather(root), None)

    loyalty_num = 10**9 + rng.choice(9 * 10**9, size=n, replace=False)
    loyalty = where(mask(rng, n, 0.6), pl.Series(loyalty_num).cast(pl.String), None)

    pid_width = max(7, len(str(n)))
    return pl.DataFrame(
        {
            "pid": "P" + digits(idx + 1, pid_width),
            "gender": pl.Series(["F", "M", "X"]).gather(gender),
            "first": first,
            "nick": nick,
            "initial2": initial2,
            "tv_b": tv_b,
            "base_b": base_b,
            "tv_c": tv_m,
            "base_c": base_c,
            "dob": dob_s,
            "email_cur": email_cur,
            "email_old": email_old,
            "email_alt": email_alt,
            "country": country,
            "city": cur["city"],
            "city_alt": cur["city_alt"],
            "street": cur["street"],
            "hnr": cur["hnr"],
            "hadd": cur["hadd"],
            "postcode": cur["postcode"],
            "o_country": old["country"],
            "o_city": old["city"],
            "o_city_alt": old["city_alt"],
            "o_street": old["street"],
            "o_hnr": old["hnr"],
            "o_hadd": old["hadd"],
            "o_postcode": old["postcode"],
            "cc": cc,
            "mobile": mobile,
            "landline": landline,
            "land_k": pl.Series(land_k[root], dtype=pl.Int8),
            "device_id": hex_series(rng, n, 16),
            "loyalty": loyalty,
            "segment": choose(rng, n, ["A", "B", "C"], [20, 35, 45]),
            "credit_limit": pl.Series(
                rng.choice(
                    [500.0, 1000.0, 2500.0, 5000.0, 10000.0], size=n, p=[0.3, 0.3, 0.2, 0.15, 0.05]
                )
            ),
            "moved": moved,
            "married": married,
            "email_changed": changed,
        }
    )
