"""Pseudonymisation and masking for what leaves the pipeline (the analyst file, suppression).

Direct identifiers are either masked for reading (`j***@example.com`) or replaced by a keyed
hash, so analysts can count and join on them without seeing them. The key comes from the
environment (`CDI_PSEUDONYM_KEY`); without it, a random key is created once in the warehouse
folder (never in the repository) so a fresh `make run` works. Keep the key stable: a new key
gives every customer new hashes, and the erasure suppression list is only readable with the
key it was written with.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

import polars as pl

# Canonical fields that identify a person: masked wherever values reach Dagster's event log
# (previews, check examples, error messages), which erasure cannot reach.
PERSONAL_FIELDS = frozenset({
    "first_name", "last_name", "full_name", "date_of_birth", "email", "phone", "street",
    "house_number",
})
SHAPE_NOTE = "values shown by shape: letters as A/a, digits as 9"

KEY_ENV = "CDI_PSEUDONYM_KEY"
KEY_FILE = ".pseudonym_key"
MIN_KEY_LENGTH = 16


class PseudonymKeyError(ValueError):
    """The pseudonymisation key is missing or too weak."""


def pseudonym_key(root: Path) -> str:
    """The key for keyed hashes: environment first, else the warehouse's own key file."""
    env = os.environ.get(KEY_ENV)
    if env is not None:
        if len(env) < MIN_KEY_LENGTH:
            raise PseudonymKeyError(
                f"{KEY_ENV} is set but shorter than {MIN_KEY_LENGTH} characters; use e.g. "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        return env
    path = root / KEY_FILE
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: two processes racing to create the key must not end up with two keys.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_hex(32))
    return path.read_text(encoding="utf-8").strip()


def key_fingerprint(key: str) -> str:
    """A short, non-reversible name for a key (to tell which key wrote a hash)."""
    return hashlib.sha256(("fingerprint:" + key).encode()).hexdigest()[:12]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def keyed_hash_sql(value_sql: str, key: str) -> str:
    """SQL for a keyed SHA-256 of a text value (null stays null).

    Nested keying, sha256(k || sha256(k || v)), because DuckDB has no HMAC; the outer hash
    also rules out length-extension on the inner one.
    """
    k = _literal(key)
    return (
        f"CASE WHEN ({value_sql}) IS NULL THEN NULL ELSE "
        f"sha256({k} || ':' || sha256({k} || ':' || CAST(({value_sql}) AS VARCHAR))) END"
    )


def mask_email_sql(column_sql: str) -> str:
    """'jan.jansen@example.com' -> 'j***@example.com'."""
    return (
        f"CASE WHEN {column_sql} IS NULL THEN NULL ELSE "
        f"left({column_sql}, 1) || '***@' || split_part({column_sql}, '@', 2) END"
    )


def mask_phone_sql(column_sql: str) -> str:
    """'+31612345678' -> '+31*******78' (country code and the last two digits)."""
    return (
        f"CASE WHEN {column_sql} IS NULL THEN NULL ELSE left({column_sql}, 3) || "
        f"repeat('*', greatest(length({column_sql}) - 5, 0)) || right({column_sql}, 2) END"
    )


def value_shape(expr: pl.Expr, max_chars: int = 40) -> pl.Expr:
    """A value's shape for the event log: letters as A/a, digits as 9, the rest kept.

    "31-02-1990" becomes "99-99-9999" and "jan@@example" "aaa@@aaaaaaa": enough to see why a
    rule fired without writing the person's value where erasure cannot reach it.
    """
    return (
        expr.cast(pl.String).str.slice(0, max_chars)
        # Lower case first: the "A"s written for capitals must not be taken for letters again.
        .str.replace_all(r"[\p{Ll}\p{Lo}\p{Lm}]", "a").str.replace_all(r"[\p{Lu}\p{Lt}]", "A")
        .str.replace_all(r"\p{N}", "9")
    )


def delivered_shapes(values: pl.Series) -> pl.Series:
    """`value_shape` of a few delivered values, for examples in metadata.

    A held-back record is stored as a JSON object: it keeps its keys and shows its non-empty
    values by shape ("email: Aaa.Aaaa@@aaaaaaa"), where shaping the JSON text as a whole
    would hide which field was which.
    """
    parts: list[tuple[int, str | None, str]] = []
    for row, text in enumerate(values.to_list()):  # a handful of examples, not a data path
        try:
            parsed = json.loads(text) if text and text.lstrip().startswith("{") else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            parts += [(row, key, str(value)) for key, value in parsed.items()
                      if value not in (None, "")]
        elif text is not None:
            parts.append((row, None, text))
    shaped = (
        pl.DataFrame(parts, schema={"row": pl.Int64, "key": pl.String, "value": pl.String},
                     orient="row")
        .with_columns(value_shape(pl.col("value")))
        .group_by("row", maintain_order=True)
        .agg(pl.when(pl.col("key").is_null()).then(pl.col("value"))
             .otherwise(pl.col("key") + ": " + pl.col("value")).str.join(", "))
    )
    return (pl.DataFrame({"row": range(values.len())}, schema={"row": pl.Int64})
            .join(shaped, on="row", how="left").get_column("value").alias(values.name))
