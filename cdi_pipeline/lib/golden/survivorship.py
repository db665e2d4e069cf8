"""Golden records: one row per customer, each value chosen by configured survivorship rules.

Every golden field is a group of columns that must come from one record (an address is
street, number, postcode and city of the same record, never a mix). For each customer and
field the records that hold a value are candidates; they are ranked by the field's rules in
order, then by source and record id so that a full tie still has one reproducible winner.

The lineage row of a value says which record supplied it, which rule put it ahead of the
best candidate with a *different* value (the runner-up), and how confident matching was that
the supplying record belongs to the customer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import polars as pl

from cdi_pipeline.lib.registry import GoldenConfig
from cdi_pipeline.lib.standardise.phone import phone_display
from cdi_pipeline.lib.storage import quote_identifier


@dataclass(frozen=True)
class SurvivorshipField:
    """A golden field: the columns it supplies, how values compare, how complete they are."""

    name: str
    columns: tuple[str, ...]
    key: pl.Expr
    completeness: pl.Expr


def _non_null(*columns: str) -> pl.Expr:
    return pl.sum_horizontal(pl.col(c).is_not_null().cast(pl.Int32) for c in columns)


# key: values with the same key are the same value (counted together by most_frequent);
# completeness: larger is more complete (a full given name beats an initial).
FIELDS: dict[str, SurvivorshipField] = {
    f.name: f
    for f in (
        SurvivorshipField(
            "first_name",
            ("first_name", "first_name_key"),
            pl.col("first_name_key"),
            pl.col("first_name_key").str.len_chars(),
        ),
        SurvivorshipField(
            "last_name",
            ("name_prefix", "last_name", "last_name_key"),
            pl.concat_str(
                pl.col("name_prefix").fill_null(""), pl.lit("|"), pl.col("last_name_key")
            ),
            _non_null("name_prefix", "last_name") * 100 + pl.col("last_name").str.len_chars(),
        ),
        SurvivorshipField(
            "date_of_birth", ("date_of_birth",), pl.col("date_of_birth").cast(pl.String), pl.lit(1)
        ),
        SurvivorshipField("gender", ("gender",), pl.col("gender"), pl.lit(1)),
        SurvivorshipField("email", ("email",), pl.col("email"), pl.lit(1)),
        SurvivorshipField("phone", ("phone", "phone_type"), pl.col("phone"), pl.lit(1)),
        SurvivorshipField(
            "address",
            ("street", "house_number", "house_number_addition", "postcode", "city", "country"),
            # An address is usable with a postcode (NL: postcode + number pins the building)
            # or a street; city or country alone says too little to win over anything.
            pl.when(pl.col("postcode").is_not_null() | pl.col("street_key").is_not_null()).then(
                pl.concat_str(
                    [
                        pl.col(c).fill_null("")
                        for c in ("street_key", "house_number", "house_number_addition",
                                  "postcode", "city_key")
                    ],
                    separator="|",
                )
            ),
            _non_null("street", "house_number", "postcode", "city"),
        ),
    )
}

# Cleaned columns the golden layer reads.
GOLDEN_INPUT_COLUMNS = tuple(
    dict.fromkeys(
        [
            "source", "source_record_id", "trust", "loaded_at", "street_key", "city_key",
            *(c for f in FIELDS.values() for c in f.columns),
        ]
    )
)

# How each rule orders candidates: (sort key expression, descending?).
_RULE_ORDER: dict[str, tuple[str, bool]] = {
    "trust": ("trust", False),
    "most_recent": ("observed_at", True),
    "most_complete": ("completeness", True),
    "most_frequent": ("frequency", True),
}

FIELD_LINEAGE_COLUMNS = {
    "customer_id": "Customer the value belongs to.",
    "field": "Golden column the row explains.",
    "field_group": "Survivorship field the column belongs to (its columns come from one record).",
    "value": "The golden value, as text.",
    "source": "Source system of the record that supplied it.",
    "source_record_id": "Record id, in that source, of the record that supplied it.",
    "rule": "Rule that put the value ahead of the runner-up (trust, most_recent, "
    "most_complete, most_frequent); unanimous when every candidate agrees, tie_break when "
    "all rules tie and source/record id decided.",
    "rules_configured": "The field's rules in the order they are tried.",
    "runner_up_value": "Best candidate with a different value (null when all agree).",
    "runner_up_source": "Source of the runner-up record.",
    "runner_up_source_record_id": "Record id of the runner-up record.",
    "candidates": "Records of the customer that offered a value for the field.",
    "agreeing": "Records that offered the winning value.",
    "match_confidence": "Match confidence of the supplying record (null for a one-record "
    "customer).",
    "observed_at": "Day the supplying record was last seen: its own event date, else the "
    "day its file was loaded.",
}

CUSTOMER_COLUMNS = {
    "customer_id": "Stable customer id (see matching.customer_xref).",
    "first_name": "Given name for display (proper case).",
    "first_name_key": "Given name match key (lower case, accents folded).",
    "name_prefix": "Surname prefix (tussenvoegsel), lower case, e.g. 'van der'.",
    "last_name": "Surname for display, without the prefix.",
    "last_name_key": "Surname match key (lower case, accents folded, no prefix).",
    "last_name_display": "Surname with its prefix for display, e.g. 'van der Berg'.",
    "date_of_birth": "Date of birth.",
    "gender": "Gender: F, M or X.",
    "email": "Email address (lower case).",
    "phone": "Phone number in E.164, e.g. +31612345678.",
    "phone_type": "Line type of the phone: mobile, fixed_line or other.",
    "phone_display": "Phone formatted for people, e.g. +31 6 1234 5678.",
    "street": "Street name for display.",
    "house_number": "House number, digits only.",
    "house_number_addition": "House number addition, e.g. A, 2, BIS.",
    "postcode": "Postcode for display, NL as '1234 AB'.",
    "postcode_key": "Postcode without spaces, upper case, for joins ('1234AB').",
    "city": "City for display.",
    "country": "ISO 3166 alpha-2 country code.",
    "records": "Source records of the customer.",
    "sources": "Distinct sources holding a record of the customer.",
    "source_list": "Names of those sources, comma-separated.",
    "first_seen_at": "Earliest moment any of the customer's records was seen.",
    "last_seen_at": "Latest moment any of the customer's records was seen.",
}

# Golden columns derived from survived columns: their lineage is that of their field.
_DERIVED = {
    "last_name_display": "last_name",
    "phone_display": "phone",
    "postcode_key": "address",
}
# Columns that summarise the cluster rather than carry a source value (no lineage row).
CLUSTER_SUMMARY_COLUMNS = ("customer_id", "records", "sources", "source_list", "first_seen_at",
                           "last_seen_at")


@dataclass(frozen=True)
class GoldenResult:
    """The golden customers and the lineage of every non-null value in them."""

    customers: pl.DataFrame
    rule_counts: pl.DataFrame
    _customers_keyed: pl.DataFrame
    _base: pl.DataFrame
    _parts: list

    def lineage_batches(self) -> Iterator[pl.DataFrame]:
        """The lineage one field at a time (at a million records the whole table is several
        million rows; written batch by batch it is never whole in memory)."""
        for part in self._parts:
            yield _lineage(self._customers_keyed, self._base, [part])

    @property
    def lineage(self) -> pl.DataFrame:
        """The whole lineage, ordered by customer and column."""
        return _sort_lineage(_lineage(self._customers_keyed, self._base, self._parts,
                                      keep_order=True))


def _candidates(
    base: pl.DataFrame, field: SurvivorshipField, rules: tuple[str, ...]
) -> pl.DataFrame:
    """Candidates of one field, best first within each customer (`cid`)."""
    sort_cols = [_RULE_ORDER[r][0] for r in rules]
    descending = [_RULE_ORDER[r][1] for r in rules]
    # Integer customer and record keys: sorting 1M rows on them is several times cheaper
    # than on the id strings, and `rid` follows (source, source_record_id) for tie-breaks.
    # Only the columns `_decide` reads: the sort then moves a few numbers per row instead of
    # every record column (the values are fetched by `rid` for the winners alone).
    return (
        base.lazy()
        .select(
            "cid", "rid", "trust", "observed_at", "match_confidence",
            field.key.alias("key"), field.completeness.cast(pl.Int64).alias("completeness"),
        )
        .filter(pl.col("key").is_not_null())
        .with_columns(pl.len().over("cid", "key").alias("frequency"))
        .sort(
            ["cid", *sort_cols, "rid"],
            descending=[False, *descending, False],
            nulls_last=True,
        )
        .with_columns(pl.len().over("cid").alias("candidates"))
        .collect()
    )


def _decide(ranked: pl.DataFrame, rules: tuple[str, ...]) -> pl.DataFrame:
    """Per customer: the winner, the runner-up and the rule that separated them."""
    rule_cols = list(dict.fromkeys(_RULE_ORDER[r][0] for r in rules))
    winners = ranked.unique("cid", keep="first", maintain_order=True).select(
        "cid", "rid", "observed_at", "match_confidence", "candidates",
        pl.col("frequency").alias("agreeing"),
        *(pl.col(c).alias(f"_win_{c}") for c in rule_cols),
    )
    runner_up = (
        ranked.filter(pl.col("key") != pl.col("key").first().over("cid"))
        .unique("cid", keep="first", maintain_order=True)
        .select(
            "cid",
            pl.col("rid").alias("runner_up_rid"),
            *(pl.col(c).alias(f"_ru_{c}") for c in rule_cols),
        )
    )
    decided = winners.join(runner_up, on="cid", how="left")
    # The first rule whose sort key differs between winner and runner-up decided it.
    rule = pl.when(pl.col("runner_up_rid").is_null()).then(pl.lit("unanimous"))
    for r in rules:
        col = _RULE_ORDER[r][0]
        rule = rule.when(pl.col(f"_win_{col}").ne_missing(pl.col(f"_ru_{col}"))).then(pl.lit(r))
    return decided.with_columns(rule.otherwise(pl.lit("tie_break")).alias("rule")).drop(
        [c for c in decided.columns if c.startswith(("_ru_", "_win_"))]
    )


def with_observed_at(records: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Add `observed_at`: the day of a record's own latest event (a ticket, a sign-up), else the
    day its file was loaded (a system export shows the record as it is at export time)."""
    own = (
        events.filter(pl.col("customer_source") == pl.col("source"))
        .filter(pl.col("customer_record_id") == pl.col("event_id"))
        .group_by("source", "event_id")
        .agg(pl.col("occurred_at").max().alias("_event_at"))
        .rename({"event_id": "source_record_id"})
    )
    # Whole days: files of one load arrive seconds apart, and that order must not decide
    # 'most recent' between two systems exported the same day (trust or the next rule does).
    return records.join(own, on=["source", "source_record_id"], how="left").with_columns(
        pl.coalesce("_event_at", "loaded_at").dt.truncate("1d").alias("observed_at")
    ).drop("_event_at")


