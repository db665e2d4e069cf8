"""The Splink model specification, derived from which canonical fields the data populates.

A source set with only names and birth dates gets a model of names and birth dates; one with
everything gets every comparison. The same derivation chooses blocking rules (for recall
across fields) and EM training rules (on fields that stay sound at scale: at a million
records EM blocked on names converged to m(exact birth date) = 0.15 and one giant cluster,
while EM on date of birth and on email did not).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import duckdb
import polars as pl
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import SettingsCreator, block_on

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX
from cdi_pipeline.lib.storage import quote_literal

UNIQUE_ID = "unique_id"
# A field counts as populated when at least this share of records carries it; below that
# its comparison has too few observations for EM to estimate m reliably.
MIN_COVERAGE = 0.02

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


# Dutch surname prefixes as they run together in an e-mail local part ("annavanderveen").
_MAIL_PREFIXES = r"^(?:van|von|de[nr]?|het|te[nr]?|in|op|uit|t)+"


def with_surname_from_email(
    frame: pl.DataFrame,
    *,
    local: str = "email_local",
    first_name: str = "first_name_key",
    canonical: str = "first_name_canonical",
    where: pl.Expr | None = None,
    alias: str = "surname_guess",
) -> pl.DataFrame:
    """`frame` plus `alias`: the surname its e-mail local part most likely spells.

    "jacobus.blom", "blom.jacobus", "jacobusblom78" and "j.blom" all give "blom": digits go,
    tokens equal to the given name (or its canonical form) or a single letter go, and a local
    part without separators loses the given name it starts or ends with (the longer name
    first, then the given name before its canonical form; a prefix before a suffix) when at
    least 3 characters remain. The longest token left is the guess, the first of equally long
    ones; null when the record has no given name to tell the parts apart, or outside `where`.
    Set-wise: the tokens are exploded to one row each and grouped back per record.
    """
    row, tok, pos, size = "__row", "__token", "__pos", "__size"
    name_a, name_b = "__name_a", "__name_b"
    framed = frame.with_row_index(row)
    tokens = (
        pl.col(local).str.replace_all(r"[0-9]+", "")
        .str.replace_all(r"[._+\-]+", " ")
        .str.strip_chars()
        .str.split(" ")
        .list.eval(pl.element().filter(pl.element().str.len_chars() >= 2))
    )
    first = pl.col(first_name)
    # Names in the order they are tried: the longer first, the given name on a tie; an empty
    # canonical form is no name.
    canon = pl.when(pl.col(canonical) != "").then(pl.col(canonical))
    canon_longer = canon.str.len_chars() > first.str.len_chars()
    # Lazy, so only the rows in `where` and the columns the guess needs are ever copied: an
    # eager filter copied every column of the frame first (at ten million records, a GiB).
    candidates = (framed.lazy() if where is None else framed.lazy().filter(where)).select(
        row,
        tokens.alias(tok),
        first.alias(first_name),
        pl.when(canon_longer).then(canon).otherwise(first).alias(name_a),
        pl.when(canon_longer).then(first).otherwise(canon).alias(name_b),
    ).collect()
    candidates = candidates.filter(
        (pl.col(first_name) != "").fill_null(False) & (pl.col(tok).list.len() > 0).fill_null(False)
    ).with_columns(pl.col(tok).list.len().alias(size))

    t = pl.col(tok)
    length = t.str.len_chars()

    def strip(name: str, otherwise: pl.Expr) -> pl.Expr:
        n = pl.col(name)
        n_len = n.str.len_chars()
        room = (length - n_len >= 3).fill_null(False)
        return (
            pl.when(room & t.str.starts_with(n).fill_null(False)).then(t.str.slice(n_len))
            .when(room & t.str.ends_with(n).fill_null(False)).then(t.str.slice(0, length - n_len))
            .otherwise(otherwise)
        )

    guesses = (
        candidates.explode(tok)
        .with_columns(pl.int_range(pl.len()).over(row).alias(pos))
        .filter((t != pl.col(name_a)) & (t != pl.col(name_b)).fill_null(True))
        # A lone token that is not the given name itself may still have it run into it.
        .with_columns(
            pl.when(pl.col(size) == 1).then(strip(name_a, strip(name_b, t))).otherwise(t).alias(tok)
        )
        .group_by(row)
        .agg(t.sort_by(length, pl.col(pos), descending=[True, False]).first().alias(alias))
    )
    # Only the guess column is aligned back: joining the whole frame would copy every column
    # (at ten million records, gigabytes) to add one.
    aligned = framed.select(row).join(guesses, on=row, how="left", maintain_order="left")
    return frame.with_columns(aligned.get_column(alias))


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
    polars instead held two copies of it (3.4 GiB more at ten million records). The order is
    the same: both compare strings byte by byte, and the record key is unique.
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
    side by side (3 GiB more at ten million records). One column at a time, only that column
    is held twice, and the old one is freed when nothing else holds it.
    """
    for name in frame.columns:
        if frame.get_column(name).n_chunks() > 1:
            frame = frame.with_columns(frame.get_column(name).rechunk())
    return frame


