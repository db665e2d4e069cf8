"""Stable customer ids across runs: inheritance, merges, splits, retirements, id chains."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from cdi_pipeline.lib.matching.ids import HISTORY_SCHEMA, ID_MAP_SCHEMA, IdAssignment, assign_ids

NOW = datetime(2026, 10, 1, 12, 0)
CLUSTER_SCHEMA = {"unique_id": pl.String, "cluster_key": pl.String}
PREVIOUS_SCHEMA = {"unique_id": pl.String, "customer_id": pl.String}


def _clusters(groups: dict[str, list[str]]) -> pl.DataFrame:
    rows = [(uid, key) for key, members in groups.items() for uid in members]
    return pl.DataFrame(rows, schema=CLUSTER_SCHEMA, orient="row")


def _run(groups: dict[str, list[str]], before: IdAssignment | None = None,
         run_id: str = "run") -> IdAssignment:
    previous = (
        before.assignment.select("unique_id", "customer_id") if before is not None
        else pl.DataFrame(schema=PREVIOUS_SCHEMA)
    )
    previous_map = before.id_map if before is not None else pl.DataFrame(schema=ID_MAP_SCHEMA)
    return assign_ids(_clusters(groups), previous, previous_map, run_id=run_id,
                      model_version="m1", now=NOW)


def _ids(result: IdAssignment) -> dict[str, str]:
    return dict(result.assignment.select("unique_id", "customer_id").iter_rows())


def _events(result: IdAssignment) -> set[tuple]:
    return set(
        result.events.select("event", "old_customer_id", "new_customer_id", "records").iter_rows()
    )


def _resolve(result: IdAssignment) -> dict[str, str | None]:
    return dict(result.id_map.select("customer_id", "current_customer_id").iter_rows())


FIRST = {"k1": ["a", "b", "c"], "k2": ["d"], "k3": ["e", "f"]}


def test_first_run_creates_sequential_ids() -> None:
    result = _run(FIRST, run_id="r1")
    assert _ids(result) == {
        "a": "CUS000000001", "b": "CUS000000001", "c": "CUS000000001",
        "d": "CUS000000002",
        "e": "CUS000000003", "f": "CUS000000003",
    }
    assert _events(result) == {
        ("created", None, "CUS000000001", 3),
        ("created", None, "CUS000000002", 1),
        ("created", None, "CUS000000003", 2),
    }
    assert result.events.schema == pl.Schema(HISTORY_SCHEMA)
    assert set(result.events.get_column("run_id")) == {"r1"}
    assert set(result.events.get_column("model_version")) == {"m1"}
    assert result.id_map.rows() == [
        ("CUS000000001", "CUS000000001", "active"),
        ("CUS000000002", "CUS000000002", "active"),
        ("CUS000000003", "CUS000000003", "active"),
    ]


def test_identical_second_run_keeps_ids_and_emits_nothing() -> None:
    first = _run(FIRST)
    # Same clusters under other keys (keys are per-run artefacts, e.g. a different min id).
    again = _run({"x": ["c", "b", "a"], "y": ["f", "e"], "z": ["d"]}, first)
    assert _ids(again) == _ids(first)
    assert again.events.is_empty()
    assert again.id_map.equals(first.id_map)


def test_removed_record_leaves_other_ids_unchanged() -> None:
    first = _run(FIRST)
    second = _run({"k1": ["a", "c"], "k2": ["d"], "k3": ["e", "f"]}, first)  # b is gone
    expected = _ids(first)
    del expected["b"]
    assert _ids(second) == expected
    assert second.events.is_empty()


def test_merge_keeps_the_larger_clusters_id() -> None:
    first = _run(FIRST)  # a,b,c -> 1; d -> 2; e,f -> 3
    # e,f and a,b,c become one customer: the id of the larger previous cluster survives.
    second = _run({"k1": ["a", "b", "c", "e", "f"], "k2": ["d"]}, first)
    assert set(_ids(second).values()) == {"CUS000000001", "CUS000000002"}
    assert _ids(second)["e"] == "CUS000000001"
    assert _events(second) == {("merged", "CUS000000003", "CUS000000001", 2)}
    assert _resolve(second)["CUS000000003"] == "CUS000000001"
    status = dict(second.id_map.select("customer_id", "status").iter_rows())
    assert status == {"CUS000000001": "active", "CUS000000002": "active",
                      "CUS000000003": "merged"}


def test_merge_keeps_the_larger_id_whichever_was_issued_first() -> None:
    first = _run({"k1": ["a"], "k2": ["b", "c", "d"]})  # a -> 1, b,c,d -> 2
    second = _run({"k": ["a", "b", "c", "d"]}, first)
    assert set(_ids(second).values()) == {"CUS000000002"}
    assert _events(second) == {("merged", "CUS000000001", "CUS000000002", 1)}


def test_split_keeps_the_id_on_the_larger_part() -> None:
    first = _run(FIRST)
    # c leaves a,b,c: a,b keep id 1, c gets the next fresh number.
    second = _run({"k1": ["a", "b"], "k1b": ["c"], "k2": ["d"], "k3": ["e", "f"]}, first)
    ids = _ids(second)
    assert ids["a"] == ids["b"] == "CUS000000001"
    assert ids["c"] == "CUS000000004"
    assert ids["d"] == "CUS000000002" and ids["e"] == ids["f"] == "CUS000000003"
    assert _events(second) == {("split", "CUS000000001", "CUS000000004", 1)}
    assert _resolve(second)["CUS000000004"] == "CUS000000004"
    assert _resolve(second)["CUS000000001"] == "CUS000000001"


def test_split_when_the_larger_part_has_the_larger_key() -> None:
    first = _run({"k": ["a", "b", "c"]})
    # The part with the smallest cluster key is the smaller one; the id still follows size.
    second = _run({"aaa": ["a"], "zzz": ["b", "c"]}, first)
    ids = _ids(second)
    assert ids["b"] == ids["c"] == "CUS000000001"
    assert ids["a"] == "CUS000000002"
    assert _events(second) == {("split", "CUS000000001", "CUS000000002", 1)}


def test_cluster_whose_records_all_vanished_is_retired() -> None:
    first = _run(FIRST)
    second = _run({"k1": ["a", "b", "c"], "k3": ["e", "f"]}, first)  # d deleted at source
    assert _events(second) == {("retired", "CUS000000002", None, 0)}
    assert _resolve(second)["CUS000000002"] is None
    status = dict(second.id_map.select("customer_id", "status").iter_rows())
    assert status["CUS000000002"] == "retired"
    # A retired number is never handed out again.
    third = _run({"k1": ["a", "b", "c"], "k3": ["e", "f"], "new": ["g"]}, second)
    assert _ids(third)["g"] == "CUS000000004"
    assert _resolve(third)["CUS000000002"] is None


def test_merge_chains_resolve_across_three_runs() -> None:
    c_records = ["c1", "c2", "c3", "c4"]
    r1 = _run({"ka": ["a1"], "kb": ["b1", "b2"], "kc": c_records})
    a, b, c = "CUS000000001", "CUS000000002", "CUS000000003"
    assert _ids(r1) == {"a1": a, "b1": b, "b2": b, **dict.fromkeys(c_records, c)}
    # Run 2: A merged into B.
    r2 = _run({"kb": ["a1", "b1", "b2"], "kc": c_records}, r1)
    assert _events(r2) == {("merged", a, b, 1)}
    assert _resolve(r2) == {a: b, b: b, c: c}
    # Run 3: B merged into C. A, merged earlier, now resolves to C as well.
    r3 = _run({"kc": ["a1", "b1", "b2", *c_records]}, r2)
    assert _events(r3) == {("merged", b, c, 3)}
    assert _resolve(r3) == {a: c, b: c, c: c}
    assert set(r3.id_map.get_column("status")) == {"merged", "active"}
    # Run 4: C retired; every id that ever led to it now resolves to nothing.
    r4 = _run({"kz": ["z1"]}, r3)
    assert _resolve(r4)[a] is None and _resolve(r4)[b] is None and _resolve(r4)[c] is None
    assert _ids(r4) == {"z1": "CUS000000004"}


def test_records_moving_between_two_surviving_customers_are_recorded() -> None:
    first = _run({"k1": ["a", "b", "c"], "k2": ["d", "e"]})
    # c moves from customer 1 to customer 2; both keep their ids.
    second = _run({"k1": ["a", "b"], "k2": ["c", "d", "e"]}, first)
    ids = _ids(second)
    assert ids["a"] == "CUS000000001" and ids["c"] == ids["d"] == "CUS000000002"
    assert _events(second) == {("moved", "CUS000000001", "CUS000000002", 1)}