def build_golden(
    records: pl.DataFrame, xref: pl.DataFrame, events: pl.DataFrame, config: GoldenConfig
) -> GoldenResult:
    """The golden step for a set of customers: golden records and their field lineage.

    Takes the customers' cleaned records (GOLDEN_INPUT_COLUMNS at least), their identity-map
    rows (source, source_record_id, customer_id, match_confidence; a record without one is
    left out), events (a record's own events date it for most_recent; others are ignored) and
    the registry's golden config. Returns a GoldenResult: one row per customer in
    CUSTOMER_COLUMNS, the deciding rule counts per field, and the lineage (whole, or field by
    field through `lineage_batches`).
    """
    base = (
        with_observed_at(
            records.join(
                xref.select("source", "source_record_id", "customer_id", "match_confidence"),
                on=["source", "source_record_id"],
                how="inner",
            ),
            events,
        )
        .sort("source", "source_record_id")
        .with_row_index("rid")
        .with_columns(pl.col("customer_id").rank("dense").cast(pl.UInt32).alias("cid"))
    )
    customers = base.group_by("cid").agg(
        pl.col("customer_id").first(),
        pl.len().cast(pl.Int64).alias("records"),
        pl.col("source").n_unique().cast(pl.Int64).alias("sources"),
        pl.col("source").unique().sort().str.join(", ").alias("source_list"),
        pl.col("observed_at").min().alias("first_seen_at"),
        pl.col("observed_at").max().alias("last_seen_at"),
    )
    parts = []
    rule_counts = []
    for name, field in FIELDS.items():
        rules = config.rules_for(name)
        decided = _decide(_candidates(base, field, rules), rules)
        # Record ids are row numbers of `base`: fetch the winners' values by position.
        values = pl.concat([
            decided.select("cid"),
            base.select(pl.col(field.columns).gather(decided.get_column("rid"))),
        ], how="horizontal")
        customers = customers.join(values, on="cid", how="left")
        parts.append((name, decided, rules))
        rule_counts.append(
            decided.group_by("rule").agg(pl.len().alias("customers")).with_columns(
                pl.lit(name).alias("field")
            )
        )
    customers = _display_columns(customers).sort("cid")
    counts = (
        pl.concat(rule_counts)
        .pivot(on="rule", index="field", values="customers")
        .fill_null(0)
        .sort("field")
    )
    return GoldenResult(
        customers=customers.select(list(CUSTOMER_COLUMNS)), rule_counts=counts,
        _customers_keyed=customers, _base=base, _parts=parts,
    )


