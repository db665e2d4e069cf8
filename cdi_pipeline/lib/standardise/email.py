"""E-mail standardisation: trim, lowercase, validate and correct common domain typos."""

from __future__ import annotations

import polars as pl

from cdi_pipeline.lib.standardise.text import (
    derive_on_unique,
    ensure_utf8_columns,
    keep_previous_issue,
    null_if_empty,
)

# Typos seen in Dutch customer data; keys are lowercase domains, values the intended domain.
DOMAIN_TYPOS: dict[str, str] = {
    "gmial.com": "gmail.com",
    "gamil.com": "gmail.com",
    "gmai.com": "gmail.com",
    "gmal.com": "gmail.com",
    "gmaill.com": "gmail.com",
    "gnail.com": "gmail.com",
    "gmail.con": "gmail.com",
    "gmail.co": "gmail.com",
    "gmail.cm": "gmail.com",
    "gmail.om": "gmail.com",
    "gmail.comm": "gmail.com",
    "googlemail.con": "googlemail.com",
    "hotmial.com": "hotmail.com",
    "hotmal.com": "hotmail.com",
    "hotmai.com": "hotmail.com",
    "hotmil.com": "hotmail.com",
    "hotmali.com": "hotmail.com",
    "hotamil.com": "hotmail.com",
    "hotmail.con": "hotmail.com",
    "hotmail.co": "hotmail.com",
    "hotmail.cm": "hotmail.com",
    "hotmial.nl": "hotmail.nl",
    "hotmal.nl": "hotmail.nl",
    "hotmail.nll": "hotmail.nl",
    "hotmail.n": "hotmail.nl",
    "outlook.con": "outlook.com",
    "outlook.co": "outlook.com",
    "outlok.com": "outlook.com",
    "outllok.com": "outlook.com",
    "outloo.com": "outlook.com",
    "outlok.nl": "outlook.nl",
    "outlook.nll": "outlook.nl",
    "live.con": "live.com",
    "live.nll": "live.nl",
    "yaho.com": "yahoo.com",
    "yahooo.com": "yahoo.com",
    "yahoo.con": "yahoo.com",
    "icloud.con": "icloud.com",
    "iclould.com": "icloud.com",
    "icoud.com": "icloud.com",
    "ziggo.nll": "ziggo.nl",
    "ziggo.n": "ziggo.nl",
    "zigo.nl": "ziggo.nl",
    "kpnmail.n": "kpnmail.nl",
    "kpnmail.nll": "kpnmail.nl",
    "kpnmal.nl": "kpnmail.nl",
    "kpnplanet.n": "kpnplanet.nl",
    "planet.n": "planet.nl",
    "xs4all.n": "xs4all.nl",
    "xs4al.nl": "xs4all.nl",
    "casema.n": "casema.nl",
    "home.n": "home.nl",
    "telfort.n": "telfort.nl",
    "upcmail.n": "upcmail.nl",
    "quicknet.n": "quicknet.nl",
}

# Pragmatic, not RFC 5322: dot-atom local part, dotted domain of LDH labels, alphabetic TLD.
_LOCAL = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_EMAIL_RE = rf"^{_LOCAL}@(?:{_LABEL}\.)+[a-z]{{2,63}}$"
MAX_EMAIL_LENGTH = 254
_TMP = "__em_"


def _derive(df: pl.DataFrame) -> pl.DataFrame:
    """Standardise the distinct e-mail values (column `email`)."""
    trimmed = pl.col(_TMP + "trim")
    lowered = trimmed.str.to_lowercase()
    local = lowered.str.extract(r"^(.*)@[^@]*$")
    domain = lowered.str.extract(r"@([^@]*)$").str.strip_chars_end(".")
    fixed_domain = domain.replace(DOMAIN_TYPOS)
    candidate = pl.col(_TMP + "candidate")
    valid = candidate.str.contains(_EMAIL_RE) & (candidate.str.len_chars() <= MAX_EMAIL_LENGTH)
    return (
        df.lazy()
        .with_columns(
            pl.col("email")
            .str.replace_all(r"[\p{Cc}\p{Cf}]", "")
            .str.strip_chars()
            .alias(_TMP + "trim")
        )
        .with_columns(
            null_if_empty(trimmed).alias(_TMP + "trim"),
        )
        .with_columns(
            pl.concat_str([local, pl.lit("@"), fixed_domain]).alias(_TMP + "fixed"),
            (fixed_domain != domain).fill_null(False).alias(_TMP + "corrected"),
        )
        .with_columns(pl.coalesce(pl.col(_TMP + "fixed"), lowered).alias(_TMP + "candidate"))
        .with_columns(
            pl.when(trimmed.is_null())
            .then(None)
            .when(~valid)
            .then(pl.lit("email_invalid"))
            .alias(_TMP + "issue")
        )
        .with_columns(
            pl.when(pl.col(_TMP + "issue").is_null()).then(candidate).alias(_TMP + "email"),
            pl.when(pl.col(_TMP + "issue").is_null() & pl.col(_TMP + "corrected"))
            .then(trimmed)
            .alias(_TMP + "original"),
        )
        .select(
            "email",
            _TMP + "email",
            _TMP + "original",
            _TMP + "issue",
            pl.col(_TMP + "trim").is_null().alias(_TMP + "was_null"),
        )
        .collect()
    )


def standardise_email(df: pl.DataFrame) -> pl.DataFrame:
    """Trim/lowercase `email`, correct domain typos and flag invalid syntax."""
    df = ensure_utf8_columns(df, ["email"])
    derived = derive_on_unique(df.select("email"), ["email"], _derive)
    original = pl.col(_TMP + "original")
    if "email_original" in df.columns:
        # A second run sees the corrected address and has nothing to correct; keep the
        # original recorded by the first run so that re-running changes nothing.
        original = pl.coalesce(
            original, pl.when(pl.col(_TMP + "email").is_not_null()).then(pl.col("email_original"))
        )
    new_issue = pl.col(_TMP + "issue")
    issue = keep_previous_issue(df, "email_issue", new_issue, pl.col(_TMP + "was_null"))
    out = df.with_columns(derived.drop("email").get_columns()).with_columns(
        pl.col(_TMP + "email").alias("email"),
        original.cast(pl.Utf8).alias("email_original"),
        pl.col(_TMP + "email").str.extract(r"@(.*)$").alias("email_domain"),
        issue.alias("email_issue"),
    )
    return out.drop([c for c in out.columns if c.startswith(_TMP)])