def frequent_values(frame: pl.DataFrame, column: str, more_than: int) -> pl.Series:
    """The non-null values of `column` held by more than `more_than` rows.

    A group-by per column, run one at a time: `pl.len().over(column)` built the row groups of
    every window at once and kept them all until the last was done (GiBs at ten million
    records), where only a handful of values is ever over the limit.
    """
    return (
        frame.lazy().select(column).drop_nulls().group_by(column).len()
        .filter(pl.col("len") > more_than).select(column).collect().to_series()
    )


def without_frequent(frame: pl.DataFrame, column: str, more_than: int) -> pl.Expr:
    """`column`, null where its value is held by more than `more_than` rows of `frame`.

    (A null stays null, as it would whatever its count.)
    """
    frequent = frequent_values(frame, column, more_than).implode()
    return pl.when(pl.col(column).is_in(frequent).not_()).then(pl.col(column))


# Records a typo-tolerant name block may hold (see prepare_input).
TYPO_BLOCK_SIZE = 10

# A given name one edit away from a name at least this many times as common in the input is
# taken for a misspelling of it.
TYPO_FREQUENCY_RATIO = 3


def misspelt_values(frame: pl.DataFrame, column: str,
                    ratio: float = TYPO_FREQUENCY_RATIO) -> pl.Series:
    """The values of `column` that look like misspellings of a more common value.

    A value is one edit (a letter replaced, dropped, added, or two neighbours swapped) from
    a value held by at least `ratio` times as many rows: "cornlis" next to "cornelis",
    "priua" next to "priya". Found set-wise on the distinct values (symmetric deletion: two
    values one edit apart share a key made by deleting at most one letter of each), so the
    cost grows with the number of distinct names, not of records. A rare real name next to
    a common one ("anne" beside "anna") is caught too: such a name only loses the weight
    of a conflict, never makes one.
    """
    counts = frame.lazy().select(column).drop_nulls().group_by(column).len().collect()
    length = pl.col(column).str.len_chars()
    longest = int(counts.select(length.max()).item() or 0)
    keys = pl.concat([
        counts.with_columns(pl.col(column).alias("__key")),
        *[
            counts.filter(length > i).with_columns(
                (pl.col(column).str.slice(0, i) + pl.col(column).str.slice(i + 1))
                .alias("__key")
            )
            for i in range(longest)
        ],
    ]).unique([column, "__key"])
    near = keys.join(keys, on="__key", suffix="_o").filter(
        (pl.col(column) != pl.col(f"{column}_o")) & (pl.col("len_o") >= ratio * pl.col("len"))
    )
    return near.select(column).unique().get_column(column)


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
    database, which spills to disk) are not sorted again: at ten million records sorting
    here copied the whole prepared frame (3.4 GiB).
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
    # work over a million rows, however many of them null, took half a second.
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
    stem = guess.str.replace(_MAIL_PREFIXES, "")
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
    # Composite keys are capped like the others. Their blocks grow with the data: at ten
    # million records one street address held 1,037 records (a care home, a business, or a
    # street name every town has) and one surname 456 records in one postcode area; the two
    # rules made 326 of the 459 million candidate pairs. Such records still meet through
    # name, birth date, full postcode, email and phone rules.
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
    # a common name's records still meet through birth date, postcode, email and phone. At
    # a million records the name-block cap let them add 11 million pairs to 4 (matching
    # 36% slower); at 10 they add about a million.
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


