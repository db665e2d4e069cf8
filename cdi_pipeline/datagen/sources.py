"""Render the true persons into the five identity sources and the web shop orders.

Each builder takes the person frame plus the person indices that appear in that source and
returns ``(table, truth)``: the rows as the source system would export them, and the
record-id -> person-id mapping for those rows. All noise and injected errors are drawn with
vectorised masks from a per-source RNG stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from . import vocabulary as v
from ._common import (
    REF_DAYS,
    blank,
    case_noise,
    choose,
    digits,
    hex_series,
    mask,
    scatter,
    seconds_to_datetime,
    space_noise,
    stream,
    strip_accents,
    typo,
    weighted_index,
    where,
)

IDENTITY_SOURCES = [
    "crm_contacts",
    "erp_customers",
    "webshop_accounts",
    "support_tickets",
    "newsletter_signups",
]
# Chance that a person is known to a source; tuned for ~2.3 identity records per person.
INCLUSION = {
    "crm_contacts": 0.47,
    "erp_customers": 0.35,
    "webshop_accounts": 0.58,
    "support_tickets": 0.24,
    "newsletter_signups": 0.36,
}
# Chance that a record reflects the person's *older* situation (address, surname, e-mail):
# legacy systems lag behind life events, the web shop and helpdesk are mostly up to date.
P_OLD = {
    "crm_contacts": 0.6,
    "erp_customers": 0.5,
    "webshop_accounts": 0.25,
    "support_tickets": 0.1,
    "newsletter_signups": 0.4,
}
# Chance that a person got a second record in the same source (duplicate account).
DUPLICATES = {
    "crm_contacts": 0.03,
    "erp_customers": 0.025,
    "webshop_accounts": 0.04,
    "support_tickets": 0.0,
    "newsletter_signups": 0.03,
}

# Injected errors: each kind hits ERROR_RATE of a source's rows (at least ERROR_MIN rows);
# the kinds that should stay "a few" hit RARE_ERROR_RATE.
ERROR_RATE = 0.006
RARE_ERROR_RATE = 0.001
RARE_ERRORS = {"unusable", "no_id"}
ERROR_MIN = 3

_SECONDS_PER_DAY = 86_400
_REF_SECONDS = REF_DAYS * _SECONDS_PER_DAY
_THREE_YEARS = 3 * 365 * _SECONDS_PER_DAY


@dataclass
class SourceRows:
    """Person indices (into the person frame) of one source's records, plus duplicate flags."""

    pidx: np.ndarray
    dup: np.ndarray


def assign_sources(n_persons: int, seed: int) -> dict[str, SourceRows]:
    """Decide which persons appear in which identity source (1..5 sources each)."""
    rng = stream(seed, "membership")
    p = np.array([INCLUSION[s] for s in IDENTITY_SOURCES])
    inc = rng.random((n_persons, len(p))) < p
    # Everybody is a customer somewhere, otherwise they would not be in the truth.
    lonely = np.flatnonzero(~inc.any(axis=1))
    inc[lonely, weighted_index(rng, len(lonely), p)] = True
    out: dict[str, SourceRows] = {}
    for j, name in enumerate(IDENTITY_SOURCES):
        pidx = np.flatnonzero(inc[:, j])
        if name == "support_tickets":
            # Most callers phone once, a few keep coming back.
            tickets = np.minimum(rng.geometric(0.55, size=len(pidx)), 8)
            pidx = np.repeat(pidx, tickets)
        extra = pidx[mask(rng, len(pidx), DUPLICATES[name])]
        dup = np.concatenate([np.zeros(len(pidx), bool), np.ones(len(extra), bool)])
        out[name] = SourceRows(np.concatenate([pidx, extra]), dup)
    return out


# --------------------------------------------------------------------------- record view


def record_view(persons: pl.DataFrame, rows: SourceRows, p_old: float, rng) -> pl.DataFrame:
    """Gather the persons of a source's records, resolving old/new versions per record."""
    n = len(rows.pidx)
    perm = rng.permutation(n)
    df = persons[rows.pidx[perm]].with_columns(
        _old=pl.Series(mask(rng, n, p_old)), _dup=pl.Series(rows.dup[perm])
    )
    old = pl.col("_old")
    moved_old = old & pl.col("moved")
    addr = ["country", "city", "city_alt", "street", "hnr", "hadd", "postcode"]
    return df.with_columns(
        tv=pl.when(pl.col("married") & ~old).then("tv_c").otherwise("tv_b"),
        base=pl.when(pl.col("married") & ~old).then("base_c").otherwise("base_b"),
        email=pl.when("_dup").then("email_alt").when(old).then("email_old").otherwise("email_cur"),
        **{a: pl.when(moved_old).then(f"o_{a}").otherwise(a) for a in addr},
    ).select(
        "pid",
        "gender",
        "first",
        "nick",
        "initial2",
        "tv",
        "base",
        "dob",
        "email",
        *addr,
        "cc",
        "mobile",
        "landline",
        "land_k",
        "device_id",
        "loyalty",
        "segment",
        "credit_limit",
        "_dup",
    )


