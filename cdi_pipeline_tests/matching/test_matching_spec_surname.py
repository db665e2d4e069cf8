"""The surname guessed from an e-mail local part for records without a surname."""

import polars as pl

from cdi_pipeline.lib.matching.input import prepare_input
from cdi_pipeline.lib.matching.names import with_surname_from_email

CASES = [
    # (email_local, first_name_key, first_name_canonical, expected)
    ("jacobus.blom", "jacobus", "jacobus", "blom"),
    ("blom.jacobus", "jacobus", None, "blom"),
    ("jacobusblom78", "jacobus", None, "blom"),
    ("j.blom", "jacobus", None, "blom"),
    ("annavanderveen", "anna", None, "vanderveen"),
    ("vandervenanna", "anna", None, "vanderven"),
    ("koosblom", "jacobus", "koos", "blom"),  # the canonical form runs into it
    ("annabos", "anna", None, "bos"),
    ("annabo", "anna", None, "annabo"),  # fewer than 3 characters would remain
    ("anna", "anna", None, None),  # one token, equal to the given name
    ("anna.j", "anna", None, None),
    ("piet.de.vries", "piet", None, "vries"),  # longest token left
    ("ab.cd", "piet", None, "ab"),  # equally long: the first
    (None, "anna", None, None),
    ("anna.blom", None, None, None),
    ("anna.blom", "", None, None),
    ("", "anna", None, None),
]


def _frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        [r[:3] for r in rows],
        schema={"email_local": pl.String, "first_name_key": pl.String,
                "first_name_canonical": pl.String},
        orient="row",
    )


def test_surname_from_email_cases() -> None:
    out = with_surname_from_email(_frame(CASES))
    assert out.columns[:3] == ["email_local", "first_name_key", "first_name_canonical"]
    assert out.get_column("surname_guess").to_list() == [r[3] for r in CASES]


def test_surname_from_email_where_and_order() -> None:
    frame = _frame(CASES).with_columns(pl.int_range(pl.len()).alias("i"))
    out = with_surname_from_email(frame, where=pl.col("i") % 2 == 0, alias="g")
    assert out.get_column("i").to_list() == list(range(len(CASES)))
    assert out.get_column("g").to_list() == [
        r[3] if i % 2 == 0 else None for i, r in enumerate(CASES)
    ]


def test_prepare_input_blocks_on_guessed_surname() -> None:
    records = pl.DataFrame(
        {
            "source": ["crm", "news", "news"],
            "source_record_id": ["1", "2", "3"],
            "first_name_key": ["jacobus", "jacobus", "anna"],
            "first_name_canonical": ["jacobus", "jacobus", "anna"],
            "initials": ["j", "j", "a"],
            "last_name_key": ["blom", None, None],
            "date_of_birth": [None, None, None],
            "gender": [None, None, None],
            "email": ["x@a.nl", "jacobus.blom@b.nl", "annadevries@c.nl"],
            "phone": [None, None, None],
            "phone_type": [None, None, None],
            "postcode": [None, None, None],
            "house_number": [None, None, None],
            "street_key": [None, None, None],
            "city_key": [None, None, None],
        },
        schema_overrides={c: pl.String for c in ("date_of_birth", "gender", "phone",
                                                  "phone_type", "postcode", "house_number",
                                                  "street_key", "city_key")},
    )
    frame = prepare_input(records, max_block_size=50)
    assert "surname_guess" not in frame.columns
    assert frame.get_column("surname_block").to_list() == ["blom", "blom", "devries"]
    assert frame.get_column("surname_block_stem").to_list() == ["blom", "blom", "vries"]


def test_a_nameless_record_is_blocked_by_the_name_its_email_spells() -> None:
    emails = ["thomas.zonvelde@live.nl", "thomas.zonvelde@live.nl", "zonvelde@live.nl",
              "t.zonvelde@live.nl", "info@zonvelde.nl", "thomas.van.zonvelde@live.nl"]
    n = len(emails)
    records = pl.DataFrame(
        {
            "source": ["crm", *["news"] * (n - 1)],
            "source_record_id": [str(i) for i in range(n)],
            "first_name_key": ["thomas", *[None] * (n - 1)],
            "first_name_canonical": ["thomas", *[None] * (n - 1)],
            "initials": ["t", *[None] * (n - 1)],
            "last_name_key": ["zonvelde", *[None] * (n - 1)],
            **{c: [None] * n for c in ("date_of_birth", "gender", "phone", "phone_type",
                                       "postcode", "house_number", "street_key", "city_key")},
            "email": emails,
        },
        schema_overrides={c: pl.String for c in ("first_name_key", "first_name_canonical",
                                                  "initials", "last_name_key", "date_of_birth",
                                                  "gender", "phone", "phone_type", "postcode",
                                                  "house_number", "street_key", "city_key")},
    )
    frame = prepare_input(records, max_block_size=50).sort("source_record_id")
    # The named record's own name; the nameless "thomas.zonvelde" meets it. One word, an
    # initial, a role address or three words say too little to stand for a full name.
    assert frame.get_column("name_block").to_list() == ["thomas|zonvelde", *[None] * (n - 1)]
    assert frame.get_column("name_block_email").to_list() == [
        "thomas|zonvelde", "thomas|zonvelde", None, None, None, None
    ]
