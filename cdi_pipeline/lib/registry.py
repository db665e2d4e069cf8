"""The source registry: which source systems exist, where their files are and how their
columns map onto the canonical customer fields.

The registry is plain YAML validated with pydantic. Every error names the file, the source
and the key, so that whoever edits the YAML can fix it without reading code.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# Canonical person fields a source may map (the cleaned layer's vocabulary).
CANONICAL_FIELDS: tuple[str, ...] = (
    "first_name",
    "last_name",
    "full_name",
    "date_of_birth",
    "gender",
    "email",
    "phone",
    "street",
    "house_number",
    "postcode",
    "city",
    "country",
)

# Names become DuckDB table and column names; restricting them here is what makes
# config-driven SQL safe, on top of quoting at every use.
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SUPPORTED_ENCODINGS = ("utf-8", "utf-8-sig", "windows-1252", "latin-1", "iso-8859-1", "cp1252")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def _source_column_name(value: str) -> str:
    """A column name of a source file as the registry may map it.

    Source column names are whatever the delivering system calls them, so quotes, spaces,
    unicode and SQL keywords are allowed: every SQL statement quotes them
    (`storage.quote_identifier`) and the raw table is created from the frame, never from
    text. What is refused is what no file header can hold, and what polars would not read
    as a plain name: `pl.col("*")` selects every column and `pl.col("^...$")` is a regex.
    """
    if not value.strip():
        raise ValueError("a source column name cannot be empty")
    if _CONTROL_CHARACTER.search(value):
        raise ValueError(f"source column name {value!r} holds a control character")
    if value == "*" or (value.startswith("^") and value.endswith("$")):
        raise ValueError(
            f"source column name {value!r} reads as a column pattern (a wildcard or a ^...$ "
            "regular expression), not a name; rename the column in the source"
        )
    return value


SourceColumn = Annotated[str, AfterValidator(_source_column_name)]


class RegistryError(ValueError):
    """The source registry (or a file it points to) is not usable; the message says why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReaderOptions(_Strict):
    """Options for reading a source file (only CSV uses delimiter/quote/header)."""

    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field separator.")
    encoding: str = Field("utf-8", description="Text encoding of CSV and JSONL files.")
    quote_char: str | None = Field('"', description="CSV quote character, null for none.")
    has_header: bool = Field(True, description="Whether the first CSV line holds column names.")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        normalised = value.lower().replace("_", "-")
        if normalised not in SUPPORTED_ENCODINGS:
            raise ValueError(f"unsupported encoding {value!r}; use one of {SUPPORTED_ENCODINGS}")
        return normalised


class CustomerReference(_Strict):
    """How a behavioural record points at an identity record of another source."""

    source: str = Field(description="Identity source whose record_id the column holds.")
    column: SourceColumn = Field(description="Column of this source holding that record id.")


class Activity(_Strict):
    """Behavioural facts a source carries (orders, tickets, sign-ups)."""

    kind: Literal["order", "ticket", "signup"] = Field(description="What kind of event a row is.")
    customer: CustomerReference | None = Field(
        None, description="Link to the identity record; omitted means the row itself."
    )
    occurred_at: SourceColumn = Field(description="Column with the event's date or timestamp.")
    occurred_at_format: str | None = Field(
        None, description="strftime format of occurred_at; defaults to the source's date_format."
    )
    amount: SourceColumn | None = Field(
        None, description="Column with the monetary amount (orders)."
    )
    channel: SourceColumn | None = Field(
        None, description="Column with the contact or sales channel."
    )
    consent: SourceColumn | None = Field(None, description="Column with a marketing opt-in flag.")

    def columns(self) -> list[str]:
        """Source columns this activity reads."""
        cols = [self.occurred_at, self.amount, self.channel, self.consent]
        if self.customer is not None:
            cols.append(self.customer.column)
        return [c for c in cols if c is not None]


