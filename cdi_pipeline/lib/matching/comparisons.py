"""The Splink comparisons: how two records are compared, field by field, level by level."""

from __future__ import annotations

import splink.comparison_level_library as cll
import splink.comparison_library as cl

from cdi_pipeline.lib.contracts import IDENTIFIER_PREFIX

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


def comparison(name: str, both_names: bool = False):
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