def _u(rng, n: int) -> pl.Series:
    return pl.Series(rng.random(n))


def surname_plain(df: pl.DataFrame) -> pl.Series:
    """'van der Berg' from tussenvoegsel + base."""
    return df.select(
        pl.when(pl.col("tv") == "")
        .then(pl.col("base"))
        .otherwise(pl.col("tv") + " " + pl.col("base"))
    ).to_series()


def first_name(df: pl.DataFrame, rng, p_nick: float, p_initial: float, p_ascii: float) -> pl.Series:
    """Given name as typed: formal, nickname, or initial; accents sometimes lost."""
    u = _u(rng, len(df))
    name = df.select(
        pl.when((pl.lit(u) < p_nick) & pl.col("nick").is_not_null())
        .then(pl.col("nick"))
        .when(pl.lit(u) > 1 - p_initial)
        .then(pl.col("first").str.slice(0, 1) + ".")
        .otherwise(pl.col("first"))
    ).to_series()
    return where(mask(rng, len(df), p_ascii), strip_accents(name), name)


def house_number(df: pl.DataFrame, rng) -> pl.Series:
    """House number with its addition written the way people do: 12a, 12 A, 12-2, 12 bis."""
    u = pl.lit(_u(rng, len(df)))
    lower = pl.lit(mask(rng, len(df), 0.5))
    add = pl.col("hadd")
    is_letter = add.is_in(["A", "B", "C"])
    is_digit = add.is_in(["1", "2", "3"])
    sep = (
        pl.when(is_letter)
        .then(
            pl.when(u < 0.5).then(pl.lit("")).when(u < 0.8).then(pl.lit(" ")).otherwise(pl.lit("-"))
        )
        .when(is_digit)
        .then(pl.when(u < 0.8).then(pl.lit("-")).otherwise(pl.lit(" ")))
        .otherwise(
            pl.when(u < 0.7)
            .then(pl.lit(" "))
            .when(u < 0.85)
            .then(pl.lit("-"))
            .otherwise(pl.lit(""))
        )
    )
    shown = pl.when(is_letter & lower).then(add.str.to_lowercase()).otherwise(add)
    return df.select(
        pl.col("hnr").cast(pl.String)
        + pl.when(add.is_null()).then(pl.lit("")).otherwise(sep + shown)
    ).to_series()


def postcode(df: pl.DataFrame, rng, p_nospace: float, p_lower: float) -> pl.Series:
    """Dutch postcodes with/without the space and in lower case; foreign ones as-is."""
    nl = pl.col("country") == "NL"
    pc = pl.col("postcode")
    squeezed = pl.when(nl & pl.lit(mask(rng, len(df), p_nospace))).then(
        pc.str.replace(" ", "", literal=True)
    )
    pc2 = squeezed.otherwise(pc)
    return df.select(
        pl.when(nl & pl.lit(mask(rng, len(df), p_lower)))
        .then(pc2.str.to_lowercase())
        .otherwise(pc2)
    ).to_series()


def city(df: pl.DataFrame, rng, p_alt: float, p_upper: float) -> pl.Series:
    """City, sometimes under its alternative name ('s-Gravenhage) or in capitals."""
    c = df.select(
        pl.when(pl.col("city_alt").is_not_null() & pl.lit(mask(rng, len(df), p_alt)))
        .then(pl.col("city_alt"))
        .otherwise(pl.col("city"))
    ).to_series()
    return where(mask(rng, len(df), p_upper), c.str.to_uppercase(), c)