def _display_columns(customers: pl.DataFrame) -> pl.DataFrame:
    last_display = pl.concat_str(
        [pl.col("name_prefix"), pl.col("last_name")], separator=" ", ignore_nulls=True
    )
    return customers.with_columns(
        pl.when(pl.col("last_name").is_not_null()).then(last_display).alias("last_name_display"),
        phone_display(pl.col("phone")).alias("phone_display"),
        pl.col("postcode").str.replace_all(" ", "", literal=True).alias("postcode_key"),
    )


def _field_columns(name: str) -> list[str]:
    """Golden columns whose lineage is that of field `name`: its own, then derived ones."""
    return [*FIELDS[name].columns, *(c for c, f in _DERIVED.items() if f == name)]


def _explained(
    customers: pl.DataFrame, base: pl.DataFrame, name: str, decided: pl.DataFrame,
    rules: tuple[str, ...],
) -> pl.DataFrame:
    """One row per customer with a value for field `name`: who supplied it, the runner-up
    and the rule, then each golden column of the field (and `_ru_` + the runner-up's value
    of each survived column) as text."""
    field = FIELDS[name]
    # Record ids are row numbers of `base`: fetch by position rather than by a join.
    supplier = base.select(
        pl.col("source", "source_record_id").gather(decided.get_column("rid"))
    )
    # A null runner-up id (all candidates agree) gathers nulls.
    runner_up = base.select(
        pl.col("source").alias("runner_up_source"),
        pl.col("source_record_id").alias("runner_up_source_record_id"),
        *(pl.col(c).cast(pl.String).alias(f"_ru_{c}") for c in field.columns),
    ).select(pl.all().gather(decided.get_column("runner_up_rid")))
    return (
        pl.concat([decided, supplier, runner_up], how="horizontal")
        .join(
            customers.select("cid", "customer_id",
                             *(pl.col(c).cast(pl.String) for c in _field_columns(name))),
            on="cid",
            how="left",
            maintain_order="left",
        )
        .with_columns(
            pl.lit(name).alias("field_group"),
            pl.lit(", ".join(rules)).alias("rules_configured"),
            pl.col("candidates").cast(pl.Int64),
            pl.col("agreeing").cast(pl.Int64),
        )
    )


