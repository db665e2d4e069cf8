"""Composite blocking keys are capped like single ones: a street address or a surname in one
postcode area held by too many records is not blocked on (its pairs grow with its square)."""

import polars as pl

from cdi_pipeline.lib.matching.input import prepare_input
from cdi_pipeline.lib.matching.spec import derive_spec

STRING_COLUMNS = ("first_name_key", "first_name_canonical", "initials", "last_name_key",
                  "date_of_birth", "gender", "email", "phone", "phone_type", "postcode",
                  "house_number", "street_key", "city_key")


def _records(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"source": "crm", "source_record_id": str(i), **{c: None for c in STRING_COLUMNS},
          **row} for i, row in enumerate(rows)],
        schema={"source": pl.String, "source_record_id": pl.String,
                **{c: pl.String for c in STRING_COLUMNS}},
    )


def test_address_held_by_more_than_max_block_size_is_not_blocked_on() -> None:
    home = {"street_key": "kerkstraat", "house_number": "1", "city_key": "ede"}
    rows = [{**home, "last_name_key": f"n{i}"} for i in range(6)]
    rows += [{"street_key": "dorpsweg", "house_number": "2", "city_key": "ede"}] * 3
    rows += [{"street_key": "dorpsweg", "house_number": None, "city_key": "ede"}]
    frame = prepare_input(_records(rows), max_block_size=5).sort("source_record_id")
    blocks = frame.sort(pl.col("source_record_id").cast(pl.Int32)).get_column("address_block")
    # Six records at one address: over the cap of 5. Three: kept. No house number: no key.
    assert blocks.to_list() == [None] * 6 + ["dorpsweg|2|ede"] * 3 + [None]


def test_surname_in_an_area_is_capped_by_the_name_block_limit() -> None:
    rows = [{"last_name_key": "jansen", "postcode": f"1011A{c}"} for c in "ABCD"]
    rows += [{"last_name_key": "jansen", "postcode": "2000AA"}] * 2
    rows += [{"last_name_key": "bakker", "postcode": "1011AA"}]
    frame = prepare_input(_records(rows), max_block_size=50, max_name_block_size=3)
    blocks = frame.sort(pl.col("source_record_id").cast(pl.Int32)).get_column(
        "surname_area_block")
    assert blocks.to_list() == [None] * 4 + ["jansen|2000"] * 2 + ["bakker|1011"]


def test_capped_keys_are_the_blocking_rules() -> None:
    rows = [{"first_name_key": "anna", "first_name_canonical": "anna", "initials": "a",
             "last_name_key": f"s{i % 7}", "date_of_birth": f"19{50 + i % 40}-01-01",
             "postcode": f"{1000 + i % 9}AB", "house_number": str(i % 5),
             "street_key": "dorpsweg", "city_key": "ede"} for i in range(60)]
    rules = derive_spec(prepare_input(_records(rows), max_block_size=50)).blocking_rules
    assert ["surname_area_block"] in rules and ["address_block"] in rules
    assert ["last_name_key", "postcode_area"] not in rules
    assert ["street_key", "house_number", "city_key"] not in rules


def test_a_typo_in_one_name_still_shares_a_block_and_common_keys_are_capped() -> None:
    rows = [
        {"first_name_key": "sarah", "first_name_canonical": "sarah", "initials": "s",
         "last_name_key": "doherty"},
        {"first_name_key": "srh", "first_name_canonical": "srh", "initials": "s",
         "last_name_key": "doherty"},
        {"first_name_key": "tiziano", "first_name_canonical": "tiziano", "initials": "t",
         "last_name_key": "panatta"},
        {"first_name_key": "tiziano", "first_name_canonical": "tiziano", "initials": "t",
         "last_name_key": "panatea"},
    ]
    # Three more of "j smit": over a cap of 2, so that surname-and-initial key is dropped.
    rows += [{"first_name_key": f"j{c}", "first_name_canonical": f"j{c}", "initials": "j",
              "last_name_key": "smit"} for c in "abc"]
    frame = prepare_input(_records(rows), max_block_size=50, max_name_block_size=2).sort(
        pl.col("source_record_id").cast(pl.Int32))
    assert frame.get_column("surname_initial_block").to_list() == [
        "doherty|s", "doherty|s", "panatta|t", "panatea|t", None, None, None]
    assert frame.get_column("given_surname_prefix_block").to_list()[2:4] == [
        "tiziano|pan", "tiziano|pan"]
    # Neither pair shares its exact name block.
    assert frame.get_column("name_block").n_unique() == frame.height
    rules = derive_spec(frame).blocking_rules
    assert ["surname_initial_block"] in rules and ["given_surname_prefix_block"] in rules
