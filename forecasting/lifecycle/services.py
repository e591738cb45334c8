"""Model lifecycle services without torch: training runs, the promotion rule, decisions, pruning.

The web process (admin actions) and the beat task use these to open a run and queue it; the
training itself (torch) runs in forecasting.lifecycle.retraining on the `training` queue's worker.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction

from forecasting import registry
from forecasting.engine.folders import TEMP_PREFIX
from forecasting.models import ModelVersion, TrainingRun

logger = logging.getLogger(__name__)

# A running training whose heartbeat (every epoch and phase) is older than this lost its worker.
STALE_AFTER = timedelta(minutes=30)
COVERAGE_TARGET = 0.80  # p10-p90 nominal coverage
# "Not worse on coverage". Within 0.75-0.85 the intervals are as honest as a day or two of held-back
# windows can tell (and the live interval calibration moves them a few points): no veto there, so a
# challenger far better on pinball is not kept out by 0.78 -> 0.76. Outside that band, its distance
# to 80 % may exceed the champion's by at most COVERAGE_TOLERANCE.
COVERAGE_BAND = 0.05
COVERAGE_TOLERANCE = 0.03

_TASKS = {
    TrainingRun.Kind.TRAIN: "forecasting.tasks.train_challenger",
    TrainingRun.Kind.COMPARE: "forecasting.tasks.compare_model",
}


# ----------------------------------------------------------------------------------------------
# The promotion rule


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str


def _coverage_worse(c_gap: float, k_gap: float, tolerance: float) -> bool:
    if not math.isfinite(c_gap):
        return True
    return c_gap > COVERAGE_BAND and math.isfinite(k_gap) and c_gap > k_gap + tolerance


def promotion_verdict(
    *, challenger: dict, champion: dict | None, margin: float, coverage_tolerance: float = COVERAGE_TOLERANCE
) -> Verdict:
    """Promote only if pooled pinball is lower by ``margin`` (relative) and coverage is not worse:
    within 0.8 ± COVERAGE_BAND, or |coverage − 0.8| at most ``coverage_tolerance`` beyond the champion's."""
    if champion is None:
        return Verdict(True, "no active model to compare with")
    c_pin, k_pin = challenger.get("pinball", math.nan), champion.get("pinball", math.nan)
    if not (math.isfinite(c_pin) and math.isfinite(k_pin)) or k_pin <= 0:
        return Verdict(False, f"no comparable backtest (challenger pinball {c_pin}, champion {k_pin})")
    gain = 1.0 - c_pin / k_pin
    c_gap = abs(challenger.get("coverage", math.nan) - COVERAGE_TARGET)
    k_gap = abs(champion.get("coverage", math.nan) - COVERAGE_TARGET)
    figures = (
        f"pinball {c_pin:.4f} vs {k_pin:.4f} ({gain:+.1%}, needs {margin:+.1%}); "
        f"coverage {challenger.get('coverage', math.nan):.3f} vs {champion.get('coverage', math.nan):.3f}"
    )
    if gain < margin:
        return Verdict(False, f"not better enough: {figures}")
    if _coverage_worse(c_gap, k_gap, coverage_tolerance):
        return Verdict(False, f"coverage worse: {figures}")
    return Verdict(True, f"better: {figures}")


# ----------------------------------------------------------------------------------------------
# Opening, progress and failure of a run


def _expire_stale(now: datetime) -> int:
    return TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, heartbeat_at__lt=now - STALE_AFTER).update(
        status=TrainingRun.Status.FAILED, finished_at=now, error="expired: no heartbeat (worker died or was killed)"
    )


def _remove_partial_folders() -> None:
    """Folders a killed training left half-written (no run is running when this is called)."""
    models_dir = Path(settings.TFT_MODELS_DIR)
    for path in models_dir.glob(f"{TEMP_PREFIX}*") if models_dir.is_dir() else []:
        shutil.rmtree(path, ignore_errors=True)
        logger.info("removed a partial model folder", extra={"path": str(path)})


def training_run_start(
    *, trigger: str, kind: str = TrainingRun.Kind.TRAIN, challenger_id: int | None = None
) -> TrainingRun | None:
    """Open a run (None while another one runs); stale runs are expired first."""
    now = datetime.now(UTC)
    _expire_stale(now)
    if not TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING).exists():
        _remove_partial_folders()
    champion = registry.active_model_version()
    try:
        with transaction.atomic():
            return TrainingRun.objects.create(
                kind=kind,
                trigger=trigger,
                started_at=now,
                heartbeat_at=now,
                champion=champion,
                challenger_id=challenger_id,
            )
    except IntegrityError:  # the one-running constraint: a training is already running
        return None


