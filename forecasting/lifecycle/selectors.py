"""Reads about the model lifecycle (when the active model was trained, why it is active, the last
training run) for /status and the admin. No torch: the web process reads these."""

from __future__ import annotations

from forecasting.models import ModelVersion, TrainingRun


def _promoted_because(version: ModelVersion) -> str:
    promoted = (
        TrainingRun.objects.filter(challenger=version, decision=TrainingRun.Decision.PROMOTED)
        .order_by("-finished_at")
        .values_list("reason", flat=True)
        .first()
    )
    if promoted:
        return f"promoted by training run: {promoted}"
    if version.activated_by_operator:
        return "activated by an operator"
    return "newest valid model folder"


def last_training_run() -> dict | None:
    run = TrainingRun.objects.order_by("-started_at").first()
    if run is None:
        return None
    return {
        "id": run.pk,
        "kind": run.kind,
        "status": run.status,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "decision": run.decision or None,
        "reason": run.reason or run.error or None,
    }


def model_lifecycle(*, version: ModelVersion | None) -> dict:
    """/status's model.trained_at, model.promoted_because and model.last_training."""
    return {
        "trained_at": version.created_at.isoformat() if version else None,
        "promoted_because": _promoted_because(version) if version else None,
        "last_training": last_training_run(),
    }
