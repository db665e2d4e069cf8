"""The model step: reuse the saved model while it fits the data, or train, check and save a
new one; and the parameter table and charts of the model in use."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cdi_pipeline.lib.matching.backends import BackendConfig, open_backend
from cdi_pipeline.lib.matching.input import Connect, prepared_records
from cdi_pipeline.lib.matching.linkers import trained_dialect
from cdi_pipeline.lib.matching.model_store import (
    ModelFileError,
    SavedModel,
    load_current_model,
    save_model,
    tf_columns,
)
from cdi_pipeline.lib.matching.sanity import (
    parameter_table,
    prior_warnings,
    sanity_problems,
    training_warnings,
    untrained_comparisons,
)
from cdi_pipeline.lib.matching.spec import ModelSpec, derive_spec
from cdi_pipeline.lib.matching.tables import PARAMETER_COLUMNS, PARAMETERS_TABLE
from cdi_pipeline.lib.matching.training import term_frequencies, train
from cdi_pipeline.lib.matching.visualisations import write_model_charts
from cdi_pipeline.lib.registry import MatchingConfig
from cdi_pipeline.lib.storage import TableWrite

log = logging.getLogger(__name__)


class ModelRejected(RuntimeError):
    """A freshly trained model failed the sanity rules; it was not promoted."""


@dataclass(frozen=True)
class ModelFit:
    """What the model step hands back: the model in use, whether and why it was trained, and
    its parameter table to write."""

    model: SavedModel
    spec: ModelSpec
    retrain_reason: str | None  # why a new model was trained; None: the saved one is reused
    seconds: float
    parameters: TableWrite
    charts: dict[str, Path]

    @property
    def retrained(self) -> bool:
        """Whether the model was trained in this step (and is to be promoted once written)."""
        return self.retrain_reason is not None

    @property
    def em_sessions(self) -> pl.DataFrame:
        """One row per EM session of the model's training: rule, iterations, convergence."""
        return pl.DataFrame(self.model.training).with_columns(
            pl.col("blocking_rule").list.join(", ")
        )


def retrain_reason(
    current: SavedModel | None, spec: ModelSpec, backend: str, *, requested: bool,
    damaged: str | None = None,
) -> str | None:
    """Why a new model must be trained, or None when `current` fits: no model, a damaged
    one, retraining `requested`, other populated fields than `spec`'s, or another backend."""
    if damaged is not None:
        return damaged
    if requested:
        return "retraining requested in run config"
    if current is None:
        return "no saved model yet"
    if current.spec_fingerprint != spec.fingerprint():
        return "the populated fields changed since the saved model was trained"
    if trained_dialect(current.splink_settings) != backend:
        return (
            f"the saved model was trained on the "
            f"{trained_dialect(current.splink_settings)} backend, "
            f"matching.backend is {backend}"
        )
    return None


def fit_model(
    connect: Connect,
    config: MatchingConfig,
    backend: BackendConfig,
    *,
    models_dir: Path,
    charts_dir: Path,
    retrain: bool = False,
    log: logging.Logger = log,
) -> ModelFit:
    """The model for the cleaned records (read from `connect`): the saved one while it fits,
    else a new one trained on `backend`, checked and saved but not yet promoted.

    A trained model that fails the sanity rules is saved for inspection and ModelRejected
    raised. The caller writes the parameter table, then promotes a retrained model
    (`model_store.promote_model`): a run that fails before leaves the old model current.
    """
    frame = prepared_records(connect, config)
    spec = derive_spec(frame, config.training_rules)
    damaged = None
    try:
        current = load_current_model(models_dir)
    except ModelFileError as exc:
        # A damaged saved model is replaced, not trusted: retrain from the data.
        log.warning(str(exc))
        current, damaged = None, f"the saved model is unusable: {exc}"
    reason = retrain_reason(current, spec, config.backend, requested=retrain, damaged=damaged)
    started = time.monotonic()
    if reason is None:
        model = current
        log.info(f"reusing model {model.version} trained {model.trained_at}")
    else:
        log.info(f"training a new model: {reason} ({frame.height:,} records)")
        model = _train_checked(frame, spec, config, backend, models_dir, log)
    seconds = time.monotonic() - started
    params = parameter_table(model.splink_settings).with_columns(
        pl.lit(model.version).alias("model_version")
    )
    charts = write_model_charts(model, frame, charts_dir)
    return ModelFit(model, spec, reason, seconds,
                    PARAMETERS_TABLE.write(params.select(list(PARAMETER_COLUMNS))), charts)


def _train_checked(
    frame: pl.DataFrame, spec: ModelSpec, config: MatchingConfig, backend: BackendConfig,
    models_dir: Path, log: logging.Logger,
) -> SavedModel:
    """Train a model, reject it if implausible, and save it (not current) with its frozen
    term frequencies."""
    with open_backend(backend) as db_api:
        settings, training, priors = train(db_api, frame, spec, config)
    for warning in training_warnings(training) + prior_warnings(priors):
        log.warning(warning)
    problems = sanity_problems(settings, untrained_comparisons(priors))
    if problems:
        rejected = save_model(models_dir, settings, spec, training, make_current=False,
                              priors=priors)
        raise ModelRejected(
            f"the trained model {rejected.version} is implausible and was not promoted "
            f"(kept for inspection at {rejected.path}):\n  - "
            + "\n  - ".join(problems)
            + "\nThe previous model stays in use."
        )
    tf_tables = term_frequencies(frame, tf_columns(settings))
    return save_model(models_dir, settings, spec, training, make_current=False,
                      tf_tables=tf_tables)
