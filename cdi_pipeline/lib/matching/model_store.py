"""The model store: trained models saved as JSON files named by a content hash, with their
frozen term-frequency tables, and the pointer to the one later runs reuse.

A model is reused until retraining is asked for or the data's shape changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from cdi_pipeline.lib.matching.spec import ModelSpec

MODEL_FORMAT = 1


def tf_columns(settings_dict: dict[str, Any]) -> list[str]:
    """Columns the model adjusts by term frequency."""
    cols = {
        lv["tf_adjustment_column"]
        for c in settings_dict["comparisons"]
        for lv in c["comparison_levels"]
        if lv.get("tf_adjustment_column")
    }
    return sorted(cols)


@dataclass(frozen=True)
class SavedModel:
    """A trained model as stored on disk."""

    version: str
    spec_fingerprint: str
    trained_at: str
    training: list[dict[str, Any]]
    splink_settings: dict[str, Any]
    path: Path
    term_frequencies: dict[str, pl.DataFrame] = field(default_factory=dict)
    # Comparisons EM could not train and the prior m each uses (`apply_identifier_priors`).
    priors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tf_dir(self) -> Path:
        """Folder of the model's frozen term-frequency tables."""
        return tf_dir_for(self.path)

    @property
    def as_json(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "version": self.version,
            "spec_fingerprint": self.spec_fingerprint,
            "trained_at": self.trained_at,
            "training": self.training,
            "priors": self.priors,
            "splink_settings": self.splink_settings,
        }


def tf_dir_for(model_path: Path) -> Path:
    """`match_model_<version>.tf/` next to `match_model_<version>.json`."""
    return model_path.with_suffix(".tf")


# Keys of Splink's saved settings that vary between trainings of the same model.
VOLATILE_SETTINGS = frozenset({"linker_uid"})


def model_version(
    splink_settings_dict: dict[str, Any], tf_tables: dict[str, pl.DataFrame] | None = None
) -> str:
    """Content hash of settings, parameters and frozen term frequencies, as `m` + 12 hex
    digits: the letter keeps a version from ever reading as a number (an all-digit hash
    looks like an unmasked phone number to the analyst file's leak check)."""
    # `linker_uid` is a name Splink draws at random for each linker's cache tables, not a
    # model parameter: hashing it gave two trainings with identical parameters two versions,
    # so every fresh warehouse wrote another model_version into xref, history and snapshots.
    content = {k: v for k, v in splink_settings_dict.items() if k not in VOLATILE_SETTINGS}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode())
    for col, table in sorted((tf_tables or {}).items()):
        # CSV of the sorted table: the same content gives the same bytes in any polars version.
        digest.update(col.encode())
        digest.update(table.sort(table.columns).write_csv().encode())
    return "m" + digest.hexdigest()[:12]


def current_model_path(models_dir: Path) -> Path:
    """The pointer file naming the model later runs reuse."""
    return models_dir / "current.json"


class ModelFileError(RuntimeError):
    """A saved model cannot be used; the message names the file and the way out."""


_RETRAIN_HINT = (
    "materialise matching/model with run config {'retrain': true} to train a new one"
)


def load_current_model(models_dir: Path) -> SavedModel | None:
    """The model recorded as current, or None when none was trained yet."""
    pointer = current_model_path(models_dir)
    if not pointer.is_file():
        return None
    try:
        version = json.loads(pointer.read_text(encoding="utf-8"))["version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{pointer} is not a valid model pointer ({exc}); "
                             + _RETRAIN_HINT) from None
    return load_model(models_dir / f"match_model_{version}.json")


def model_prior(models_dir: Path) -> float | None:
    """The current model's probability that two random records match (None: no model)."""
    model = load_current_model(models_dir)
    return model.splink_settings.get("probability_two_random_records_match") if model else None


def load_model(path: Path) -> SavedModel:
    """Read a saved model file and its frozen term-frequency tables."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"model file {path} cannot be read ({exc}); "
                             + _RETRAIN_HINT) from None
    if data.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path}: unsupported model format {data.get('format')!r}; "
                             + _RETRAIN_HINT)
    expected = set(tf_columns(data["splink_settings"]))
    found = {f.stem for f in tf_dir_for(path).glob("*.parquet")}
    if found != expected:
        # Without them Splink would silently recompute frequencies from today's data and
        # scores (and customer ids) would drift.
        raise ModelFileError(
            f"{tf_dir_for(path)} should hold term-frequency tables for {sorted(expected)}, "
            f"found {sorted(found)}; " + _RETRAIN_HINT
        )
    return SavedModel(
        version=data["version"],
        spec_fingerprint=data["spec_fingerprint"],
        trained_at=data["trained_at"],
        training=data["training"],
        # Models saved before priors were recorded carry none.
        priors=data.get("priors", []),
        splink_settings=data["splink_settings"],
        path=path,
        term_frequencies={
            f.stem: pl.read_parquet(f) for f in sorted(tf_dir_for(path).glob("*.parquet"))
        },
    )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_model(
    models_dir: Path,
    settings_dict: dict[str, Any],
    spec: ModelSpec,
    training: list[dict[str, Any]],
    *,
    make_current: bool,
    tf_tables: dict[str, pl.DataFrame] | None = None,
    priors: list[dict[str, Any]] | None = None,
) -> SavedModel:
    """Write a model file (named by its version) and, if asked, point `current.json` at it.

    The term-frequency tables are written first and the JSON last, so a model file on disk
    always has its tables.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    tf_tables = tf_tables or {}
    version = model_version(settings_dict, tf_tables)
    target = tf_dir_for(models_dir / f"match_model_{version}.json")
    # Staging folders left by a killed run are debris: runs are serialised by the pool.
    for debris in models_dir.glob(".match_model_*.tf.tmp*"):
        shutil.rmtree(debris, ignore_errors=True)
    staging = target.with_name(f".{target.name}.tmp{os.getpid()}")
    staging.mkdir(parents=True)
    for col, table in tf_tables.items():
        table.write_parquet(staging / f"{col}.parquet")
    if target.exists():
        shutil.rmtree(staging)
    else:
        os.replace(staging, target)
    model = SavedModel(
        version=version,
        spec_fingerprint=spec.fingerprint(),
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        training=training,
        splink_settings=settings_dict,
        path=models_dir / f"match_model_{version}.json",
        term_frequencies=tf_tables,
        priors=priors or [],
    )
    _atomic_write(model.path, json.dumps(model.as_json, indent=2, default=str))
    if make_current:
        promote_model(models_dir, model)
    return model


def promote_model(models_dir: Path, model: SavedModel) -> None:
    """Make a saved model the one later runs reuse."""
    _atomic_write(
        current_model_path(models_dir),
        json.dumps({"version": model.version, "promoted_at": datetime.now(UTC).isoformat()}),
    )



def model_for_spec(models_dir: Path, spec: ModelSpec) -> SavedModel:
    """The current model, which matching scores with; an error when none was trained or it
    was trained for other fields than `spec` (the data's) compares."""
    model = load_current_model(models_dir)
    if model is None:
        raise RuntimeError("no trained model: materialise matching/model first")
    if model.spec_fingerprint != spec.fingerprint():
        raise RuntimeError(
            f"model {model.version} was trained for other fields than the data now has; "
            "materialise matching/model (it retrains automatically)"
        )
    return model
