"""The source registry: valid files load, and every mistake is named precisely."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cdi_pipeline.lib.registry import RegistryError, load_registry


def _edit(path: Path, change) -> Path:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_valid_registry_loads(small_registry: Path) -> None:
    registry = load_registry(small_registry, require_files=True)
    assert [s.name for s in registry.sources] == ["crm", "erp", "shop"]
    crm = registry.source("crm")
    assert crm.options.delimiter == ";"
    assert registry.file_of(crm) == (small_registry.parent / "sources" / "crm.csv").resolve()
    assert crm.mapped_columns()[0] == "contactnummer"
    assert registry.rejected_share_limit(crm) == 0.05


def test_unknown_key_names_file_source_and_key(small_registry: Path) -> None:
    _edit(small_registry, lambda d: d["sources"][1].update({"delimeter": ";"}))
    with pytest.raises(RegistryError) as err:
        load_registry(small_registry)
    message = str(err.value)
    assert str(small_registry.resolve()) in message
    assert "source 'erp'" in message
    assert "'delimeter'" in message
    assert "unknown key" in message


def test_wrong_type_is_named(small_registry: Path) -> None:
    _edit(small_registry, lambda d: d["sources"][0].update({"trust": "high"}))
    with pytest.raises(RegistryError, match=r"source 'crm', key 'trust'"):
        load_registry(small_registry)


def test_missing_required_key_is_named(small_registry: Path) -> None:
    _edit(small_registry, lambda d: d["sources"][2].pop("record_id"))
    with pytest.raises(RegistryError, match=r"source 'shop', key 'record_id': required key"):
        load_registry(small_registry)


def test_unknown_canonical_field(small_registry: Path) -> None:
    _edit(small_registry, lambda d: d["sources"][0]["fields"].update({"surname": "x"}))
    with pytest.raises(RegistryError, match=r"source 'crm', key 'fields'.*surname"):
        load_registry(small_registry)


def test_path_outside_registry_folder_is_refused(small_registry: Path) -> None:
    _edit(small_registry, lambda d: d["sources"][0].update({"path": "../../etc/passwd"}))
    with pytest.raises(RegistryError, match=r"source 'crm', key 'path'.*outside"):
        load_registry(small_registry)


@pytest.mark.parametrize("name", ['crm"; DROP TABLE x; --', "Crm", "1crm", "a" * 64])
def test_hostile_or_invalid_source_names_are_refused(small_registry: Path, name: str) -> None:
    _edit(small_registry, lambda d: d["sources"][0].update({"name": name}))
    with pytest.raises(RegistryError, match=r"key 'name'"):
        load_registry(small_registry)


def test_duplicate_source_names(small_registry: Path) -> None:
    _edit(small_registry, lambda d: d["sources"][1].update({"name": "crm"}))
    with pytest.raises(RegistryError, match="repeated"):
        load_registry(small_registry)


def test_activity_must_reference_identity_source(small_registry: Path) -> None:
    def add_orders(d):
        d["sources"].append(
            {
                "name": "orders",
                "path": "sources/orders.parquet",
                "format": "parquet",
                "record_id": "order_id",
                "activity": {
                    "kind": "order",
                    "customer": {"source": "nope", "column": "account_id"},
                    "occurred_at": "order_date",
                },
            }
        )

    _edit(small_registry, add_orders)
    with pytest.raises(RegistryError, match="'nope' is not an identity source"):
        load_registry(small_registry)


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "sources.yaml"
    bad.write_text("sources: [unclosed\n")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry(bad)
    with pytest.raises(RegistryError, match="does not exist"):
        load_registry(tmp_path / "nope.yaml")


def test_missing_source_file_when_required(small_registry: Path) -> None:
    (small_registry.parent / "sources" / "erp.parquet").unlink()
    load_registry(small_registry)  # files are only required when asked
    with pytest.raises(RegistryError, match=r"source 'erp': file .*erp.parquet"):
        load_registry(small_registry, require_files=True)


def test_truth_outside_registry_folder_is_refused(small_registry: Path) -> None:
    _edit(small_registry, lambda d: d.update({"truth": "../../secret/persons.csv"}))
    with pytest.raises(RegistryError, match=r"key 'truth'.*outside"):
        load_registry(small_registry)


def test_pre_run_check_prints_the_problem_without_a_traceback(small_registry: Path) -> None:
    """`make run` checks the registry first: a user reads the mistake, not an import stack."""
    check = [sys.executable, "-m", "cdi_pipeline.check_registry", str(small_registry)]
    good = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines()[0].startswith("crm: csv ")
    _edit(small_registry, lambda d: d["sources"][0].update(colour="red"))
    bad = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "source 'crm', key 'colour': unknown key" in bad.stderr
    assert "Traceback" not in bad.stderr + bad.stdout
