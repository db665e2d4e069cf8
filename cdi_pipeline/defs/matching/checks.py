"""Gates on the matching layer: model sanity, cluster sizes, overrides, coverage, accuracy."""

import dagster as dg
import polars as pl

from cdi_pipeline.defs.keys import CLUSTERS, MODEL, XREF
from cdi_pipeline.defs.matching.assets import models_dir
from cdi_pipeline.defs.shared.resources import WarehouseResource
from cdi_pipeline.lib.matching.evaluation import pair_errors, read_truth, score_clusters
from cdi_pipeline.lib.matching.model_store import load_current_model
from cdi_pipeline.lib.matching.rules import read_overrides
from cdi_pipeline.lib.matching.sanity import (
    MAX_LINKS_OVER_PRIOR,
    linked_share_problem,
    prior_warnings,
    sanity_problems,
    training_warnings,
    untrained_comparisons,
)
from cdi_pipeline.lib.registry import Registry
from cdi_pipeline.lib.storage import frame_to_markdown


def build_matching_checks(registry: Registry) -> list[dg.AssetChecksDefinition]:
    """Checks on the model, the clusters and the identity map."""
    cfg = registry.matching

    @dg.asset_check(
        asset=MODEL,
        name="model_sanity",
        blocking=True,
        description="The model in use has plausible m/u (stops the run); unconverged EM and "
        "comparisons EM could not train (scored with a prior) warn.",
    )
    def model_sanity(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        model = load_current_model(models_dir(warehouse))
        if model is None:
            return dg.AssetCheckResult(passed=False, description="no model has been promoted")
        problems = sanity_problems(model.splink_settings, untrained_comparisons(model.priors))
        warnings = training_warnings(model.training) + prior_warnings(model.priors)
        # Unconverged EM and comparisons scored with a prior are warnings: the parameters EM
        # did estimate are judged by the rules above.
        return dg.AssetCheckResult(
            passed=not problems and not warnings,
            severity=dg.AssetCheckSeverity.ERROR if problems else dg.AssetCheckSeverity.WARN,
            description=("plausible" if not problems and not warnings
                         else "; ".join(problems + warnings)),
            metadata={"model_version": dg.MetadataValue.text(model.version),
                      "problems": dg.MetadataValue.int(len(problems)),
                      "warnings": dg.MetadataValue.int(len(warnings)),
                      "untrained_comparisons": dg.MetadataValue.text(
                          ", ".join(sorted(untrained_comparisons(model.priors))) or "none")},
        )

    # The cluster gates sit on the customer_xref, the table every later layer reads: an
    # oversized or collapsed clustering must hold back golden records, segments and exports.
    @dg.asset_check(
        asset=XREF,
        name="cluster_size",
        blocking=True,
        additional_deps=[CLUSTERS],
        description=f"No customer holds more than {cfg.max_cluster_size} records (a chain "
        "that glued different people together).",
    )
    def cluster_size(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            clusters = con.sql("SELECT customer_id, records, source_list, weakest_link "
                               "FROM matching.clusters").pl()
        sizes = clusters.group_by("records").agg(pl.len().alias("clusters")).sort("records")
        oversized = clusters.filter(pl.col("records") > cfg.max_cluster_size).sort(
            "records", descending=True
        )
        return dg.AssetCheckResult(
            passed=oversized.is_empty(),
            description=(
                f"largest cluster {int(clusters.get_column('records').max() or 0)} records"
                if oversized.is_empty()
                else f"{oversized.height} cluster(s) above {cfg.max_cluster_size} records"
            ),
            metadata={
                "oversized_clusters": dg.MetadataValue.int(oversized.height),
                "cluster_size_distribution": dg.MetadataValue.md(
                    frame_to_markdown(sizes.rename({"records": "cluster_size"}), max_rows=50)
                ),
                "largest": dg.MetadataValue.md(frame_to_markdown(oversized.head(10))),
            },
        )

    @dg.asset_check(
        asset=XREF,
        name="linked_share",
        blocking=True,
        additional_deps=[CLUSTERS],
        description="The clusters link no more than "
        f"{MAX_LINKS_OVER_PRIOR:.0f}x the record pairs the model's prior expects (collapse).",
    )
    def linked_share(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        model = load_current_model(models_dir(warehouse))
        with warehouse.connect() as con:
            records, linked = con.sql(
                "SELECT coalesce(sum(records), 0), coalesce(sum(records * (records - 1) / 2), 0) "
                "FROM matching.clusters").fetchall()[0]
        prior = (model.splink_settings.get("probability_two_random_records_match")
                 if model else None)
        problem = linked_share_problem(int(records), float(linked), prior)
        expected = prior * records * (records - 1) / 2 if prior else 0.0
        return dg.AssetCheckResult(
            passed=problem is None,
            description=problem or f"{linked:,.0f} linked pairs, {expected:,.0f} expected",
            metadata={"linked_pairs": dg.MetadataValue.int(int(linked)),
                      "expected_pairs": dg.MetadataValue.int(round(expected)),
                      "ratio": dg.MetadataValue.float(round(linked / expected, 3)
                                                      if expected else 0.0)},
        )

    @dg.asset_check(
        asset=XREF,
        name="overrides_honoured",
        blocking=True,
        description="Every steward must_link shares a customer and every cannot_link does not.",
    )
    def overrides_honoured(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            xref = con.sql("SELECT source || '|' || source_record_id AS unique_id, customer_id "
                           "FROM matching.customer_xref").pl()
        overrides = read_overrides(registry.overrides_file(), xref.get_column("unique_id"))
        judged = (
            overrides.join(xref, left_on="unique_id_l", right_on="unique_id")
            .join(xref, left_on="unique_id_r", right_on="unique_id", suffix="_r")
            .with_columns((pl.col("customer_id") == pl.col("customer_id_r")).alias("together"))
        )
        broken = judged.filter(
            ((pl.col("decision") == "must_link") & ~pl.col("together"))
            | ((pl.col("decision") == "cannot_link") & pl.col("together"))
        )
        return dg.AssetCheckResult(
            passed=broken.is_empty(),
            description=f"{overrides.height} override(s), {broken.height} not honoured",
            metadata={
                "overrides": dg.MetadataValue.int(overrides.height),
                "not_honoured": dg.MetadataValue.md(frame_to_markdown(
                    broken.select("unique_id_l", "unique_id_r", "decision", "decided_by")
                )),
            },
        )

    @dg.asset_check(
        asset=XREF,
        name="every_record_mapped",
        blocking=True,
        description="Every cleaned record has exactly one customer_id, and nothing else does.",
    )
    def every_record_mapped(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            row = con.sql(
                """
                SELECT
                  (SELECT count(*) FROM cleaned.customer_records) AS records,
                  (SELECT count(*) FROM matching.customer_xref) AS mapped,
                  (SELECT count(*) FROM (SELECT source, source_record_id FROM
                      matching.customer_xref GROUP BY ALL HAVING count(*) > 1)) AS duplicated,
                  (SELECT count(*) FROM cleaned.customer_records c ANTI JOIN
                      matching.customer_xref x USING (source, source_record_id)) AS unmapped,
                  (SELECT count(*) FROM matching.customer_xref WHERE customer_id IS NULL)
                      AS without_id
                """
            ).fetchall()[0]
        records, mapped, duplicated, unmapped, without_id = row
        ok = records == mapped and duplicated == 0 and unmapped == 0 and without_id == 0
        return dg.AssetCheckResult(
            passed=ok,
            description=f"{mapped:,} of {records:,} records mapped",
            metadata={"records": dg.MetadataValue.int(records),
                      "mapped": dg.MetadataValue.int(mapped),
                      "duplicated": dg.MetadataValue.int(duplicated),
                      "unmapped": dg.MetadataValue.int(unmapped),
                      "without_id": dg.MetadataValue.int(without_id)},
        )

    checks = [model_sanity, cluster_size, linked_share, overrides_honoured,
              every_record_mapped]
    truth_file = registry.truth_file()
    if truth_file is not None:

        @dg.asset_check(
            asset=XREF,
            name="accuracy",
            blocking=False,
            description=f"Against the truth file: pairwise F1 >= {cfg.target_pairwise_f1} "
            f"and >= {cfg.target_exact_persons:.0%} of persons reproduced exactly.",
        )
        def accuracy(warehouse: WarehouseResource) -> dg.AssetCheckResult:
            with warehouse.connect() as con:
                xref = con.sql(
                    "SELECT source, source_record_id, customer_id FROM matching.customer_xref"
                ).pl()
            truth = read_truth(truth_file)
            scores = score_clusters(xref, truth)
            merged, split = pair_errors(xref, truth)
            ok = (
                scores["pairwise_f1"] >= cfg.target_pairwise_f1
                and scores["persons_exact_share"] >= cfg.target_exact_persons
            )
            return dg.AssetCheckResult(
                passed=ok,
                severity=dg.AssetCheckSeverity.WARN,
                # Two decimals: 94.96% must not read as the 95% target it misses.
                description=(
                    f"pairwise F1 {scores['pairwise_f1']:.4f} (target "
                    f"{cfg.target_pairwise_f1}), {scores['persons_exact_share']:.2%} of persons "
                    f"exact (target {cfg.target_exact_persons:.0%})"
                ),
                metadata={
                    **{k: dg.MetadataValue.float(round(v, 5)) for k, v in scores.items()},
                    "wrongly_merged_examples": dg.MetadataValue.md(frame_to_markdown(merged)),
                    "wrongly_split_examples": dg.MetadataValue.md(frame_to_markdown(split)),
                },
            )

        checks.append(accuracy)
    return checks