# What `gates.identifiable_when` may name: canonical fields, `name` (a given name, initials or
# a surname) and `identifier` (any declared identifier).
IDENTIFYING_PARTS: tuple[str, ...] = (*CANONICAL_FIELDS, "name", "identifier")
# Archives and genealogy hold real birth dates far before 1900; earlier than this is an error.
DEFAULT_BIRTH_DATE_EARLIEST = date(1600, 1, 1)
# Orders, tickets and sign-ups from before this are data errors.
DEFAULT_EVENT_DATE_EARLIEST = date(1900, 1, 1)
DEFAULT_IDENTIFIABLE_WHEN: tuple[tuple[str, ...], ...] = (
    ("email",), ("phone",), ("identifier",), ("first_name", "last_name"),
    ("name", "date_of_birth"), ("name", "postcode"), ("name", "city"), ("name", "street"),
)


class GateSettings(_Strict):
    """Validity ranges and the identifiability minimum of the cleaned layer (`gates:` at
    the top level; a source's own `gates:` overrides single keys)."""

    birth_date_earliest: date | None = Field(
        None,
        description="A birth date before this is nulled and quarantined (default 1600-01-01: "
        "archives and genealogy hold real dates far before 1900).",
    )
    birth_date_latest: date | None = Field(
        None, description="A birth date after this is nulled (default: the run's date)."
    )
    event_date_earliest: date | None = Field(
        None,
        description="An order, ticket or sign-up dated before this is held back (default "
        "1900-01-01).",
    )
    identifiable_when: list[list[str]] | None = Field(
        None,
        description="A record is kept when it has every part of at least one entry; parts: "
        "canonical fields (`first_name` counts initials), `name` (given name, initials or "
        "surname), `identifier`. Default: email; phone; identifier; given name (or initial) "
        "and surname; a name with a birth date, "
        "postcode, city or street.",
    )

    @field_validator("identifiable_when")
    @classmethod
    def _known_parts(cls, value: list[list[str]] | None) -> list[list[str]] | None:
        for entry in value or []:
            if not entry:
                raise ValueError("an identifiable_when entry is empty: list the parts a "
                                 "record must all have")
            unknown = [part for part in entry if part not in IDENTIFYING_PARTS]
            if unknown:
                raise ValueError(
                    f"identifiable_when entry {entry}: unknown part(s) {unknown}; use "
                    f"{', '.join(IDENTIFYING_PARTS)}"
                )
        if value is not None and not value:
            raise ValueError("identifiable_when needs at least one entry")
        return value


class Gates(BaseModel):
    """The gates in force for one source: its own keys over the top level's over defaults."""

    birth_date_earliest: date = DEFAULT_BIRTH_DATE_EARLIEST
    birth_date_latest: date | None = None
    event_date_earliest: date = DEFAULT_EVENT_DATE_EARLIEST
    identifiable_when: tuple[tuple[str, ...], ...] = DEFAULT_IDENTIFIABLE_WHEN


