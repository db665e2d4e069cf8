"""The matching and identity tables: where each lives, what it is and what its columns mean
(the descriptions become DuckDB COMMENTs and the assets' UI descriptions)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import polars as pl

from cdi_pipeline.lib.storage import TableWrite

PARAMETER_COLUMNS = {
    "comparison": "Comparison (field) of the model.",
    "level": "Position of the level within its comparison (0 = null level, skipped).",
    "label": "What the level means, e.g. 'Exact match on email'.",
    "m_probability": "Share of true matches that fall in this level.",
    "u_probability": "Share of non-matches that fall in this level.",
    "match_weight": "log2(m/u): evidence for (positive) or against (negative) a match.",
    "model_version": "Content hash of the model these parameters belong to.",
}

_SIDE = {
    "source_l": "Source of the left record.",
    "source_record_id_l": "Record id of the left record in its source.",
    "source_r": "Source of the right record.",
    "source_record_id_r": "Record id of the right record in its source.",
    "match_probability": "Model probability that the two records are the same person.",
}

PAIR_COLUMNS = {
    **_SIDE,
    "match_weight": "Total model match weight (log2 odds) of the pair.",
    "decided_by_kind": "What decided the pair: steward, rule or model.",
    "rule_fired": "Deterministic rule that linked the pair (exact_email, ...), if any.",
    "decision": "Steward decision (must_link / cannot_link), if any.",
    "decided_by": "Steward who made the decision.",
    "reason": "Why the steward decided so.",
    "is_link": "Whether the pair counts as a link for clustering.",
    "same_customer": "Whether both records ended in the same customer.",
}

REVIEW_COLUMNS = {
    **_SIDE,
    "same_customer": "Whether the two records are currently in the same customer.",
    "suggested_action": "What a steward would add to match_overrides.csv to settle the pair.",
    "distance_to_threshold": "How far the probability is from the match threshold.",
}

CLUSTER_COLUMNS = {
    "customer_id": "Stable customer id of the cluster.",
    "records": "Source records in the cluster.",
    "sources": "Distinct sources contributing records.",
    "source_list": "Names of the contributing sources.",
    "weakest_link": "Lowest probability among the links that hold the cluster together.",
    "mean_link": "Mean probability of the links inside the cluster.",
    "links": "Links (model, rule or steward) inside the cluster.",
    "has_steward_link": "Whether a steward must_link holds part of the cluster together.",
}

XREF_COLUMNS = {
    "source": "Source system of the record.",
    "source_record_id": "Record id in its source.",
    "customer_id": "Stable customer id the record belongs to.",
    "cluster_size": "Records in the customer's cluster.",
    "match_confidence": "Probability of the record's strongest link into its cluster "
    "(null for a customer of one record).",
    "linked_by": "Strongest kind of link that put the record in its cluster: must_link, "
    "deterministic, model, attached (its only plausible cluster), or singleton.",
    "model_version": "Model version that scored the record.",
    "run_id": "Dagster run that assigned the id.",
    "assigned_at": "When the id was assigned (UTC).",
}

HISTORY_COLUMNS = {
    "old_customer_id": "Id before the event (null when created).",
    "new_customer_id": "Id after the event (null when retired).",
    "event": "created, merged (old id absorbed), split (records moved to a new id), moved "
    "(records moved between two surviving ids), retired.",
    "records": "Records that moved with the event.",
    "run_id": "Dagster run in which the event happened.",
    "model_version": "Model version in use for that run.",
    "occurred_at": "When the event was recorded (UTC).",
}

ID_MAP_COLUMNS = {
    "customer_id": "Any customer id ever issued.",
    "current_customer_id": "The id it resolves to now (null when retired).",
    "status": "active, merged or retired.",
}

_PREFIXES = {
    "mw_": "Match weight contributed by the {} comparison.",
    "gamma_": "Comparison level of the {} comparison (-1 = null).",
}


def describe_columns(
    base: Mapping[str, str], columns: Iterable[str] | None = None
) -> dict[str, str]:
    """Descriptions for a table's columns, including per-comparison and side-by-side ones."""
    out = dict(base)
    for column in columns or ():
        if column in out:
            continue
        for prefix, template in _PREFIXES.items():
            if column.startswith(prefix):
                out[column] = template.format(column.removeprefix(prefix))
        if column.endswith("_l") and column not in out:
            out[column] = f"{column[:-2]} of the left record."
        elif column.endswith("_r") and column not in out:
            out[column] = f"{column[:-2]} of the right record."
    return out


@dataclass(frozen=True)
class MatchTable:
    """A table the matching layer writes: schema and name, what it is, and its columns."""

    schema: str
    name: str
    description: str
    columns: Mapping[str, str]

    @property
    def qualified(self) -> str:
        """`schema.name`."""
        return f"{self.schema}.{self.name}"

    def write(self, frame: pl.DataFrame) -> TableWrite:
        """The write of `frame` as this table, every column described."""
        return TableWrite(self.schema, self.name, frame, self.description,
                          describe_columns(self.columns, frame.columns))


PARAMETERS_TABLE = MatchTable(
    "matching", "model_parameters", "m and u probabilities and match weight of every "
    "comparison level of the model in use.", PARAMETER_COLUMNS)
PAIRS_TABLE = MatchTable(
    "matching", "pairs", "Scored record pairs with per-comparison match weights and how each "
    "pair was decided (model, rule or steward).", PAIR_COLUMNS)
REVIEW_QUEUE_TABLE = MatchTable(
    "matching", "review_queue", "Uncertain pairs for a data steward, closest to the threshold "
    "first, with both records side by side, the evidence and the suggested override.",
    REVIEW_COLUMNS)
CLUSTERS_TABLE = MatchTable(
    "matching", "clusters", "One row per customer cluster: size, sources and link strength.",
    CLUSTER_COLUMNS)
XREF_TABLE = MatchTable(
    "matching", "customer_xref", "The identity map: every source record and the customer_id it "
    "belongs to. Every later layer joins through it.", XREF_COLUMNS)
ID_HISTORY_TABLE = MatchTable(
    "matching", "id_history", "Every customer id event across runs: created, merged, split, "
    "moved, retired.", HISTORY_COLUMNS)
ID_MAP_TABLE = MatchTable(
    "matching", "customer_id_map", "Every customer id ever issued and the id it resolves to now.",
    ID_MAP_COLUMNS)

# The tables one matching pass replaces together, in the order they are written.
MATCH_TABLES = (PAIRS_TABLE, REVIEW_QUEUE_TABLE, CLUSTERS_TABLE, XREF_TABLE, ID_HISTORY_TABLE,
                ID_MAP_TABLE)
