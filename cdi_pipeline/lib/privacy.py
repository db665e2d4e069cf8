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
import os
import secrets
from pathlib import Path

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


# An email with its local part, or a phone number with all its digits: what a published
# text value must never look like.
UNMASKED_PATTERN = r"^[^*@\s]{2,}@|^\+?[0-9][0-9 \-]{7,}$"


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