class Source(_Strict):
    """One source system's file and its mapping onto canonical fields."""

    name: str = Field(description="Source name; also the raw table name raw.<name>.")
    description: str | None = Field(None, description="One line shown in the UI.")
    path: Path = Field(description="File path, relative to the registry YAML.")
    format: Literal["csv", "parquet", "jsonl"]
    options: ReaderOptions = Field(default_factory=ReaderOptions)
    record_id: SourceColumn = Field(
        description="Column that identifies a record within the source."
    )
    trust: int | None = Field(None, ge=1, description="Survivorship rank, 1 = most trusted.")
    country: str | None = Field(None, description="Default ISO-2 country for phones/postcodes.")
    date_format: str | None = Field(None, description="strftime format of the source's dates.")
    fields: dict[str, SourceColumn] = Field(
        default_factory=dict, description="canonical field: column"
    )
    identifiers: dict[str, SourceColumn] = Field(
        default_factory=dict, description="id name: column"
    )
    attributes: list[SourceColumn] = Field(
        default_factory=list, description="Columns carried along."
    )
    activity: Activity | None = None
    max_rejected_share: float | None = Field(
        None, ge=0, le=1, description="Share of records rejected whole that stops the run."
    )
    gates: GateSettings = Field(
        default_factory=GateSettings,
        description="This source's validity ranges and identifiability minimum.",
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _NAME_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is not a valid source name: lower-case letters, digits and "
                "underscores, starting with a letter, at most 63 characters"
            )
        return value

    @field_validator("country")
    @classmethod
    def _iso_country(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError(f"{value!r} is not an ISO 3166 alpha-2 country code such as NL")
        return value.upper() if value else value

    @field_validator("fields")
    @classmethod
    def _canonical_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(CANONICAL_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown canonical field(s) {unknown}; allowed: {', '.join(CANONICAL_FIELDS)}"
            )
        return value

    @field_validator("identifiers")
    @classmethod
    def _identifier_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _NAME_PATTERN.match(key):
                raise ValueError(f"identifier name {key!r} must be lower-case snake_case")
        return value

    @field_validator("date_format")
    @classmethod
    def _date_format_has_parts(cls, value: str | None) -> str | None:
        if value is not None and not all(p in value for p in ("%d", "%m", "%Y")):
            raise ValueError(f"date_format {value!r} must contain %d, %m and %Y")
        return value

    @model_validator(mode="after")
    def _has_purpose(self) -> Source:
        if not self.fields and self.activity is None:
            raise ValueError("a source needs 'fields' (identity) or 'activity' (behaviour)")
        return self

    @property
    def is_identity(self) -> bool:
        """True when the source holds customer identity records (it maps canonical fields)."""
        return bool(self.fields)

    def mapped_columns(self) -> list[str]:
        """Every source column the registry promises, record id first, without repeats."""
        cols = [self.record_id, *self.fields.values(), *self.identifiers.values()]
        cols += self.attributes
        if self.activity is not None:
            cols += self.activity.columns()
        return list(dict.fromkeys(cols))


# Columns of the matching input an EM training rule may block on (see lib/matching/input.py).
TRAINING_COLUMNS = (
    "first_name_key", "first_name_canonical", "first_initial", "last_name_key",
    "date_of_birth", "gender", "email", "email_local", "email_block", "phone", "phone_block",
    "postcode", "postcode_area", "house_number", "street_key", "city_key", "source",
)


class MatchingConfig(_Strict):
    """How records are matched into customers (the `matching:` section of the registry)."""

    backend: Literal["duckdb", "spark"] = Field(
        "duckdb", description="Where Splink runs: embedded DuckDB, or Spark (pyspark)."
    )
    match_threshold: float = Field(
        0.9, gt=0, lt=1, description="Match probability at or above which two records link."
    )
    attach_min_probability: float | None = Field(
        0.3,
        gt=0,
        lt=1,
        description="A record left alone joins the one cluster all its pairs at or above this "
        "probability point into (none: never attach).",
    )
    review_band: tuple[float, float] = Field(
        (0.5, 0.98), description="Pairs with a probability in [low, high) go to review."
    )
    min_pair_probability: float = Field(
        0.01, gt=0, lt=1, description="Scored pairs below this probability are not stored."
    )
    max_cluster_size: int = Field(
        30, ge=2, description="A cluster with more records than this fails the size check."
    )
    max_comparisons_per_record: float = Field(
        500, gt=0, description="Pre-flight limit on blocked comparisons, per input record."
    )
    max_block_size: int = Field(
        50,
        ge=2,
        description="An email, phone or identifier held by more records is generic: it is "
        "not used for blocking or deterministic links.",
    )
    max_name_block_size: int = Field(
        100,
        ge=2,
        description="A given name + surname held by more records is not blocked on (its "
        "comparisons grow with the square of its size); such records still meet through "
        "birth date, postcode, email and phone rules.",
    )
    birth_date_conflict_blocks_link: bool = Field(
        True,
        description="Two records whose birth dates differ by more than a typo (over a month, "
        "not one digit) are never linked: a family sharing address and phone otherwise "
        "looks like one person.",
    )
    given_name_conflict_blocks_link: bool = Field(
        True,
        description="Two records with clearly different given names (different first letters, "
        "not nicknames of one another by the nickname table, not a typo apart, neither a "
        "likely misspelling) never end up in one customer: household members share surname, "
        "address, landline and often an email.",
    )
    birth_date_conflict_yields_to_link: bool = Field(
        False,
        description="Two records of one given name that the model links directly keep that "
        "link despite birth dates further apart than a typo (more recall where birth dates "
        "are mistyped badly; namesakes of one surname and place then merge more often).",
    )
    strong_agreement: list[str] = Field(
        ["identifiers", "email_and_birth_date"],
        description="Agreement that outweighs a birth-date or given-name conflict: "
        "`identifiers` (any declared identifier shared), `id_<name>` (that one), "
        "`email_and_birth_date` (the same email and birth date); [] lets conflicts always "
        "keep records apart.",
    )
    seed: int = Field(42, description="Seed for u sampling, so training is reproducible.")
    u_max_pairs: float = Field(2e6, gt=0, description="Random pairs sampled to estimate u.")
    em_max_pairs: float = Field(2e6, gt=0, description="Cap on blocked pairs per EM session.")
    em_max_iterations: int = Field(
        100, ge=1, le=10_000,
        description="EM iterations per session before it stops unconverged (a warning).",
    )
    em_convergence: float = Field(
        0.0001, gt=0, lt=1,
        description="EM stops when no parameter moves by more than this between iterations.",
    )
    training_rules: list[list[str]] | None = Field(
        None,
        description="EM blocking rules as lists of columns; default: chosen from the data.",
    )
    target_pairwise_f1: float = Field(0.97, ge=0, le=1, description="Accuracy check target.")
    target_exact_persons: float = Field(
        0.95, ge=0, le=1, description="Accuracy check target: share of persons exact."
    )
    spark_master: str = Field("local[2]", description="Spark master URL for backend: spark.")
    spark_driver_memory: str = Field("2g", description="Spark driver memory.")

    @model_validator(mode="after")
    def _band(self) -> MatchingConfig:
        low, high = self.review_band
        if not 0 < low < high <= 1:
            raise ValueError(f"review_band must satisfy 0 < low < high <= 1, got {low}, {high}")
        # Pairs below min_pair_probability are never stored, so nothing under it can be
        # reviewed or attached.
        floors = {"review_band low": low}
        if self.attach_min_probability is not None:
            floors["attach_min_probability"] = self.attach_min_probability
        for name, value in floors.items():
            if value < self.min_pair_probability:
                raise ValueError(
                    f"{name} {value} is below min_pair_probability {self.min_pair_probability}"
                )
        for kind in self.strong_agreement:
            if kind not in ("identifiers", "email_and_birth_date") and not re.fullmatch(
                r"id_[a-z][a-z0-9_]{0,62}", kind
            ):
                raise ValueError(
                    f"strong_agreement entry {kind!r}: expected identifiers, "
                    "email_and_birth_date or id_<identifier>"
                )
        for rule in self.training_rules or []:
            unknown = [c for c in rule if c not in TRAINING_COLUMNS
                       and not re.fullmatch(r"id_[a-z][a-z0-9_]{0,62}", c)]
            if not rule or unknown:
                raise ValueError(
                    f"training_rules entry {rule}: unknown column(s) {unknown}; use columns of "
                    f"the matching input: {', '.join(TRAINING_COLUMNS)} or id_<identifier>"
                )
        return self


# Survivorship: which golden fields exist and the rules that may pick their value.
SurvivorshipRule = Literal["trust", "most_recent", "most_complete", "most_frequent"]
GoldenField = Literal[
    "first_name", "last_name", "date_of_birth", "gender", "email", "phone", "address"
]

# Defaults chosen per field: names and dates are typed by hand in many systems, so the value
# most records agree on wins; contact details change, so the freshest wins; the address comes
# from the most trusted system that has a complete one.
DEFAULT_SURVIVORSHIP: dict[str, tuple[str, ...]] = {
    "first_name": ("most_frequent", "most_complete", "trust"),
    "last_name": ("most_frequent", "most_complete", "trust"),
    "date_of_birth": ("most_frequent", "trust"),
    "gender": ("most_frequent", "trust"),
    "email": ("most_recent", "trust", "most_frequent"),
    "phone": ("most_recent", "trust", "most_frequent"),
    "address": ("trust", "most_complete", "most_recent"),
}


class GoldenConfig(_Strict):
    """How golden records are built (the `golden:` section of the registry)."""

    survivorship: dict[GoldenField, list[SurvivorshipRule]] = Field(
        default_factory=dict,
        description="Per golden field, the rules tried in order until one tells the "
        "candidates apart; fields not listed use the defaults. The source name and record id "
        "break any remaining tie.",
    )
    batch_customers: int = Field(
        200_000,
        ge=1,
        description="Customers built per pass (their records are in memory together); "
        "passes follow customer_id order, so the result does not depend on it.",
    )

    @field_validator("survivorship")
    @classmethod
    def _rules_listed_once(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, rules in value.items():
            if not rules:
                raise ValueError(f"survivorship.{name}: give at least one rule")
            if len(set(rules)) != len(rules):
                raise ValueError(f"survivorship.{name}: a rule is listed twice: {rules}")
        return value

    def rules_for(self, field: str) -> tuple[str, ...]:
        """The rules, in order, that choose the value of a golden field."""
        return tuple(self.survivorship.get(field) or DEFAULT_SURVIVORSHIP[field])


class ScoreRange(_Strict):
    """An inclusive range of RFM scores."""

    min: int = Field(1, ge=1, description="Lowest score in the range.")
    max: int = Field(5, ge=1, description="Highest score in the range.")


class RfmSegment(_Strict):
    """A named RFM segment: a customer with orders belongs to the first whose ranges hold."""

    name: str = Field(description="Segment name, e.g. champions (also the export file name).")
    description: str = Field(description="What the segment means, for the summary.")
    recency: ScoreRange = Field(default_factory=ScoreRange, description="R score range.")
    frequency: ScoreRange = Field(default_factory=ScoreRange, description="F score range.")
    monetary: ScoreRange = Field(default_factory=ScoreRange, description="M score range.")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _NAME_PATTERN.match(value):
            raise ValueError(f"segment name {value!r} must be lower-case snake_case")
        return value


def _rfm(name, description, r=(1, 5), f=(1, 5), m=(1, 5)) -> RfmSegment:
    return RfmSegment(
        name=name,
        description=description,
        recency=ScoreRange(min=r[0], max=r[1]),
        frequency=ScoreRange(min=f[0], max=f[1]),
        monetary=ScoreRange(min=m[0], max=m[1]),
    )


# The usual named RFM grid on 1-5 scores, first match wins; the last entry catches the rest.
DEFAULT_RFM_SEGMENTS = (
    _rfm("champions", "Bought recently, buy often and spend the most.", (4, 5), (4, 5), (4, 5)),
    _rfm("loyal", "Buy often; responsive to promotions.", (3, 5), (3, 5)),
    _rfm("new", "Bought recently for the first time or twice.", (4, 5), (1, 2)),
    _rfm("promising", "Recent buyers with a small spend so far.", (3, 5), (1, 2)),
    _rfm("at_risk", "Bought often or spent much, but long ago.", (1, 2), (3, 5)),
    _rfm("cannot_lose", "Big spenders who have not come back.", (1, 2), (1, 5), (4, 5)),
    _rfm("hibernating", "Last order long ago, few orders, low spend.", (1, 2), (1, 2)),
    _rfm("needs_attention", "Average recency, frequency and spend."),
)


class LifecycleConfig(_Strict):
    """Lifecycle stage thresholds, in days before the reference date."""

    new_days: int = Field(90, ge=1, description="First order at most this long ago: new.")
    active_days: int = Field(365, ge=1, description="Last order at most this long ago: active.")
    lapsing_days: int = Field(
        730, ge=1, description="Last order at most this long ago: lapsing; older: lapsed."
    )

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleConfig:
        if not self.new_days <= self.active_days < self.lapsing_days:
            raise ValueError("lifecycle needs new_days <= active_days < lapsing_days")
        return self


class ValueTier(_Strict):
    """A value tier: the customers with orders whose revenue ranks in the top share."""

    name: str = Field(description="Tier name, e.g. gold.")
    top_share: float = Field(gt=0, le=1, description="Cumulative share of buyers, by revenue.")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        # With exports by value_tier the name becomes a file name: '../x' would write
        # outside the export folder.
        if not _NAME_PATTERN.match(value):
            raise ValueError(f"value tier name {value!r} must be lower-case snake_case")
        return value


DEFAULT_VALUE_TIERS = (
    ValueTier(name="platinum", top_share=0.05),
    ValueTier(name="gold", top_share=0.2),
    ValueTier(name="silver", top_share=0.5),
    ValueTier(name="bronze", top_share=1.0),
)

# Columns of the customer 360 an activation export may carry.
EXPORT_COLUMNS = (
    "customer_id", "first_name", "last_name_display", "email", "phone", "phone_display",
    "contact_channels", "postcode", "city", "country", "gender", "rfm_segment",
    "lifecycle_stage", "value_tier", "order_count", "revenue", "last_order_at",
    "consent_date",
)


class ExportConfig(_Strict):
    """Activation exports: one file set per segment for CRM and marketing tools."""

    by: Literal["rfm_segment", "lifecycle_stage", "value_tier"] = Field(
        "rfm_segment", description="Segment column that splits customers into files."
    )
    columns: list[str] = Field(
        default_factory=lambda: [
            "customer_id", "first_name", "last_name_display", "email", "phone",
            "contact_channels", "rfm_segment", "lifecycle_stage", "value_tier",
        ],
        description="Columns a campaign needs (nothing else leaves the warehouse).",
    )

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in EXPORT_COLUMNS]
        if unknown or "customer_id" not in value:
            raise ValueError(
                f"export columns must include customer_id and come from {EXPORT_COLUMNS}; "
                f"unknown: {unknown}"
            )
        return list(dict.fromkeys(value))


class SegmentsConfig(_Strict):
    """Segment definitions (the `segments:` section of the registry)."""

    reference_date: date | None = Field(
        None, description="'Today' for recency and lifecycle; empty means the run's date."
    )
    rfm_bins: int = Field(5, ge=2, le=10, description="Score bins for R, F and M (quantiles).")
    rfm_segments: list[RfmSegment] = Field(
        default_factory=lambda: list(DEFAULT_RFM_SEGMENTS),
        min_length=1,
        description="Named RFM segments, first match wins.",
    )
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    value_tiers: list[ValueTier] = Field(
        default_factory=lambda: list(DEFAULT_VALUE_TIERS),
        min_length=1,
        description="Value tiers by revenue rank, best first; the last must reach 1.0.",
    )
    exports: ExportConfig = Field(default_factory=ExportConfig)

    @model_validator(mode="after")
    def _consistent(self) -> SegmentsConfig:
        for seg in self.rfm_segments:
            for part in (seg.recency, seg.frequency, seg.monetary):
                if not 1 <= part.min <= part.max <= self.rfm_bins:
                    raise ValueError(
                        f"rfm segment {seg.name!r}: score ranges must lie within 1..{self.rfm_bins}"
                    )
        names = [s.name for s in self.rfm_segments]
        if len(set(names)) != len(names):
            raise ValueError(f"rfm segment names must be unique: {names}")
        shares = [t.top_share for t in self.value_tiers]
        if shares != sorted(shares) or len(set(shares)) != len(shares) or shares[-1] != 1.0:
            raise ValueError(
                f"value_tiers top_share must rise strictly and end at 1.0, got {shares}"
            )
        return self


class Registry(_Strict):
    """The whole registry file: sources and an optional truth file for evaluation."""

    sources: list[Source] = Field(min_length=1)
    truth: Path | None = Field(None, description="CSV: source, source_record_id, person_id.")
    max_rejected_share: float = Field(
        0.05, ge=0, le=1, description="Default share of records rejected whole that stops a run."
    )
    gates: GateSettings = Field(
        default_factory=GateSettings,
        description="Validity ranges and identifiability minimum for every source.",
    )
    matching: MatchingConfig = Field(
        default_factory=MatchingConfig, description="How records are matched into customers."
    )
    golden: GoldenConfig = Field(
        default_factory=GoldenConfig, description="How golden records are built."
    )
    segments: SegmentsConfig = Field(
        default_factory=SegmentsConfig, description="Segment definitions and exports."
    )
    overrides: Path | None = Field(
        None,
        description="Steward match overrides CSV, relative to the registry "
        "(default governance/match_overrides.csv when that file exists).",
    )
    base_dir: Path = Field(Path("."), exclude=True)
    registry_file: Path = Field(Path("sources.yaml"), exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> Registry:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {dupes}")
        for s in self.sources:
            self.gates_for(s)
        identity = {s.name for s in self.sources if s.is_identity}
        if not identity:
            raise ValueError("no identity source: at least one source must map canonical "
                             "'fields' (names, email, ...); customers are built from them")
        for s in self.sources:
            if s.activity and s.activity.customer and s.activity.customer.source not in identity:
                raise ValueError(
                    f"source {s.name!r}: activity.customer.source "
                    f"{s.activity.customer.source!r} is not an identity source of this registry"
                )
        return self

    def source(self, name: str) -> Source:
        """The source called `name`."""
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def identity_sources(self) -> list[Source]:
        """Sources that hold customer identity records."""
        return [s for s in self.sources if s.is_identity]

    def resolve(self, relative: Path) -> Path:
        """An absolute path for a path written relative to the registry file."""
        return (self.base_dir / relative).resolve()

    def file_of(self, source: Source) -> Path:
        """The absolute path of a source's file."""
        return self.resolve(source.path)

    def truth_file(self) -> Path | None:
        """The absolute path of the truth file, if the registry names one."""
        return self.resolve(self.truth) if self.truth else None

    def overrides_file(self) -> Path:
        """The steward overrides CSV (it need not exist: no file means no overrides)."""
        return self.resolve(self.overrides or Path("governance/match_overrides.csv"))

    def gates_for(self, source: Source) -> Gates:
        """The gates in force for `source`: its keys, else the top level's, else defaults."""
        chosen = {
            key: value
            for layer in (self.gates, source.gates)
            for key, value in layer.model_dump(exclude_none=True).items()
        }
        if "identifiable_when" in chosen:
            chosen["identifiable_when"] = tuple(tuple(e) for e in chosen["identifiable_when"])
        gates = Gates(**chosen)
        if gates.birth_date_latest and gates.birth_date_earliest >= gates.birth_date_latest:
            raise ValueError(
                f"source {source.name!r}: gates.birth_date_earliest "
                f"{gates.birth_date_earliest} is not before gates.birth_date_latest "
                f"{gates.birth_date_latest}"
            )
        return gates

    def rejected_share_limit(self, source: Source) -> float:
        """The share of records rejected whole that stops the run for this source."""
        if source.max_rejected_share is not None:
            return source.max_rejected_share
        return self.max_rejected_share


def _format_errors(path: Path, raw: dict, error: ValidationError) -> str:
    lines = [f"invalid source registry {path}:"]
    sources = raw.get("sources") if isinstance(raw, dict) else None
    for err in error.errors():
        loc = list(err["loc"])
        where = "top level"
        if len(loc) >= 2 and loc[0] == "sources" and isinstance(loc[1], int):
            name = None
            if isinstance(sources, list) and loc[1] < len(sources):
                entry = sources[loc[1]]
                name = entry.get("name") if isinstance(entry, dict) else None
            where = f"source {name!r}" if name else f"source #{loc[1] + 1}"
            loc = loc[2:]
        key = ".".join(str(p) for p in loc) or "(entry)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against the documented format)"
        elif err["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  - {where}, key {key!r}: {message}")
    return "\n".join(lines)


def load_registry(path: str | Path, *, require_files: bool = False) -> Registry:
    """Read and validate a registry YAML file; raise RegistryError naming file, source and key."""
    path = Path(path).resolve()
    if not path.is_file():
        raise RegistryError(f"source registry {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RegistryError(f"source registry {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise RegistryError(f"source registry {path} must be a mapping with a 'sources' list")
    try:
        registry = Registry.model_validate({**raw, "base_dir": path.parent, "registry_file": path})
    except ValidationError as exc:
        raise RegistryError(_format_errors(path, raw, exc)) from None
    base = path.parent.resolve()
    for source in registry.sources:
        resolved = registry.file_of(source)
        # A registry may not point outside its own folder: a shared registry must not be able
        # to read arbitrary files on the machine.
        if not resolved.is_relative_to(base):
            raise RegistryError(
                f"invalid source registry {path}:\n  - source {source.name!r}, key 'path': "
                f"{source.path} resolves outside the registry folder {base}"
            )
        if require_files and not resolved.is_file():
            raise RegistryError(
                f"source {source.name!r}: file {resolved} (key 'path' in {path}) does not exist"
            )
    if not registry.overrides_file().is_relative_to(base):
        raise RegistryError(
            f"invalid source registry {path}:\n  - top level, key 'overrides': "
            f"{registry.overrides} resolves outside the registry folder {base}"
        )
    truth = registry.truth_file()
    if truth is not None and not truth.is_relative_to(base):
        raise RegistryError(
            f"invalid source registry {path}:\n  - top level, key 'truth': {registry.truth} "
            f"resolves outside the registry folder {base}"
        )
    return registry