def coverage(frame: pl.DataFrame) -> dict[str, float]:
    """Share of records carrying each input column."""
    n = max(frame.height, 1)
    counts = frame.select(pl.all().count()).row(0, named=True)
    return {name: counts[name] / n for name in frame.columns}


@dataclass(frozen=True)
class ModelSpec:
    """What the model compares, how pairs are blocked, and which rules train it."""

    comparisons: list[str]
    blocking_rules: list[list[str]]
    training_rules: list[list[str]]
    identifiers: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """A hash of the spec: a saved model is reused only when this still matches.

        It covers every comparison level's SQL, so a changed comparison retrains too.
        """
        untrained = splink_settings(self, 1e-4).create_settings_dict("duckdb")
        payload = json.dumps(
            {
                "comparisons": [
                    [lv["sql_condition"] for lv in c["comparison_levels"]]
                    for c in untrained["comparisons"]
                ],
                "blocking": self.blocking_rules,
                "training": self.training_rules,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def derive_spec(frame: pl.DataFrame, training_rules: list[list[str]] | None = None) -> ModelSpec:
    """Choose comparisons, blocking rules and EM training rules from populated fields."""
    cov = coverage(frame)

    def has(*cols: str) -> bool:
        return all(cov.get(c, 0.0) >= MIN_COVERAGE for c in cols)

    comparisons: list[str] = []
    if has("first_initial"):
        comparisons.append("first_name")
    if has("last_name_key"):
        comparisons.append("last_name")
    if has("date_of_birth"):
        comparisons.append("date_of_birth")
    if has("gender"):
        comparisons.append("gender")
    if has("email"):
        comparisons.append("email")
    if has("phone"):
        comparisons.append("phone")
    if has("house_number") and (has("postcode") or has("street_key")):
        comparisons.append("address")
    elif has("postcode"):
        # Without house numbers a postcode is all the address there is: levels that need a
        # number would never be observed, and EM could not estimate them.
        comparisons.append("postcode")
    # An identifier no two records share can never agree, so EM could not learn its m.
    shared = frame.select(
        (pl.col(c).is_not_null() & pl.col(c).is_duplicated()).sum()
        for c in frame.columns
        if c.startswith(IDENTIFIER_PREFIX)
    )
    identifiers = [c for c in shared.columns if has(c) and shared.get_column(c).item() >= 2]
    comparisons += identifiers
    if len(comparisons) < 2:
        raise ValueError(
            "matching needs at least two populated fields among names, date of birth, gender, "
            f"email, phone, address and identifiers; populated: {comparisons or 'none'}"
        )

    candidates: list[list[str]] = [
        ["email_block"],
        ["phone_block"],
        ["email_local", "first_initial"],
        ["name_block"],
        ["name_block_email"],
        ["name_block_stem"],
        ["surname_initial_block"],
        ["given_surname_prefix_block"],
        ["last_name_key", "date_of_birth"],
        ["first_name_canonical", "date_of_birth"],
        ["date_of_birth", "postcode_area"],
        ["postcode", "house_number"],
        ["surname_area_block"],
        ["first_name_canonical", "postcode"],
        ["postcode_block"],
        ["address_block"],
        *[[c] for c in identifiers],
    ]
    blocking = [rule for rule in candidates if has(*rule)]
    if not blocking:
        raise ValueError("no blocking rule has its fields populated; matching cannot run")

    if training_rules is None:
        # Each comparison must be estimated by at least one session: a session cannot
        # estimate the comparisons its own blocking columns belong to, hence two sessions.
        pool = [["date_of_birth"], ["email"], ["phone"], ["postcode"], ["last_name_key"]]
        training_rules = [rule for rule in pool if has(*rule)][:2]
    if len(training_rules) < 1:
        raise ValueError("no field suitable for EM training is populated")
    return ModelSpec(comparisons, blocking, training_rules, identifiers)


# m of "birth dates far apart" is fixed, not trained: among pairs EM blocks on a shared email
# it is mostly families, EM drives it to a denormal Splink rejects, and such pairs are never
# linked anyway (birth_date_conflict_blocks_link). 1% of true matches is a safe prior.
BIRTH_DATE_DISAGREE_M = 0.01


class _BirthDate(cl.DateOfBirthComparison):
    """Splink's date-of-birth comparison with the disagreement level's m fixed."""

    def create_comparison_levels(self):
        levels = super().create_comparison_levels()
        levels[-1] = levels[-1].configure(
            m_probability=BIRTH_DATE_DISAGREE_M, fix_m_probability=True
        )
        return levels


def _swapped_names() -> list:
    """Given name and surname written the other way round ("Morrison Robin" / "Robin
    Morrison"): a level of both name comparisons, so neither counts the swap as a
    disagreement; EM weighs how often the fields are swapped in this data."""
    return [cll.CustomLevel(
        "first_name_key_l = last_name_key_r AND last_name_key_l = first_name_key_r",
        label_for_charts="Given name and surname swapped",
    )]


def _comparison(name: str, both_names: bool = False):
    """The Splink comparison for one spec entry (`both_names`: the spec compares given name
    and surname, so a swap of the two can be seen)."""
    swapped = _swapped_names() if both_names else []
    if name == "first_name":
        return cl.CustomComparison(
            output_column_name="first_name",
            comparison_description="Given name: exact, nickname, similar, same initial",
            comparison_levels=[
                cll.CustomLevel(
                    "(first_name_key_l IS NULL AND length(first_name_key_r) >= 3 "
                    "AND contains(email_local_l, first_name_key_r)) OR "
                    "(first_name_key_r IS NULL AND length(first_name_key_l) >= 3 "
                    "AND contains(email_local_r, first_name_key_l))",
                    label_for_charts="Given name missing on one side but in its email",
                    base_dialect_str="duckdb",
                ),
                cll.NullLevel("first_initial"),
                cll.ExactMatchLevel("first_name_key", term_frequency_adjustments=True),
                *swapped,
                cll.ExactMatchLevel("first_name_canonical").configure(
                    label_for_charts="Same name via nickname table"
                ),
                cll.JaroWinklerLevel("first_name_key", 0.9),
                cll.ExactMatchLevel("first_initial").configure(
                    label_for_charts="Same first initial"
                ),
                cll.ElseLevel(),
            ],
        )
    if name == "last_name":
        # A record without a surname often still has it in its email ("annavanderveen@..."),
        # which is the only way to tie a newsletter sign-up to a surname.
        in_email = cll.CustomLevel(
            "(last_name_key_l IS NULL AND length(last_name_key_r) >= 4 "
            "AND contains(email_local_l, last_name_key_r)) OR "
            "(last_name_key_r IS NULL AND length(last_name_key_l) >= 4 "
            "AND contains(email_local_r, last_name_key_l))",
            label_for_charts="Surname missing on one side but in its email",
            base_dialect_str="duckdb",
        )
        # "dekoning" vs "koning", "bosmanvandenberg" vs "berg": a prefix or double name
        # written into the surname.
        suffix = cll.CustomLevel(
            "(length(last_name_key_r) >= 4 AND suffix(last_name_key_l, last_name_key_r)) OR "
            "(length(last_name_key_l) >= 4 AND suffix(last_name_key_r, last_name_key_l))",
            label_for_charts="One surname ends with the other",
            base_dialect_str="duckdb",
        )
        return cl.CustomComparison(
            output_column_name="last_name",
            comparison_description="Surname (without prefix): exact, similar, part of the other",
            comparison_levels=[
                in_email,
                cll.NullLevel("last_name_key"),
                cll.ExactMatchLevel("last_name_key", term_frequency_adjustments=True),
                *swapped,
                cll.JaroWinklerLevel("last_name_key", 0.92),
                suffix,
                cll.JaroWinklerLevel("last_name_key", 0.8),
                cll.ElseLevel(),
            ],
        )
    if name == "date_of_birth":
        return _BirthDate(
            "date_of_birth",
            input_is_string=False,
            datetime_thresholds=[1, 1, 10],
            datetime_metrics=["month", "year", "year"],
        )
    if name == "gender":
        return cl.ExactMatch("gender")
    if name == "email":
        # Local parts are usually built from the person's name, so "similar local part" mostly
        # re-counts the name comparison and makes namesakes look alike. Only a local part
        # with digits in it ("lvink490") is specific enough to count across domains.
        return cl.CustomComparison(
            output_column_name="email",
            comparison_description="Email: exact, same specific local part at another domain",
            comparison_levels=[
                cll.NullLevel("email"),
                cll.ExactMatchLevel("email", term_frequency_adjustments=True),
                cll.And(
                    cll.ExactMatchLevel("email_local"),
                    cll.CustomLevel(
                        "regexp_matches(email_local_l, '[0-9]')", base_dialect_str="duckdb"
                    ),
                ).configure(label_for_charts="Same local part with digits, other domain"),
                cll.ElseLevel(),
            ],
        )
    if name == "phone":
        return cl.CustomComparison(
            output_column_name="phone",
            comparison_description="Phone (E.164): exact, one digit apart",
            comparison_levels=[
                cll.NullLevel("phone"),
                cll.ExactMatchLevel("phone", term_frequency_adjustments=True),
                cll.LevenshteinLevel("phone", 1),
                cll.ElseLevel(),
            ],
        )
    if name == "address":
        return cl.CustomComparison(
            output_column_name="address",
            comparison_description="Address: postcode + number, street + number, postcode, area",
            comparison_levels=[
                cll.CustomLevel(
                    "(postcode_l IS NULL OR postcode_r IS NULL) "
                    "AND (street_key_l IS NULL OR street_key_r IS NULL)",
                    label_for_charts="No address on one side",
                ).configure(is_null_level=True),
                cll.And(
                    cll.ExactMatchLevel("postcode"), cll.ExactMatchLevel("house_number")
                ).configure(label_for_charts="Same postcode and house number"),
                cll.And(
                    cll.ExactMatchLevel("street_key"),
                    cll.ExactMatchLevel("house_number"),
                    cll.ExactMatchLevel("city_key"),
                ).configure(label_for_charts="Same street, number and city"),
                cll.ExactMatchLevel("postcode", term_frequency_adjustments=True),
                cll.ExactMatchLevel("postcode_area"),
                cll.ElseLevel(),
            ],
        )
    if name == "postcode":
        return cl.CustomComparison(
            output_column_name="postcode",
            comparison_description="Postcode: exact, same area",
            comparison_levels=[
                cll.NullLevel("postcode"),
                cll.ExactMatchLevel("postcode", term_frequency_adjustments=True),
                cll.ExactMatchLevel("postcode_area"),
                cll.ElseLevel(),
            ],
        )
    if name.startswith(IDENTIFIER_PREFIX):
        return cl.ExactMatch(name)
    raise ValueError(f"unknown comparison {name!r}")


# EM's iteration cap and tolerance (matching.em_max_iterations, matching.em_convergence). On
# noisy data with few fields EM can need far more than a handful of iterations to settle.
EM_MAX_ITERATIONS = 100
EM_CONVERGENCE = 0.0001


def splink_settings(
    spec: ModelSpec, probability_two_random_records_match: float, *,
    max_iterations: int = EM_MAX_ITERATIONS, em_convergence: float = EM_CONVERGENCE,
):
    """Splink SettingsCreator for a spec (dedupe across all sources at once)."""
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name=UNIQUE_ID,
        probability_two_random_records_match=probability_two_random_records_match,
        comparisons=[
            _comparison(name, both_names={"first_name", "last_name"} <= set(spec.comparisons))
            for name in spec.comparisons
        ],
        blocking_rules_to_generate_predictions=[block_on(*r) for r in spec.blocking_rules],
        retain_intermediate_calculation_columns=True,
        retain_matching_columns=True,
        additional_columns_to_retain=["source", "source_record_id"],
        max_iterations=max_iterations,
        em_convergence=em_convergence,
    )
