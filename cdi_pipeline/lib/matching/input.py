"""The Splink input: cleaned records read from the warehouse and prepared for matching.

One row per cleaned record, keyed by `source|source_record_id`, with the comparison columns
the model reads and the block keys its blocking rules join on. Generic values (role
addresses, values many records share) are nulled in the block keys: they make huge blocks
and say nothing about who a person is.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import duckdb
import polars as pl

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX
from cdi_pipeline.lib.matching.blocking import without_frequent
from cdi_pipeline.lib.matching.names import MAIL_PREFIXES, misspelt_values, with_surname_from_email
from cdi_pipeline.lib.registry import MatchingConfig
from cdi_pipeline.lib.storage import quote_literal

# Opens a warehouse connection for one `with` block (the warehouse resource's `connect`).
Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]

UNIQUE_ID = "unique_id"

# Columns of the Splink input table, derived from cleaned.customer_records.
MATCH_INPUT_COLUMNS = (
    UNIQUE_ID,
    "source",
    "source_record_id",
    "first_name_key",
    "first_name_canonical",
    "first_name_typo",
    "first_initial",
    "last_name_key",
    "surname_block",
    "surname_block_stem",
    "name_block",
    "name_block_email",
    "name_block_stem",
    "date_of_birth",
    "gender",
    "email",
    "email_local",
    "email_block",
    "phone",
    "phone_type",
    "phone_block",
    "postcode",
    "postcode_block",
    "postcode_area",
    "surname_area_block",
    "surname_initial_block",
    "given_surname_prefix_block",
    "house_number",
    "street_key",
    "city_key",
    "address_block",
)

GENERIC_EMAIL_LOCALS = (
    "info",
    "admin",
    "administratie",
    "sales",
    "contact",
    "office",
    "support",
    "service",
    "klantenservice",
    "noreply",
    "no-reply",
    "test",
    "factuur",
    "facturen",
    "billing",
)


def record_key(source: pl.Expr, record_id: pl.Expr) -> pl.Expr:
    """The node id of a record in every matching table: `source|source_record_id`."""
    return pl.concat_str([source, pl.lit("|"), record_id])


# Columns of cleaned.customer_records the matching input is built from (plus id_* columns).
RECORD_COLUMNS = (
    "source", "source_record_id", "first_name_key", "first_name_canonical", "initials",
    "last_name_key", "date_of_birth", "gender", "email", "phone", "phone_type", "postcode",
    "house_number", "street_key", "city_key",
)


def read_records(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The cleaned columns matching uses, in record-key order (`prepare_input`'s order).

    DuckDB sorts under its memory limit and spills to disk; sorting the prepared frame in
    polars instead would hold two copies of it. The order is the same: both compare strings
    byte by byte, and the record key is unique.
    """
    wanted = ", ".join(quote_literal(c) for c in RECORD_COLUMNS)
    return con.sql(
        f"SELECT COLUMNS(lambda c: c IN ({wanted}) OR starts_with(c, "
        f"{quote_literal(IDENTIFIER_PREFIX)})) FROM cleaned.customer_records "
        "ORDER BY source || '|' || source_record_id"
    ).pl()


