"""The code location loads, and its asset keys, checks and jobs are the ones we expect."""

from __future__ import annotations

import pytest

from cdi_pipeline.definitions import build_definitions, defs
from cdi_pipeline.lib.registry import RegistryError
from cdi_pipeline.settings import DEFAULT_REGISTRY

EXPECTED_ASSETS = [
    "cleaned/activities",
    "cleaned/customer_records",
    "cleaned/quarantine",
    "enrichment/customer_enrichment",
    "enrichment/customer_segment_snapshots",
    "enrichment/customer_snapshots",
    "enrichment/customer_xref_snapshots",
    "golden/customer_360",
    "golden/customer_features",
    "golden/customers",
    "golden/field_lineage",
    "governance/erasure_receipts",
    "governance/suppression_list",
    "matching/clusters",
    "matching/customer_id_map",
    "matching/customer_xref",
    "matching/id_history",
    "matching/model",
    "matching/pairs",
    "matching/review_queue",
    "published/analytics",
    "quality/field_profile",
    "raw/crm_contacts",
    "raw/erp_customers",
    "raw/newsletter_signups",
    "raw/support_tickets",
    "raw/webshop_accounts",
    "raw/webshop_orders",
    "segments/activation_exports",
    "segments/customer_segments",
    "segments/segment_summary",
]

EXPECTED_CHECKS = [
    "cleaned/customer_records:conservation",
    "cleaned/customer_records:contract",
    "cleaned/customer_records:rejected_share",
    "golden/customer_360:one_row_per_customer",
    "golden/customers:lineage_complete",
    "golden/customers:one_row_per_customer",
    # accuracy exists because the bundled registry names a truth file
    "matching/customer_xref:accuracy",
    "matching/customer_xref:cluster_size",
    "matching/customer_xref:every_record_mapped",
    "matching/customer_xref:linked_share",
    "matching/customer_xref:overrides_honoured",
    "matching/model:model_sanity",
    "published/analytics:no_direct_identifiers",
    "quality/field_profile:invalid_value_share",
    "segments/activation_exports:only_contactable_exported",
    "segments/customer_segments:every_customer_segmented",
]


def test_bundled_definitions_snapshot() -> None:
    repo = defs.get_repository_def()
    keys = sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys())
    assert keys == EXPECTED_ASSETS
    checks = sorted(
        f"{c.asset_key.to_user_string()}:{c.name}" for c in repo.asset_graph.asset_check_keys
    )
    assert checks == EXPECTED_CHECKS
    assert sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")) == [
        "full_refresh",
        "incremental_refresh",
        "publish_refresh",
        "quarterly_refresh",
    ]
    assert sorted(s.name for s in repo.sensor_defs) == [
        "incoming_files_sensor",
        "publish_after_incremental",
    ]
    assert {s.name: s.cron_schedule for s in repo.schedule_defs} == {
        "quarterly_refresh_schedule": "0 3 1 1,4,7,10 *"
    }


def test_full_refresh_covers_every_asset() -> None:
    job = defs.resolve_job_def("full_refresh")
    selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert selected == set(EXPECTED_ASSETS)


def test_every_asset_and_check_is_described() -> None:
    repo = build_definitions(DEFAULT_REGISTRY).get_repository_def()
    graph = repo.asset_graph
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 20, key
        assert node.group_name == key.path[0], key  # layer = key prefix = group
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        assert spec.description, check_key


def test_registry_error_surfaces_at_load(tmp_path) -> None:
    bad = tmp_path / "sources.yaml"
    bad.write_text("sources:\n  - name: x\n    path: a.csv\n    format: xml\n    record_id: id\n")
    with pytest.raises(RegistryError, match=r"source 'x', key 'format'"):
        build_definitions(bad, tmp_path / "wh")


def _defined_in(definition) -> str:
    """The module whose function computes an asset or check."""
    return definition.op.compute_fn.decorated_fn.__module__


def test_every_asset_lives_in_its_layer_folder_group_and_schema() -> None:
    """A reader who knows an asset's key finds its code in `defs/<prefix>/`, its group and its
    DuckDB schema under the same name."""
    repository = defs.get_repository_def()
    misplaced = []
    for assets_def in set(repository.assets_defs_by_key.values()):
        module = _defined_in(assets_def)
        for key in assets_def.keys:
            layer = key.path[0]
            if not module.startswith(f"cdi_pipeline.defs.{layer}."):
                misplaced.append(f"{key.to_user_string()} defined in {module}")
            if assets_def.group_names_by_key[key] != layer:
                misplaced.append(
                    f"{key.to_user_string()} in group {assets_def.group_names_by_key[key]}"
                )
    for check_def in set(repository.asset_checks_defs_by_key.values()):
        module = _defined_in(check_def)
        for check_key in check_def.check_keys:
            layer = check_key.asset_key.path[0]
            if not module.startswith(f"cdi_pipeline.defs.{layer}."):
                misplaced.append(f"check {check_key.name} on {layer} defined in {module}")
    assert misplaced == []