def training_run_request(
    *, trigger: str, kind: str = TrainingRun.Kind.TRAIN, challenger_id: int | None = None
) -> TrainingRun | None:
    """Open a run and queue its work on the training queue once the row is committed."""
    run = training_run_start(trigger=trigger, kind=kind, challenger_id=challenger_id)
    if run is not None:
        hours = settings.TFT_RETRAIN_MAX_MINUTES / 60 + 24  # a queue that waits a day is forgotten
        transaction.on_commit(
            lambda: current_app.send_task(_TASKS[kind], kwargs={"run_id": run.pk}, expires=hours * 3600)
        )
    return run


def training_run_claim(*, run_id: int) -> bool:
    """The worker takes the run (compare-and-swap): a redelivered task finds it taken."""
    return bool(
        TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING, progress={}).update(
            progress={"phase": "data"}, heartbeat_at=datetime.now(UTC)
        )
    )


class TrainingRunLostError(RuntimeError):
    """The run is no longer running (expired by a later run): the training must stop."""


def training_run_progress(*, run_id: int, progress: dict) -> None:
    """Progress and heartbeat; raises TrainingRunLostError when the run was expired meanwhile."""
    moved = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(
        progress=progress, heartbeat_at=datetime.now(UTC)
    )
    if not moved:
        raise TrainingRunLostError(f"training run {run_id} is no longer running")


def training_run_fail(*, run_id: int, error: str) -> None:
    TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(
        status=TrainingRun.Status.FAILED, finished_at=datetime.now(UTC), error=error[:2000]
    )


# ----------------------------------------------------------------------------------------------
# Decisions


def _promotion_blocked(run: TrainingRun) -> str:
    active = registry.active_model_version()
    if active is not None and active.activated_by_operator:
        return f"an operator pinned {active.name}: activate the challenger from the admin to switch"
    return ""


@transaction.atomic
def training_run_decide(*, run_id: int, challenger_id: int, metrics: dict) -> TrainingRun:
    """Record the champion/challenger backtests and the decision; promote when the rule says so."""
    run = TrainingRun.objects.select_for_update().get(pk=run_id)
    champion = metrics.get("champion", {}).get("tft") if run.champion_id else None
    verdict = promotion_verdict(
        challenger=metrics["challenger"]["tft"], champion=champion, margin=settings.TFT_PROMOTE_MARGIN
    )
    decision, reason = TrainingRun.Decision.CANDIDATE, verdict.reason
    if run.kind == TrainingRun.Kind.COMPARE:
        decision = TrainingRun.Decision.COMPARED
        reason = ("would be promoted: " if verdict.promote else "would be kept: ") + verdict.reason
    elif verdict.promote and (blocked := _promotion_blocked(run)):
        reason = f"{verdict.reason}; kept because {blocked}"
    elif verdict.promote:
        decision = TrainingRun.Decision.PROMOTED
        registry.model_version_promote(version_id=challenger_id)
    TrainingRun.objects.filter(pk=run_id).update(
        status=TrainingRun.Status.COMPLETE,
        finished_at=datetime.now(UTC),
        challenger_id=challenger_id,
        metrics=metrics,
        decision=decision,
        reason=reason,
    )
    logger.info("training run decided", extra={"training_run": run_id, "decision": decision, "reason": reason})
    run.refresh_from_db()
    return run


def candidates_prune(*, keep: int | None = None) -> int:
    """Delete the folders of retrained versions beyond the newest ``keep`` (never the active one or
    one an operator activated); their rows stay, marked invalid, as the history of decisions."""
    keep = settings.TFT_KEEP_CANDIDATES if keep is None else keep
    old = (
        registry.retrained_versions()
        .filter(valid=True, is_active=False, activated_by_operator=False)
        .order_by("-created_at")[keep:]
    )
    pruned = 0
    for version in list(old):
        path = Path(version.path)
        if path.parent.resolve() == Path(settings.TFT_MODELS_DIR).resolve():  # only our own folders
            shutil.rmtree(path, ignore_errors=True)
        ModelVersion.objects.filter(pk=version.pk, is_active=False).update(
            valid=False, error=f"pruned (kept the newest {keep} candidates)"
        )
        pruned += 1
    return pruned