def single_chunks(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with each column in one chunk, rewritten one column at a time.

    A frame read from DuckDB arrives in ~100k-row chunks, and the first step that mixes them
    with a column of another chunking makes polars rewrite every column at once, old and new
    side by side. One column at a time, only that column is held twice, and the old one is
    freed when nothing else holds it.
    """
    for name in frame.columns:
        if frame.get_column(name).n_chunks() > 1:
            frame = frame.with_columns(frame.get_column(name).rechunk())
    return frame


# Records a typo-tolerant name block may hold (see prepare_input).
TYPO_BLOCK_SIZE = 10


def prepare_input(
    records: pl.DataFrame, max_block_size: int, max_name_block_size: int = 100,
    *, ordered: bool = True,
) -> pl.DataFrame:
    """The Splink input: one row per cleaned record, with comparison and blocking columns.

    Block keys (`email_block`, `phone_block`, identifiers) are nulled for generic values
    (role addresses, values held by more than `max_block_size` records): such values make
    huge blocks and say nothing about who a person is.

    Name blocks (given name with surname) are nulled when more than `max_name_block_size`
    records share them: a block of n records costs n²/2 comparisons, and the records of a
    very common name still meet through their birth date, postcode, email or phone rules.

    Rows come sorted by record key (`ordered`), so training samples the same records
    whatever order the sources were read in; a caller that only looks records up can skip
    the sort. Records that already come in that order (`read_records` sorts them in the
    database, which spills to disk) are not sorted again: sorting here would copy the whole
    prepared frame.
    """
    identifiers = [c for c in records.columns if c.startswith(IDENTIFIER_PREFIX)]
    email_local = pl.col("email").str.split_exact("@", 1).struct.field("field_0")
    frame = records.select(
        record_key(pl.col("source"), pl.col("source_record_id")).alias(UNIQUE_ID),
        "source",
        "source_record_id",
        "first_name_key",
        "first_name_canonical",
        pl.col("initials").str.slice(0, 1).alias("first_initial"),
        "last_name_key",
        "date_of_birth",
        "gender",
        "email",
        email_local.alias("email_local"),
        "phone",
        "phone_type",
        "postcode",
        # The 4-digit area of a Dutch postcode, or the whole code elsewhere.
        pl.col("postcode").str.extract(r"^(\d{4})", 1).fill_null(pl.col("postcode"))
        .alias("postcode_area"),
        "house_number",
        "street_key",
        "city_key",
        *identifiers,
    )
    # The frame shares the records' columns: a caller that hands them over (no other
    # reference) has them freed column by column below.
    del records
    # Every step below keeps the row order, so sorting first gives the rows sorted last, on
    # fewer columns.
    if ordered:
        frame = (
            frame.with_columns(pl.col(UNIQUE_ID).set_sorted())
            if frame.get_column(UNIQUE_ID).is_sorted() else frame.sort(UNIQUE_ID)
        )
    frame = single_chunks(frame)
    generic_local = pl.col("email_local").is_in(list(GENERIC_EMAIL_LOCALS))
    # A record without a surname is blocked by the surname its e-mail spells (a newsletter
    # sign-up with "Jacobus" and jacobus.blom@... meets "Jacobus Blom" of the CRM); once
    # as written and once without a Dutch prefix run into it ("devries" -> "vries").
    frame = with_surname_from_email(
        frame, where=pl.col("last_name_key").is_null() & ~generic_local, alias="surname_guess"
    )
    # A record with no name at all meets the records of the name its e-mail spells when the
    # local part is two words ("thomas.zonvelde" meets "Thomas Zonvelde"): given name first,
    # as addresses are mostly written.
    nameless = (
        pl.col("first_name_key").is_null() & pl.col("last_name_key").is_null() & ~generic_local
    )
    # Only the few nameless records' local parts are split, and aligned back by row: list
    # work costs per row, however many of the rows are null.
    row, words = "__row", "__words"
    split = (
        frame.lazy().with_row_index(row).filter(nameless)
        .select(row, pl.col("email_local").str.replace_all(r"[0-9]+", "")
                .str.replace_all(r"[._\-]+", " ").str.strip_chars().str.split(" ").alias(words))
        .filter((pl.col(words).list.len() == 2)
                & pl.col(words).list.eval(pl.element().str.len_chars() >= 2).list.all())
        .select(row, pl.col(words).list.get(0, null_on_oob=True).alias("given_guess"),
                pl.col(words).list.get(1, null_on_oob=True).alias(words))
    )
    aligned = (
        frame.lazy().with_row_index(row).select(row)
        .join(split, on=row, how="left", maintain_order="left").collect()
    )
    frame = frame.with_columns(
        aligned.get_column("given_guess"),
        pl.coalesce(aligned.get_column(words), pl.col("surname_guess")).alias("surname_guess"),
    )
    guess = pl.col("surname_guess")
    stem = guess.str.replace(MAIL_PREFIXES, "")
    frame = frame.with_columns(
        pl.coalesce("last_name_key", guess).alias("surname_block"),
        pl.coalesce(
            "last_name_key", pl.when(stem.str.len_chars() >= 3).then(stem).otherwise(guess)
        ).alias("surname_block_stem"),
    ).drop("surname_guess")
    given = {"name_block": pl.col("first_name_canonical")}
    given_or_guess = pl.coalesce("first_name_canonical", "given_guess")
    name_blocks = {
        "name_block": "last_name_key",
        "name_block_email": "surname_block",
        "name_block_stem": "surname_block_stem",
    }
    frame = frame.with_columns([
        pl.concat_str(given.get(block, given_or_guess), pl.lit("|"), surname).alias(block)
        for block, surname in name_blocks.items()
    ]).drop("given_guess")
    # One column at a time, each replacing itself: only one block's counts exist at once.
    for block in name_blocks:
        frame = frame.with_columns(
            without_frequent(frame, block, max_name_block_size).alias(block)
        )
    frame = frame.with_columns(
        pl.when(generic_local.not_()).then(without_frequent(frame, "email", max_block_size))
        .alias("email_block")
    )
    # A full postcode is a street segment: the people at it are few, and a record with
    # nothing else in common (a sign-up with only an email and a postcode) meets the others
    # of its address there.
    for source, block in (("phone", "phone_block"), ("postcode", "postcode_block"),
                          *((c, c) for c in identifiers)):
        frame = frame.with_columns(without_frequent(frame, source, max_block_size).alias(block))
    # Composite keys are capped like the others. Their blocks grow with the data: one street
    # address can hold a care home, a business, or a street name every town has, and a
    # common surname fills a postcode area, so uncapped they make most candidate pairs.
    # Such records still meet through name, birth date, full postcode, email and phone rules.
    frame = frame.with_columns(
        pl.concat_str("last_name_key", pl.lit("|"), "postcode_area").alias("surname_area_block"),
        pl.concat_str("street_key", pl.lit("|"), "house_number", pl.lit("|"), "city_key")
        .alias("address_block"),
    )
    frame = frame.with_columns(
        without_frequent(frame, "surname_area_block", max_name_block_size)
        .alias("surname_area_block")
    )
    frame = frame.with_columns(
        without_frequent(frame, "address_block", max_block_size).alias("address_block")
    )
    # Blocks that survive a typo in one name: a misspelt given name still meets its surname
    # and initial ("srh doherty" / "sarah doherty"), a surname misspelt after its third
    # letter its given name ("tiziano panatea" / "tiziano panatta"). Held to TYPO_BLOCK_SIZE
    # records: they are for rare names, whose records the exact name blocks miss on a typo;
    # a common name's records still meet through birth date, postcode, email and phone.
    # Held to the name-block cap instead, they would add several times the pairs of every
    # other rule together.
    frame = frame.with_columns(
        pl.concat_str("last_name_key", pl.lit("|"), "first_initial")
        .alias("surname_initial_block"),
        pl.concat_str("first_name_canonical", pl.lit("|"),
                      pl.col("last_name_key").str.slice(0, 3))
        .alias("given_surname_prefix_block"),
    )
    for block in ("surname_initial_block", "given_surname_prefix_block"):
        frame = frame.with_columns(
            without_frequent(frame, block, min(TYPO_BLOCK_SIZE, max_name_block_size))
            .alias(block)
        )
    # A misspelt given name says nothing against a record being someone (clustering keeps
    # two clearly different given names apart, but not a typo and another name).
    frame = frame.with_columns(
        pl.col("first_name_key").is_in(misspelt_values(frame, "first_name_key").implode())
        .alias("first_name_typo")
    )
    return frame.select(*MATCH_INPUT_COLUMNS, *identifiers)


def prepared_records(connect: Connect, config: MatchingConfig) -> pl.DataFrame:
    """The Splink input of every cleaned record, read on a connection of its own.

    The records are handed straight to `prepare_input` and never kept, so it frees them
    column by column as the prepared frame grows.
    """
    return prepare_input(_read(connect), config.max_block_size, config.max_name_block_size)


def _read(connect: Connect) -> pl.DataFrame:
    with connect() as con:
        return read_records(con)
