"""Gates on the matching layer: model sanity, cluster sizes, overrides, coverage, accuracy."""

import dagster as dg

from cdi_pipeline.defs.keys import CLUSTERS, MODEL, XREF
from cdi_pipeline.defs.matching.assets import models_dir
from cdi_pipeline.defs.shared.metadata import check_result
from cdi_pipeline.defs.shared.resources import WarehouseResource
from cdi_pipeline.lib.matching import gates
from cdi_pipeline.lib.matching.evaluation import pair_errors, read_truth, score_clusters
from cdi_pipeline.lib.matching.model_store import load_current_model, model_prior
from cdi_pipeline.lib.matching.sanity import (
    MAX_LINKS_OVER_PRIOR,
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
        name=gates.CLUSTER_SIZE,
        blocking=True,
        additional_deps=[CLUSTERS],
        description=f"No customer holds more than {cfg.max_cluster_size} records (a chain "
        "that glued different people together).",
    )
    def cluster_size(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            return check_result(gates.cluster_size(con, cfg.max_cluster_size))

    @dg.asset_check(
        asset=XREF,
        name=gates.LINKED_SHARE,
        blocking=True,
        additional_deps=[CLUSTERS],
        description="The clusters link no more than "
        f"{MAX_LINKS_OVER_PRIOR:.0f}x the record pairs the model's prior expects (collapse).",
    )
    def linked_share(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            return check_result(gates.linked_share(con, model_prior(models_dir(warehouse))))

    @dg.asset_check(
        asset=XREF,
        name=gates.OVERRIDES_HONOURED,
        blocking=True,
        description="Every steward must_link shares a customer and every cannot_link does not.",
    )
    def overrides_honoured(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            return check_result(gates.overrides_honoured(con, registry.overrides_file()))

    @dg.asset_check(
        asset=XREF,
        name=gates.EVERY_RECORD_MAPPED,
        blocking=True,
        description="Every cleaned record has exactly one customer_id, and nothing else does.",
    )
    def every_record_mapped(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            return check_result(gates.every_record_mapped(con))

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