# Phone forms: 0 "0612345678", 1 "06-12345678", 2 "06 12 34 56 78", 3 "+31 6 1234 5678",
# 4 "0031612345678", 5 "+31612345678", 6 "06 12345678". Landlines analogous (020-1234567).
def phone(
    df: pl.DataFrame, rng, forms: list[int], weights: list[float], p_land: float
) -> pl.Series:
    """A phone number in one of the given notations; landline instead of mobile with p_land."""
    n = len(df)
    use_land = pl.lit(mask(rng, n, p_land)) & pl.col("landline").is_not_null()
    form = pl.lit(pl.Series(np.asarray(forms)[weighted_index(rng, n, weights)]))
    nsn = pl.when(use_land).then(pl.col("landline")).otherwise(pl.col("mobile"))
    k = pl.when(use_land).then(pl.col("land_k").cast(pl.Int64)).otherwise(pl.lit(1))
    head = nsn.str.slice(0, k)
    rest = nsn.str.slice(k)
    spaced = (
        pl.when(use_land)
        .then("0" + head + " " + rest.str.slice(0, 3) + " " + rest.str.slice(3))
        .otherwise(
            "0"
            + head
            + " "
            + rest.str.slice(0, 2)
            + " "
            + rest.str.slice(2, 2)
            + " "
            + rest.str.slice(4, 2)
            + " "
            + rest.str.slice(6)
        )
    )
    split = pl.when(use_land).then(3).otherwise(4)
    intl = "+31 " + head + " " + rest.str.slice(0, split) + " " + rest.str.slice(split)
    cc = pl.col("cc")
    foreign = (
        pl.when(form == 4)
        .then("00" + cc + nsn)
        .when(form == 3)
        .then("+" + cc + " " + nsn)
        .otherwise("+" + cc + nsn)
    )
    return df.select(
        pl.when(cc != "31")
        .then(foreign)
        .when(form == 0)
        .then("0" + nsn)
        .when(form == 1)
        .then("0" + head + "-" + rest)
        .when(form == 2)
        .then(spaced)
        .when(form == 3)
        .then(intl)
        .when(form == 4)
        .then("0031" + nsn)
        .when(form == 5)
        .then("+31" + nsn)
        .otherwise("0" + head + " " + rest)
    ).to_series()


def email_noise(s: pl.Series, rng, p_upper: float, p_typo: float) -> pl.Series:
    """Capitalised addresses and misspelt (but well-formed) domains."""
    n = len(s)
    u = rng.random(n)
    cap = s.str.slice(0, 1).str.to_uppercase() + s.str.slice(1)
    s = where(u < p_upper * 0.8, cap, where(u < p_upper, s.str.to_uppercase(), s))
    local = s.str.extract(r"^(.*)@", 1)
    domain = s.str.extract(r"@([^@]*)$", 1)
    pick = rng.integers(0, 3, size=n)
    typoed = domain
    for i in range(3):
        mapping = {d: opts[i % len(opts)] for d, opts in v.EMAIL_DOMAIN_TYPOS.items()}
        typoed = where(pick == i, domain.replace(mapping), typoed)
    return where(mask(rng, n, p_typo) & domain.is_not_null().to_numpy(), local + "@" + typoed, s)


# --------------------------------------------------------------------------- errors


