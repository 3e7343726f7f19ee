"""configs/automl.yaml -> an Azure AutoML classification job (azure.ai.ml.automl.classification).

automl.yaml already uses Azure's AutoMLConfig names; every key maps to the SDK v2 job except NO_AZURE_MEANING.
"""

from __future__ import annotations

import math
from typing import Any

from opml.config import AutoMLSettings
from opml.errors import ConfigError
from opml.names import OPML_ONLY_ALGORITHMS

# opml metric name (as automl.yaml and AutoML's logged metrics spell it) -> ClassificationPrimaryMetrics value.
PRIMARY_METRICS = {
    "AUC_weighted": "AUCWeighted",
    "accuracy": "Accuracy",
    "average_precision_score_weighted": "AveragePrecisionScoreWeighted",
    "norm_macro_recall": "NormMacroRecall",
    "precision_score_weighted": "PrecisionScoreWeighted",
}

# automl.yaml key -> where it goes on Azure.
MAPPING = {
    "task": "automl.classification(...)",
    "experiment_name": "experiment_name",
    "model_name": "the registered model's name (models.create_or_update)",
    "primary_metric": "primary_metric",
    "label_column_name": "target_column_name",
    "n_cross_validations": "n_cross_validations",
    "validation_size": "validation_data_size",
    "experiment_timeout_seconds": "limits.timeout_minutes (rounded up)",
    "max_trials": "limits.max_trials",
    "experiment_exit_score": "limits.exit_score",
    "enable_early_stopping": "limits.enable_early_termination",
    "allowed_models": "training.allowed_training_algorithms",
    "blocked_models": "training.blocked_training_algorithms",
    "enable_voting_ensemble": "training.enable_vote_ensemble",
    "enable_stack_ensemble": "training.enable_stack_ensemble",
    "featurization": "featurization.mode",
    "dataset": "training_data (the MLTable asset) and target_column_name",
}
NO_AZURE_MEANING = ("decision_threshold", "model_selection", "selection_tolerance", "random_seed", "drop_columns")


def unmapped_note(settings: AutoMLSettings) -> str:
    """One line naming the settings Azure AutoML has no equivalent for (empty when all are at their defaults)."""
    keys = ", ".join(NO_AZURE_MEANING)
    return (f"not used on Azure ML (no AutoML equivalent): {keys}; "
            "Azure picks the best child by primary_metric and labels by argmax")


def azure_metric(name: str) -> str:
    """automl.yaml primary_metric -> Azure's enum value; a one-line error before any request."""
    try:
        return PRIMARY_METRICS[name]
    except KeyError:
        raise ConfigError(f"automl.yaml: primary_metric: {name!r} is not an Azure AutoML classification metric",
                          f"use one of {', '.join(PRIMARY_METRICS)}") from None


def opml_metric(job: Any) -> str | None:
    """An AutoML job's primary metric under opml's (automl.yaml's) name; None when it is not one opml knows."""
    value = getattr(job, "primary_metric", None)
    value = str(getattr(value, "value", value) or "")
    return next((k for k, v in PRIMARY_METRICS.items() if v.lower() == value.lower()), None)


def build_job(settings: AutoMLSettings, *, compute: str, training_data: str, name: str | None = None) -> Any:
    """The AutoML classification job for `settings` on `compute`, reading the MLTable asset `training_data`."""
    from azure.ai.ml import Input, automl
    from azure.ai.ml.constants import AssetTypes

    metric = azure_metric(settings.primary_metric)
    opml_only = [m for m in settings.allowed_models or [] if m in OPML_ONLY_ALGORITHMS]
    if opml_only:
        raise ConfigError(f"automl.yaml: allowed_models: {', '.join(opml_only)} is opml's addition, not an Azure "
                          "AutoML algorithm", "remove it from allowed_models, or train with the local backend")
    kwargs: dict[str, Any] = {}
    if settings.validation_size is not None:
        kwargs["validation_data_size"] = settings.validation_size
    else:
        kwargs["n_cross_validations"] = settings.cv_folds
    try:
        job = automl.classification(
            compute=compute, experiment_name=settings.experiment_name, name=name,
            training_data=Input(type=AssetTypes.MLTABLE, path=_azureml(training_data)),
            target_column_name=settings.label, primary_metric=metric, enable_model_explainability=True,
            tags={"opml.model_name": settings.model_name, "opml.primary_metric": settings.primary_metric},
            **kwargs)
    except KeyError as exc:  # the SDK's answer to a metric name it does not know
        raise ConfigError(f"automl.yaml: primary_metric: {exc} is not accepted by Azure AutoML") from None
    job.set_limits(timeout_minutes=max(1, math.ceil(settings.experiment_timeout_seconds / 60)),
                   max_trials=settings.max_trials, exit_score=settings.experiment_exit_score,
                   enable_early_termination=settings.enable_early_stopping)
    job.set_training(allowed_training_algorithms=settings.allowed_models,
                     blocked_training_algorithms=[m for m in settings.blocked_models
                                                  if m not in OPML_ONLY_ALGORITHMS] or None,
                     enable_vote_ensemble=settings.enable_voting_ensemble,
                     enable_stack_ensemble=settings.enable_stack_ensemble)
    job.set_featurization(mode=settings.featurization)
    return job


def _azureml(ref: str) -> str:
    return ref if ref.startswith(("azureml:", "https://", "http://")) else f"azureml:{ref}"