def _lineage(
    customers: pl.DataFrame, base: pl.DataFrame, parts: list, keep_order: bool = False
) -> pl.DataFrame:
    """One row per non-null golden value (summary columns aside) of the given fields;
    `keep_order` keeps the customer and column order keys for sorting."""
    column_order = {c: i for i, c in enumerate(CUSTOMER_COLUMNS)}
    frames = []
    for name, decided, rules in parts:
        explained = _explained(customers, base, name, decided, rules)
        for column in _field_columns(name):
            runner = f"_ru_{column}"
            frames.append(
                explained.filter(pl.col(column).is_not_null()).select(
                    "cid",
                    pl.lit(column_order[column], dtype=pl.UInt16).alias("_order"),
                    "customer_id",
                    pl.lit(column).alias("field"),
                    "field_group",
                    pl.col(column).alias("value"),
                    "source",
                    "source_record_id",
                    "rule",
                    "rules_configured",
                    (pl.col(runner) if runner in explained.columns
                     else pl.lit(None, dtype=pl.String)).alias("runner_up_value"),
                    "runner_up_source",
                    "runner_up_source_record_id",
                    "candidates",
                    "agreeing",
                    "match_confidence",
                    "observed_at",
                )
            )
    lineage = pl.concat(frames)
    return lineage if keep_order else lineage.select(list(FIELD_LINEAGE_COLUMNS))


def _sort_lineage(lineage: pl.DataFrame) -> pl.DataFrame:
    return lineage.sort("cid", "_order").select(list(FIELD_LINEAGE_COLUMNS))


def lineage_problems(
    con: duckdb.DuckDBPyConnection, customers: str = "golden.customers",
    lineage: str = "golden.field_lineage",
) -> pl.DataFrame:
    """Golden values without exactly one lineage row, and lineage rows without a value.

    Runs inside DuckDB (millions of lineage rows never travel to Python). Returns
    (customer_id, field, lineage_rows, has_value) for every mismatch; empty is good.
    """
    columns = [c for c in CUSTOMER_COLUMNS if c not in CLUSTER_SUMMARY_COLUMNS]
    as_text = ", ".join(f"CAST({quote_identifier(c)} AS VARCHAR) AS {quote_identifier(c)}"
                        for c in columns)
    unpivot_on = ", ".join(quote_identifier(c) for c in columns)
    return con.sql(
        f"""
        WITH present AS (
            -- UNPIVOT drops NULLs: one row per non-null golden value
            UNPIVOT (SELECT customer_id, {as_text} FROM {customers})
            ON {unpivot_on} INTO NAME field VALUE value
        ),
        explained AS (
            SELECT customer_id, field, count(*) AS lineage_rows FROM {lineage} GROUP BY ALL
        )
        SELECT coalesce(p.customer_id, e.customer_id) AS customer_id,
               coalesce(p.field, e.field) AS field,
               coalesce(e.lineage_rows, 0) AS lineage_rows,
               p.value IS NOT NULL AS has_value
        FROM present p FULL JOIN explained e
          ON p.customer_id = e.customer_id AND p.field = e.field
        WHERE coalesce(e.lineage_rows, 0) <> 1 OR p.value IS NULL
        ORDER BY 1, 2
        """
    ).pl()
