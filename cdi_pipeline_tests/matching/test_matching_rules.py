"""Deterministic links, steward overrides, accuracy scores and model sanity rules."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from cdi_pipeline.lib.matching.evaluation import score_clusters
from cdi_pipeline.lib.matching.rules import OverrideFileError, deterministic_pairs, read_overrides
from cdi_pipeline.lib.matching.sanity import (
    linked_share_problem,
    prior_warnings,
    sanity_problems,
    training_warnings,
    untrained_comparisons,
)
from cdi_pipeline.lib.matching.training import apply_identifier_priors

# --- deterministic_pairs ---------------------------------------------------------------

RECORD_SCHEMA = {
    "unique_id": pl.String,
    "first_name_canonical": pl.String,
    "first_initial": pl.String,
    "date_of_birth": pl.Date,
    "phone_type": pl.String,
    "email_block": pl.String,
    "phone_block": pl.String,
}
DOB = date(1980, 3, 5)


def _record(uid: str, name: str | None, *, dob: date | None = DOB, email: str | None = None,
            phone: str | None = None, phone_type: str | None = None) -> dict:
    return {
        "unique_id": uid,
        "first_name_canonical": name,
        "first_initial": name[0] if name else None,
        "date_of_birth": dob,
        "phone_type": phone_type,
        "email_block": email,
        "phone_block": phone,
    }


def _pairs(*records: dict) -> set[tuple[str, str, str]]:
    frame = pl.DataFrame(list(records), schema=RECORD_SCHEMA)
    return set(deterministic_pairs(frame).iter_rows())


def test_shared_email_and_same_person_links() -> None:
    # The control for the tests below: same email, same name, same birth date.
    assert _pairs(
        _record("crm|1", "jan", email="jan@example.com"),
        _record("shop|9", "jan", email="jan@example.com"),
        _record("shop|5", "piet", email="piet@example.com"),
    ) == {("crm|1", "shop|9", "exact_email")}


def test_email_used_by_two_different_first_names_is_not_a_link() -> None:
    # A household address: two records of Jan and one of Marie share it. Even the two Jan
    # records are not linked by it: the value is not personal.
    assert _pairs(
        _record("crm|1", "jan", email="fam@example.com"),
        _record("shop|9", "jan", email="fam@example.com"),
        _record("erp|3", "marie", email="fam@example.com"),
    ) == set()


def test_different_birth_dates_block_an_email_link() -> None:
    assert _pairs(
        _record("crm|1", "jan", email="j@example.com", dob=date(1980, 3, 5)),
        _record("shop|9", "jan", email="j@example.com", dob=date(2008, 3, 5)),
    ) == set()
    # A missing birth date is no contradiction.
    assert _pairs(
        _record("crm|1", "jan", email="j@example.com", dob=date(1980, 3, 5)),
        _record("shop|9", "jan", email="j@example.com", dob=None),
    ) == {("crm|1", "shop|9", "exact_email")}


def test_landline_is_not_used_but_a_mobile_is() -> None:
    landline = _pairs(
        _record("crm|1", "jan", phone="+31201234567", phone_type="fixed_line"),
        _record("erp|2", "jan", phone="+31201234567", phone_type="fixed_line"),
    )
    assert landline == set()
    mobile = _pairs(
        _record("crm|1", "jan", phone="+31612345678", phone_type="mobile"),
        _record("erp|2", "jan", phone="+31612345678", phone_type="mobile"),
    )
    assert mobile == {("crm|1", "erp|2", "exact_mobile")}


def test_identifier_links_and_first_rule_wins() -> None:
    frame = pl.DataFrame(
        [
            _record("crm|1", "jan", email="j@example.com"),
            _record("shop|9", "jan", email="j@example.com"),
        ],
        schema=RECORD_SCHEMA,
    ).with_columns(pl.lit("L-77").alias("id_loyalty_number"))
    assert deterministic_pairs(frame).rows() == [("crm|1", "shop|9", "exact_email")]
    only_id = frame.with_columns(pl.lit(None, pl.String).alias("email_block"))
    assert deterministic_pairs(only_id).rows() == [("crm|1", "shop|9", "exact_loyalty_number")]


# --- read_overrides --------------------------------------------------------------------

KNOWN = pl.Series(["crm|C1", "crm|C2", "shop|W1", "erp|10"])
HEADER = "decision,source_l,source_record_id_l,source_r,source_record_id_r,decided_by,reason\n"


def _write(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "governance" / "match_overrides.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + body, encoding="utf-8")
    return path


def test_missing_overrides_file_means_no_overrides(tmp_path: Path) -> None:
    out = read_overrides(tmp_path / "governance" / "match_overrides.csv", KNOWN)
    assert out.is_empty()
    assert {"unique_id_l", "unique_id_r", "decision"} <= set(out.columns)


def test_overrides_are_read_as_ordered_pairs(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "must_link,shop,W1,crm,C1,anna,same person per phone call\n"
        "cannot_link,crm,C1,crm,C2,bob,twins\n",
    )
    out = read_overrides(path, KNOWN)
    assert out.select("unique_id_l", "unique_id_r", "decision", "decided_by").rows() == [
        ("crm|C1", "shop|W1", "must_link", "anna"),
        ("crm|C1", "crm|C2", "cannot_link", "bob"),
    ]


@pytest.mark.parametrize(
    ("lines", "bad_line", "problem"),
    [
        (["maybe_link,crm,C1,crm,C2,anna,unsure"], 2, "decision maybe_link is not one of"),
        # A blank decision must not silently cancel an earlier line about the same pair.
        (["cannot_link,crm,C1,crm,C2,anna,twins", ",crm,C1,crm,C2,anna,oops"], 3,
         "decision (empty) is not one of"),
        (["must_link,crm,C1,crm,C2,anna,ok", "cannot_link,crm,C1,shop,W1,bob,"], 3,
         "reason (why) is empty"),
        (["must_link,crm,C1,crm,C2,anna,ok", "must_link,crm,C1,crm,C2,anna,ok",
          "cannot_link,crm,C1,crm,C99,bob,typo"], 4,
         "record crm|C99 is not in cleaned.customer_records"),
    ],
)
def test_unusable_override_names_the_line(tmp_path: Path, lines, bad_line, problem) -> None:
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(OverrideFileError) as info:
        read_overrides(path, KNOWN)
    message = str(info.value)
    assert str(path) in message
    assert f"line {bad_line}: {problem}" in message
    assert "1 unusable override(s)" in message


def test_last_line_wins_for_a_repeated_pair(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "must_link,crm,C1,shop,W1,anna,same email\n"
        "must_link,crm,C2,erp,10,anna,same phone\n"
        # The same pair again, written the other way round: the steward changed their mind.
        "cannot_link,shop,W1,crm,C1,bob,different birth dates on the passport copy\n",
    )
    out = read_overrides(path, KNOWN)
    decisions = {(r["unique_id_l"], r["unique_id_r"]): (r["decision"], r["decided_by"])
                 for r in out.to_dicts()}
    assert decisions == {
        ("crm|C1", "shop|W1"): ("cannot_link", "bob"),
        ("crm|C2", "erp|10"): ("must_link", "anna"),
    }


# --- score_clusters --------------------------------------------------------------------


def test_score_clusters_on_a_hand_computed_example() -> None:
    # Truth: P1 = {1,2,3}, P2 = {4,5}, P3 = {6}.
    # Clusters: X = {1,2}, Y = {3,4,5}, Z = {6}; record 7 is unknown to the truth.
    truth = pl.DataFrame(
        {
            "source": ["s"] * 6,
            "source_record_id": ["1", "2", "3", "4", "5", "6"],
            "person_id": ["P1", "P1", "P1", "P2", "P2", "P3"],
        }
    )
    assignment = pl.DataFrame(
        {
            "source": ["s"] * 7,
            "source_record_id": ["1", "2", "3", "4", "5", "6", "7"],
            "customer_id": ["X", "X", "Y", "Y", "Y", "Z", "Z"],
        }
    )
    scores = score_clusters(assignment, truth)
    # Predicted pairs: X 1 + Y 3 + Z 0 = 4; true pairs: P1 3 + P2 1 = 4;
    # correct: (1,2) and (4,5) = 2.
    assert scores["pairwise_precision"] == pytest.approx(2 / 4)
    assert scores["pairwise_recall"] == pytest.approx(2 / 4)
    assert scores["pairwise_f1"] == pytest.approx(0.5)
    # B-cubed precision per record: 1,2 -> 2/2; 3 -> 1/3; 4,5 -> 2/3; 6 -> 1/1.
    b3_p = (1 + 1 + 1 / 3 + 2 / 3 + 2 / 3 + 1) / 6
    # B-cubed recall per record: 1,2 -> 2/3; 3 -> 1/3; 4,5 -> 2/2; 6 -> 1/1.
    b3_r = (2 / 3 + 2 / 3 + 1 / 3 + 1 + 1 + 1) / 6
    assert scores["bcubed_precision"] == pytest.approx(b3_p)  # 0.7778
    assert scores["bcubed_recall"] == pytest.approx(b3_r)  # 0.8333
    assert scores["bcubed_f1"] == pytest.approx(2 * b3_p * b3_r / (b3_p + b3_r))
    # Only P3 is reproduced exactly (record 7 is not scored, so Z counts as {6}).
    assert scores["persons_exact_share"] == pytest.approx(1 / 3)
    assert scores["records_scored"] == 6
    assert scores["persons"] == 3


def test_score_clusters_perfect_and_all_singletons() -> None:
    truth = pl.DataFrame(
        {"source": ["s"] * 4, "source_record_id": ["1", "2", "3", "4"],
         "person_id": ["A", "A", "B", "B"]}
    )
    perfect = truth.rename({"person_id": "customer_id"})
    scores = score_clusters(perfect, truth)
    assert scores["pairwise_f1"] == 1.0 and scores["bcubed_f1"] == 1.0
    assert scores["persons_exact_share"] == 1.0
    singletons = truth.with_columns(pl.col("source_record_id").alias("customer_id"))
    scores = score_clusters(singletons.drop("person_id"), truth)
    assert scores["pairwise_precision"] == 1.0  # no predicted pairs, none wrong
    assert scores["pairwise_recall"] == 0.0
    assert scores["bcubed_recall"] == pytest.approx(0.5)


# --- sanity_problems -------------------------------------------------------------------


def _level(sql: str, m, u, *, null: bool = False) -> dict:
    level = {"sql_condition": sql, "label_for_charts": sql}
    if null:
        level["is_null_level"] = True
    else:
        level["m_probability"] = m
        level["u_probability"] = u
    return level


def _settings(dob_exact_m: float = 0.87) -> dict:
    return {
        "probability_two_random_records_match": 0.001,
        "comparisons": [
            {
                "output_column_name": "date_of_birth",
                "comparison_levels": [
                    _level("date_of_birth_l IS NULL", None, None, null=True),
                    _level("Exact match on date_of_birth", dob_exact_m, 0.002),
                    _level("Within a year", 0.9 - dob_exact_m + 0.05, 0.03),
                    _level("ELSE", 0.05, 0.968),
                ],
            },
            {
                "output_column_name": "email",
                "comparison_levels": [
                    _level("email_l IS NULL", None, None, null=True),
                    _level("Exact match on email", 0.7, 0.0005),
                    _level("ELSE", 0.3, 0.9995),
                ],
            },
        ],
    }


CONVERGED = [{"blocking_rule": ["date_of_birth"], "iterations": 9, "converged": True},
             {"blocking_rule": ["email"], "iterations": 12, "converged": True}]


def test_a_plausible_model_has_no_problems() -> None:
    assert sanity_problems(_settings()) == []


def test_collapsed_dob_m_is_flagged() -> None:
    # The collapse seen at a million records: exact agreement's mass went to "within a year".
    problems = sanity_problems(_settings(dob_exact_m=0.15))
    assert len(problems) == 1
    assert problems[0].startswith("date_of_birth:")
    assert "= 0.150 is below m(Within a year) = 0.800" in problems[0]
    assert "matching.training_rules" in problems[0]


def test_noisy_but_valid_model_is_accepted() -> None:
    # Typos in every field: exact agreement is rare among matches (m 0.44), yet still more
    # common than any near-agreement level, and it counts for a match. No floor rejects it.
    settings = _settings(dob_exact_m=0.44)
    settings["comparisons"][0]["comparison_levels"][2] = _level("Within a year", 0.31, 0.03)
    settings["comparisons"][0]["comparison_levels"][3] = _level("ELSE", 0.25, 0.968)
    settings["comparisons"][1]["comparison_levels"][1] = _level("Exact match", 0.41, 0.0005)
    settings["comparisons"][1]["comparison_levels"][2] = _level("ELSE", 0.59, 0.9995)
    assert sanity_problems(settings) == []


def test_non_converged_em_session_is_a_warning_not_a_rejection() -> None:
    training = [CONVERGED[0], {"blocking_rule": ["email"], "iterations": 100,
                               "converged": False}]
    assert sanity_problems(_settings()) == []
    warnings = training_warnings(training)
    assert len(warnings) == 1
    assert warnings[0].startswith("EM blocked on ['email'] did not converge in 100 iterations")
    assert "matching.em_max_iterations" in warnings[0]
    assert training_warnings(CONVERGED) == []


def test_untrained_m_and_inverted_weights_are_flagged() -> None:
    settings = _settings()
    email = settings["comparisons"][1]["comparison_levels"]
    # Splink writes a text marker when a level was never observed in training.
    email[1]["m_probability"] = "level not observed in training dataset"
    problems = sanity_problems(settings)
    assert problems == ["email: 'Exact match on email' has no trained m: no training pair "
                        "agreed on it; change matching.training_rules in the registry"]
    settings = _settings()
    settings["comparisons"][1]["comparison_levels"][2] = _level("ELSE", 0.9, 0.2)
    problems = sanity_problems(settings)
    assert len(problems) == 1 and "disagreement ('ELSE') has a positive match weight" in problems[0]
    assert f"{math.log2(0.9 / 0.2):.2f}" in problems[0]


@pytest.mark.parametrize(("exact_m", "else_m", "expected"), [
    (0.95, 0.05, (0.95, 0.05)),  # estimated by EM: kept
    ("level not observed in training dataset", 1.0, (0.9, 0.1)),  # no training pair agreed
    (1.0, 1.0, (0.9, 0.1)),  # every training pair agreed: disagreement left untrained
])
def test_identifier_m_that_em_could_not_estimate_gets_the_prior(exact_m, else_m,
                                                               expected) -> None:
    settings = _with_identifier(_settings(), exact_m, else_m)
    priors = apply_identifier_priors(settings)
    levels = settings["comparisons"][-1]["comparison_levels"]
    assert (levels[1]["m_probability"], levels[2]["m_probability"]) == pytest.approx(expected)
    untrained = untrained_comparisons(priors)
    assert sanity_problems(settings, untrained) == []
    if exact_m == 0.95:
        assert priors == [] and prior_warnings(priors) == []
    else:
        # Named in a warning with the prior it scores with, never passed off as trained.
        assert untrained == {"id_loyalty_number"}
        (warning,) = prior_warnings(priors)
        assert warning.startswith("id_loyalty_number: 'Exact match on id_loyalty_number' was "
                                  "not trained (no training pair")
        assert "prior m=0.90" in warning


def test_an_estimated_identifier_is_judged_like_any_comparison() -> None:
    # EM estimated it (m sums to 1), and agreeing counts against a match: rejected, since
    # only comparisons scored with a prior are left out of the rules.
    settings = _with_identifier(_settings(), 0.0005, 0.9995)
    assert apply_identifier_priors(settings) == []
    problems = sanity_problems(settings)
    assert problems and all(p.startswith("id_loyalty_number:") for p in problems)


def _with_identifier(settings: dict, exact_m: float | str, else_m: float) -> dict:
    settings["comparisons"].append({
        "output_column_name": "id_loyalty_number",
        "comparison_levels": [
            _level("id_loyalty_number_l IS NULL", None, None, null=True),
            _level("Exact match on id_loyalty_number", exact_m, 0.0007),
            _level("ELSE", else_m, 0.9993),
        ],
    })
    return settings


# --- linked_share_problem -----------------------------------------------------------------


def test_links_far_beyond_the_prior_are_a_collapse() -> None:
    # 1,000 records, prior 0.001: the model expects about 500 matching pairs.
    assert linked_share_problem(1000, 1_200, 0.001) is None  # 2.4x: a normal run
    problem = linked_share_problem(1000, 124_750, 0.001)  # one cluster of 500
    assert problem is not None
    assert "250 times the 500" in problem and "matching.training_rules" in problem
    assert linked_share_problem(1000, 124_750, None) is None  # no model: nothing to judge