class Errors:
    """Disjoint random rows for each kind of injected error in one source."""

    def __init__(self, rng, n: int, kinds: list[str]):
        rates = {k: RARE_ERROR_RATE if k in RARE_ERRORS else ERROR_RATE for k in kinds}
        counts = [max(ERROR_MIN, round(rates[k] * n)) for k in kinds]
        # Tiny sources: never let errors take over more than half of the rows.
        scale = min(1.0, (n // 2) / max(sum(counts), 1))
        counts = [int(c * scale) for c in counts]
        rows = rng.choice(n, size=sum(counts), replace=False)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        self.rows = {k: np.sort(rows[bounds[i] : bounds[i + 1]]) for i, k in enumerate(kinds)}

    def __getitem__(self, kind: str) -> np.ndarray:
        return self.rows[kind]


def invalid_emails(rng, email: pl.Series, rows: np.ndarray) -> pl.Series:
    """Syntactically broken e-mail addresses: 'x@', 'x at home', '@@x', 'x@@domain'."""
    if not len(rows):
        return email
    orig = email.gather(rows).fill_null("klant@ziggo.nl")
    local = orig.str.extract(r"^([^@]*)", 1).fill_null("klant")
    domain = orig.str.extract(r"@(.*)$", 1).fill_null("ziggo.nl")
    kind = rng.integers(0, 4, size=len(rows))
    bad = where(
        kind == 0,
        local + "@",
        where(kind == 1, local + " at home", where(kind == 2, "@@x", local + "@@" + domain)),
    )
    return scatter(email, rows, bad)


def invalid_phones(rng, phone_s: pl.Series, rows: np.ndarray) -> pl.Series:
    """Unusable phone values: '12345', '0000000000', 'n.v.t.', 'onbekend'."""
    return scatter(phone_s, rows, choose(rng, len(rows), v.INVALID_PHONES))


def sql_junk(rng, s: pl.Series, rows: np.ndarray) -> pl.Series:
    """Names that are SQL-injection attempts."""
    return scatter(s, rows, choose(rng, len(rows), v.SQL_JUNK_NAMES))


def whitespace_only(rng, s: pl.Series, rows: np.ndarray) -> pl.Series:
    """Names consisting of blanks only."""
    return scatter(s, rows, choose(rng, len(rows), [" ", "   ", "\t", "  "]))


def _future_days(rng, n: int) -> np.ndarray:
    return REF_DAYS + rng.integers(5 * 365, 23 * 365, size=n)


def _dates_str(days: np.ndarray, fmt: str) -> pl.Series:
    return pl.Series(days.astype(np.int32)).cast(pl.Date).dt.strftime(fmt)


def _impossible_days_months(rng, n: int) -> pl.Series:
    return choose(rng, n, ["31-02", "30-02", "31-04", "31-06", "31-09", "31-11"])


def _record_ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    return prefix + digits(numbers, width)


def _truth(source: str, ids: pl.Series, pid: pl.Series) -> pl.DataFrame:
    return pl.DataFrame(
        {"source": source, "source_record_id": ids.cast(pl.String), "person_id": pid}
    )


# --------------------------------------------------------------------------- sources


def build_crm(persons: pl.DataFrame, rows: SourceRows, seed: int):
    """Sales CRM contacts (';' CSV, Dutch headers)."""
    rng = stream(seed, "crm_contacts")
    df = record_view(persons, rows, P_OLD["crm_contacts"], rng)
    n = len(df)
    ids = _record_ids("C", 1000 + np.cumsum(rng.integers(1, 4, size=n)), 7)

    voornaam = first_name(df, rng, 0.08, 0.04, 0.15)
    voornaam = space_noise(rng, case_noise(rng, typo(rng, voornaam, 0.03), 0.02, 0.03), 0.02)

    # Tussenvoegsel notations seen in Dutch CRMs.
    tv, base = pl.col("tv"), pl.col("base")
    abbr_map = v.TUSSENVOEGSEL_ABBREVIATIONS
    abbr1 = tv.replace_strict({t: a[0] for t, a in abbr_map.items()}, default=None)
    abbr2 = tv.replace_strict({t: a[1] for t, a in abbr_map.items()}, default=None)
    forms = weighted_index(rng, n, [55, 12, 8, 8, 5, 7, 5])
    # Even a tiny data set must show each notation, so force a few rows into forms 1 and 3.
    has_tv = np.flatnonzero((df["tv"] != "").to_numpy())
    vd = np.flatnonzero(df["tv"].is_in(["van der", "van den", "van de"]).to_numpy())
    forms[rng.permutation(has_tv)[: 2 * ERROR_MIN]] = 1
    forms[rng.permutation(vd)[: 2 * ERROR_MIN]] = 3
    form = pl.lit(pl.Series(forms))
    plain = tv + " " + base
    achternaam = df.select(
        pl.when(tv == "")
        .then(base)
        .when(form == 1)
        .then(base + ", " + tv)
        .when(form == 2)
        .then(base + " " + tv)
        .when((form == 3) & abbr1.is_not_null())
        .then(abbr1 + " " + base)
        .when((form == 4) & abbr2.is_not_null())
        .then(abbr2 + " " + base)
        .when(form == 5)
        .then(tv.str.to_titlecase() + " " + base)
        .when(form == 6)
        .then(tv.str.slice(0, 1).str.to_uppercase() + tv.str.slice(1) + " " + base)
        .otherwise(plain)
    ).to_series()
    achternaam = where(mask(rng, n, 0.05), strip_accents(achternaam), achternaam)
    achternaam = space_noise(rng, case_noise(rng, typo(rng, achternaam, 0.03), 0.02, 0.02), 0.02)

    dob = df["dob"]
    geboortedatum = dob.dt.strftime("%d-%m-%Y")
    geslacht = df["gender"].replace_strict({"F": "V", "M": "M", "X": "O"}, return_dtype=pl.String)
    land = df.select(
        pl.col("country").replace_strict(
            {c: s[0] for c, s in v.COUNTRY_SPELLINGS.items()}, return_dtype=pl.String
        )
    ).to_series()
    spelling = rng.integers(0, 4, size=n)
    for i in range(1, 4):
        alt = df["country"].replace_strict(
            {c: s[i % len(s)] for c, s in v.COUNTRY_SPELLINGS.items()}, return_dtype=pl.String
        )
        land = where(spelling == i, alt, land)
    # Most Dutch users never fill in the country for Dutch addresses.
    land = where((df["country"] == "NL").to_numpy() & mask(rng, n, 0.55), None, land)

    street = df["street"]
    street = where(mask(rng, n, 0.03), street.str.replace("straat$", "str."), street)

    out = pl.DataFrame(
        {
            "contactnummer": ids,
            "voornaam": blank(rng, voornaam, 0.04),
            "achternaam": blank(rng, achternaam, 0.02),
            "geboortedatum": blank(rng, geboortedatum, 0.10),
            "geslacht": blank(rng, geslacht, 0.12),
            "email": blank(rng, email_noise(df["email"], rng, 0.05, 0.01), 0.15),
            "telefoon": blank(
                rng, phone(df, rng, [0, 1, 2, 3, 5, 6], [30, 30, 10, 5, 10, 15], 0.3), 0.2
            ),
            "straat": blank(rng, street, 0.05),
            "huisnummer": blank(rng, house_number(df, rng), 0.05),
            "postcode": blank(rng, postcode(df, rng, 0.3, 0.1), 0.06),
            "woonplaats": blank(rng, city(df, rng, 0.3, 0.08), 0.06),
            "land": land,
            "klantkaart": df["loyalty"],
            "segment_code": df["segment"],
        }
    )

    err = Errors(
        rng,
        n,
        ["email", "phone", "impossible", "wrong_format", "future", "blank_name", "sql", "unusable"],
    )
    years = dob.dt.year().cast(pl.String)
    r = err["impossible"]
    impossible = _impossible_days_months(rng, len(r)) + "-" + years.gather(r)
    r2 = err["wrong_format"]
    future = _dates_str(_future_days(rng, len(err["future"])), "%d-%m-%Y")
    out = out.with_columns(
        email=invalid_emails(rng, out["email"], err["email"]),
        telefoon=invalid_phones(rng, out["telefoon"], err["phone"]),
        geboortedatum=scatter(
            scatter(
                scatter(out["geboortedatum"], r, impossible),
                r2,
                dob.gather(r2).dt.strftime("%Y/%m/%d"),
            ),
            err["future"],
            future,
        ),
        achternaam=sql_junk(rng, out["achternaam"], err["sql"]),
    )
    # Half of the blank-name rows lose the given name, the other half the surname.
    blank_rows = err["blank_name"]
    out = out.with_columns(
        voornaam=whitespace_only(rng, out["voornaam"], blank_rows[0::2]),
        achternaam=whitespace_only(rng, out["achternaam"], blank_rows[1::2]),
    )
    # Unusable rows: nothing but the record id and the segment survived the export.
    identity_cols = [c for c in out.columns if c not in ("contactnummer", "segment_code")]
    out = out.with_columns(
        scatter(out[c].cast(pl.String), err["unusable"], None).alias(c) for c in identity_cols
    )
    return out, _truth("crm_contacts", ids, df["pid"])


def build_erp(persons: pl.DataFrame, rows: SourceRows, seed: int):
    """ERP billing customers (Parquet, one full-name column)."""
    rng = stream(seed, "erp_customers")
    df = record_view(persons, rows, P_OLD["erp_customers"], rng)
    n = len(df)
    ids = pl.Series(100_000 + np.cumsum(rng.integers(1, 6, size=n)), dtype=pl.Int64)

    first = first_name(df, rng, 0.05, 0.0, 0.2)
    sur = surname_plain(df)
    sur = where(mask(rng, n, 0.1), strip_accents(sur), sur)
    ini = first.str.slice(0, 1) + "."
    ini2 = df.select(
        pl.when(pl.col("initial2").is_not_null())
        .then(pl.lit(ini) + pl.col("initial2") + ".")
        .otherwise(pl.lit(ini))
    ).to_series()
    tv = df["tv"]
    base = df["base"]
    tv_suffix = where(tv == "", "", " " + tv)
    form = weighted_index(rng, n, [45, 15, 10, 15, 15])
    name = where(
        form == 0,
        first + " " + sur,
        where(
            form == 1,
            ini + " " + sur,
            where(
                form == 2,
                ini2 + " " + sur,
                where(
                    form == 3,
                    base + ", " + ini + tv_suffix,
                    sur.str.to_uppercase() + ", " + first.str.to_uppercase(),
                ),
            ),
        ),
    )
    name = space_noise(rng, typo(rng, name, 0.03), 0.03)

    address = df["street"] + " " + house_number(df, rng).str.replace(r"^(\d+)([A-Za-z])", "$1 $2")
    birth = where(mask(rng, n, 0.2), None, df["dob"])
    vat = "NL" + digits(rng.integers(0, 10**9, size=n), 9) + "B01"
    credit = df["credit_limit"] * pl.Series(rng.choice([1.0, 1.0, 1.0, 0.5, 2.0], size=n))

    out = pl.DataFrame(
        {
            "customer_number": ids,
            "name": name,
            "birth_date": birth,
            "email": blank(rng, email_noise(df["email"], rng, 0.03, 0.01), 0.12),
            "phone": blank(rng, phone(df, rng, [3, 4, 5], [40, 25, 35], 0.25), 0.15),
            "address": blank(rng, address, 0.03),
            "zip": blank(rng, postcode(df, rng, 0.4, 0.02), 0.05),
            "city": blank(rng, city(df, rng, 0.2, 0.6), 0.05),
            "country_code": where(
                (df["country"] == "NL").to_numpy() & mask(rng, n, 0.05), None, df["country"]
            ),
            "vat_number": where(mask(rng, n, 0.05), vat, None),
            "credit_limit": credit,
        }
    )
    err = Errors(rng, n, ["email", "phone", "future", "blank_name", "sql", "unusable"])
    out = out.with_columns(
        email=invalid_emails(rng, out["email"], err["email"]),
        phone=invalid_phones(rng, out["phone"], err["phone"]),
        birth_date=scatter(
            out["birth_date"],
            err["future"],
            pl.Series(_future_days(rng, len(err["future"])).astype(np.int32)).cast(pl.Date),
        ),
        name=whitespace_only(rng, sql_junk(rng, out["name"], err["sql"]), err["blank_name"]),
    )
    identity_cols = [
        "name",
        "birth_date",
        "email",
        "phone",
        "address",
        "zip",
        "city",
        "country_code",
    ]
    out = out.with_columns(scatter(out[c], err["unusable"], None).alias(c) for c in identity_cols)
    return out, _truth("erp_customers", ids, df["pid"])


def build_webshop(persons: pl.DataFrame, rows: SourceRows, seed: int):
    """Web shop accounts (JSON lines) and the orders placed with them."""
    rng = stream(seed, "webshop_accounts")
    df = record_view(persons, rows, P_OLD["webshop_accounts"], rng)
    n = len(df)
    # Account creation moment; accounts are numbered in creation order.
    start = (np.datetime64("2015-01-01") - np.datetime64("1970-01-01")).astype(
        int
    ) * _SECONDS_PER_DAY
    created = np.sort(rng.integers(start, _REF_SECONDS - _SECONDS_PER_DAY, size=n))
    ids = _record_ids("W", 10_000 + np.cumsum(rng.integers(1, 4, size=n)), 8)

    first = first_name(df, rng, 0.15, 0.0, 0.1)
    first = case_noise(rng, typo(rng, first, 0.03), 0.01, 0.05)
    last = surname_plain(df)
    u = rng.random(n)
    last = where(
        u < 0.1,
        last.str.to_lowercase(),
        where(u < 0.2, last.str.slice(0, 1).str.to_uppercase() + last.str.slice(1), last),
    )
    last = space_noise(rng, typo(rng, last, 0.03), 0.02)

    dob = df["dob"]
    birth = dob.dt.strftime("%Y-%m-%d")
    birth_state = rng.random(n)  # < 0.25 key missing, < 0.40 null
    gender = df["gender"].replace_strict(
        {"F": "female", "M": "male", "X": "unknown"}, return_dtype=pl.String
    )
    gender = where(mask(rng, n, 0.05), "unknown", gender)

    out = pl.DataFrame(
        {
            "accountId": ids,
            "firstName": blank(rng, first, 0.03),
            "lastName": blank(rng, last, 0.02),
            "email": blank(rng, email_noise(df["email"], rng, 0.03, 0.01), 0.01),
            "mobile": blank(rng, phone(df, rng, [1, 0, 2], [45, 40, 15], 0.0), 0.15),
            "birthDate": where(birth_state < 0.40, None, birth),
            "gender": blank(rng, gender, 0.2),
            "street": blank(rng, df["street"], 0.05),
            "houseNumber": blank(rng, house_number(df, rng), 0.05),
            "zipCode": blank(rng, postcode(df, rng, 0.45, 0.25), 0.05),
            "city": blank(rng, city(df, rng, 0.15, 0.05), 0.05),
            "countryCode": blank(rng, df["country"], 0.05),
            "createdAt": seconds_to_datetime(created).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    err = Errors(
        rng,
        n,
        ["email", "phone", "impossible", "wrong_format", "future", "blank_name", "sql", "unusable"],
    )
    years = dob.dt.year().cast(pl.String)
    r = err["impossible"]
    kind = rng.integers(0, 2, size=len(r))
    impossible = where(
        kind == 0,
        years.gather(r) + "-13-" + dob.gather(r).dt.strftime("%d"),
        years.gather(r) + "-02-30",
    )
    r2 = err["wrong_format"]
    future = _dates_str(_future_days(rng, len(err["future"])), "%Y-%m-%d")
    out = out.with_columns(
        email=invalid_emails(rng, out["email"], err["email"]),
        mobile=invalid_phones(rng, out["mobile"], err["phone"]),
        birthDate=scatter(
            scatter(
                scatter(out["birthDate"], r, impossible), r2, dob.gather(r2).dt.strftime("%d-%m-%Y")
            ),
            err["future"],
            future,
        ),
        lastName=sql_junk(rng, out["lastName"], err["sql"]),
        firstName=whitespace_only(rng, out["firstName"], err["blank_name"]),
    )
    identity_cols = [c for c in out.columns if c not in ("accountId", "createdAt", "countryCode")]
    out = out.with_columns(scatter(out[c], err["unusable"], None).alias(c) for c in identity_cols)
    # Rows where birthDate is absent from the JSON object rather than null.
    drop_key = (birth_state < 0.25) & out["birthDate"].is_null().to_numpy()
    truth = _truth("webshop_accounts", ids, df["pid"])
    orders = build_orders(ids, created, seed)
    return out, drop_key, truth, orders


def build_orders(account_ids: pl.Series, created: np.ndarray, seed: int) -> pl.DataFrame:
    """0..12 orders per account over the three years before the reference date."""
    rng = stream(seed, "webshop_orders")
    n = len(account_ids)
    per_account = np.minimum(rng.geometric(0.42, size=n) - 1, 12)
    acc = np.repeat(np.arange(n), per_account)
    lo = np.maximum(created[acc], _REF_SECONDS - _THREE_YEARS)
    at = lo + np.floor(rng.random(len(acc)) * (_REF_SECONDS - lo)).astype(np.int64)
    order = np.lexsort((acc, at))
    acc, at = acc[order], at[order]
    m = len(acc)
    amount = np.maximum(np.round(rng.lognormal(3.8, 0.8, size=m), 2), 0.99)
    return pl.DataFrame(
        {
            "order_id": _record_ids("ORD", 1 + np.arange(m), 8),
            "account_id": account_ids.gather(acc),
            "order_date": seconds_to_datetime(at),
            "total_amount": pl.Series(amount, dtype=pl.Float64),
            "currency": pl.Series(["EUR"]).gather(np.zeros(m, dtype=np.int64)),
            "channel": choose(rng, m, ["web", "app"], [65, 35]),
        }
    )


def build_tickets(persons: pl.DataFrame, rows: SourceRows, seed: int):
    """Support desk tickets; one identity record per ticket."""
    rng = stream(seed, "support_tickets")
    df = record_view(persons, rows, P_OLD["support_tickets"], rng)
    n = len(df)
    at = _REF_SECONDS - rng.integers(0, _THREE_YEARS, size=n)
    order = np.argsort(at, kind="stable")
    df, at = df[order], at[order]
    ids = _record_ids("T", 200_000 + np.arange(n), 8)

    first = first_name(df, rng, 0.2, 0.0, 0.2)
    sur = surname_plain(df)
    full = first + " " + sur
    title = df["gender"].replace_strict(
        {"F": "mevr. ", "M": "dhr. ", "X": ""}, return_dtype=pl.String
    )
    form = weighted_index(rng, n, [50, 20, 12, 8, 10])
    name = where(
        form == 0,
        full,
        where(
            form == 1,
            first.str.slice(0, 1) + ". " + sur,
            where(
                form == 2,
                full.str.to_lowercase(),
                where(form == 3, title + sur, first + " " + df["base"]),
            ),
        ),
    )
    name = space_noise(rng, typo(rng, name, 0.03), 0.02)

    channel = choose(rng, n, ["email", "phone", "chat"], [45, 35, 20])
    ch = channel.to_numpy()
    u = rng.random(n)
    email_kept = np.where(ch == "email", u < 0.97, u < 0.6)
    phone_kept = np.where(ch == "phone", u < 0.9, u < 0.25)
    out = pl.DataFrame(
        {
            "ticket_id": ids,
            "customer_name": blank(rng, name, 0.03),
            "email": where(email_kept, email_noise(df["email"], rng, 0.05, 0.01), None),
            "phone": where(
                phone_kept,
                phone(df, rng, [0, 1, 2, 3, 4, 5, 6], [25, 20, 15, 10, 5, 10, 15], 0.3),
                None,
            ),
            "created_at": seconds_to_datetime(at).dt.strftime("%Y-%m-%d %H:%M"),
            "channel": channel,
            "subject": choose(rng, n, v.TICKET_SUBJECTS),
        }
    )
    err = Errors(rng, n, ["email", "phone", "blank_name", "sql", "unusable", "no_id"])
    out = out.with_columns(
        email=invalid_emails(rng, out["email"], err["email"]),
        phone=invalid_phones(rng, out["phone"], err["phone"]),
        customer_name=whitespace_only(
            rng, sql_junk(rng, out["customer_name"], err["sql"]), err["blank_name"]
        ),
    )
    out = out.with_columns(
        scatter(out[c], err["unusable"], None).alias(c) for c in ["customer_name", "email", "phone"]
    )
    # Tickets saved before the helpdesk assigned a number: not referenceable, so no truth row.
    out = out.with_columns(ticket_id=scatter(out["ticket_id"], err["no_id"], None))
    keep = np.ones(n, bool)
    keep[err["no_id"]] = False
    truth = _truth(
        "support_tickets", ids.filter(pl.Series(keep)), df["pid"].filter(pl.Series(keep))
    )
    return out, truth


def build_newsletter(persons: pl.DataFrame, rows: SourceRows, seed: int):
    """Newsletter sign-ups (CSV in windows-1252)."""
    rng = stream(seed, "newsletter_signups")
    df = record_view(persons, rows, P_OLD["newsletter_signups"], rng)
    n = len(df)
    day = REF_DAYS - rng.integers(1, 6 * 365, size=n)
    order = np.argsort(day, kind="stable")
    df, day = df[order], day[order]
    ids = _record_ids("NB", 1 + np.arange(n), 7)

    voornaam = first_name(df, rng, 0.2, 0.0, 0.1)
    voornaam = case_noise(rng, typo(rng, voornaam, 0.03), 0.01, 0.1)
    uuid = hex_series(rng, n, 32)
    cookie = (
        uuid.str.slice(0, 8)
        + "-"
        + uuid.str.slice(8, 4)
        + "-"
        + uuid.str.slice(12, 4)
        + "-"
        + uuid.str.slice(16, 4)
        + "-"
        + uuid.str.slice(20)
    )
    # Returning visitors sign up again from the same device.
    device = where(mask(rng, n, 0.7), df["device_id"], hex_series(rng, n, 16))
    out = pl.DataFrame(
        {
            "signup_id": ids,
            "email": blank(rng, email_noise(df["email"], rng, 0.04, 0.01), 0.02),
            "voornaam": blank(rng, voornaam, 0.2),
            "postcode": blank(rng, postcode(df, rng, 0.5, 0.2), 0.4),
            "aanmelddatum": _dates_str(day, "%d/%m/%Y"),
            "opt_in": choose(rng, n, ["ja", "nee"], [85, 15]),
            "cookie_id": cookie,
            "device_id": blank(rng, device, 0.1),
        }
    )
    err = Errors(rng, n, ["email", "blank_name", "sql", "unusable"])
    out = out.with_columns(
        email=invalid_emails(rng, out["email"], err["email"]),
        voornaam=whitespace_only(
            rng, sql_junk(rng, out["voornaam"], err["sql"]), err["blank_name"]
        ),
    )
    out = out.with_columns(
        scatter(out[c], err["unusable"], None).alias(c) for c in ["email", "voornaam", "postcode"]
    )
    return out, _truth("newsletter_signups", ids, df["pid"])
