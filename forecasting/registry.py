"""Services for trained model folders (models/tft_model_<UTC time>/) and which one is active."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction

from forecasting.engine.folders import ModelFolder, ModelFolderError, is_temp_folder, read_importance, read_model_folder
from forecasting.models import ModelVersion

logger = logging.getLogger(__name__)

FOLDER_PREFIX = "tft_model_"
# metrics.json key written by a retraining: such a folder is a challenger, active only once promoted
RETRAIN_KEY = "retrain"


def _created_at(name: str, info: ModelFolder | None) -> datetime:
    stamp = name.removeprefix(FOLDER_PREFIX)
    for fmt in ("%Y%m%dT%H%M%SZ", "%Y%m%d_%H%M%S", "%Y-%m-%dT%H-%M-%SZ"):
        try:
            return datetime.strptime(stamp, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    if info and info.created_at:
        try:
            return datetime.fromisoformat(info.created_at).astimezone(UTC)
        except ValueError:
            pass
    return datetime.fromtimestamp(0, tz=UTC)


def model_version_register(*, path: Path) -> ModelVersion:
    """Register (or refresh) one model folder; a broken one is kept, marked invalid."""
    try:
        info = read_model_folder(path)
        fields = {"valid": True, "error": "", "spec": info.spec, "metrics": info.metrics}
    except ModelFolderError as exc:
        info = None
        fields = {"valid": False, "error": str(exc)}
    version, _ = ModelVersion.objects.update_or_create(
        name=path.name,
        defaults={"path": str(path), "created_at": _created_at(path.name, info), **fields},
    )
    return version


def model_versions_sync(*, models_dir: Path | None = None) -> list[ModelVersion]:
    """Register every model folder, mark broken ones invalid, and make sure one valid version is active."""
    models_dir = Path(models_dir or settings.TFT_MODELS_DIR)
    seen = []
    for path in sorted(models_dir.glob(f"{FOLDER_PREFIX}*")) if models_dir.is_dir() else []:
        # a folder still being written (or left by a killed training) is not a model
        if not path.is_dir() or is_temp_folder(path.name):
            continue
        seen.append(model_version_register(path=path))
    # Folders that disappeared stay in the table (history) but can no longer be used.
    ModelVersion.objects.exclude(name__in=[v.name for v in seen]).update(valid=False, error="folder missing")
    model_version_ensure_active()
    return seen


def retrained_versions():
    return ModelVersion.objects.filter(metrics__has_key=RETRAIN_KEY)


def active_model_version() -> ModelVersion | None:
    """The model version runs use: the one active and valid row (the one home of this query)."""
    return ModelVersion.objects.filter(is_active=True, valid=True).first()


def model_version_importance(*, version: ModelVersion) -> dict | None:
    """The model's global variable importance (importance.json in its folder), None if it has none."""
    return read_importance(Path(version.path))


def _eligible_versions():
    """Versions the default rule may activate: deployed folders, and retrained ones once promoted
    (a candidate the champion/challenger backtest kept out must not slip in as "the newest")."""
    promoted = retrained_versions().filter(challenger_runs__decision="promoted").values("pk")
    return ModelVersion.objects.filter(valid=True).exclude(
        pk__in=retrained_versions().exclude(pk__in=promoted).values("pk")
    )


@transaction.atomic
def model_version_ensure_active() -> ModelVersion | None:
    """Keep the operator's choice while it is valid; otherwise activate the newest eligible version."""
    current = ModelVersion.objects.select_for_update().filter(is_active=True).first()
    if current and current.valid and current.activated_by_operator:
        return current
    newest = _eligible_versions().order_by("-created_at").first()
    if newest is None:
        ModelVersion.objects.filter(is_active=True).update(is_active=False)
        return None
    if current and current.pk == newest.pk:
        return current
    ModelVersion.objects.filter(is_active=True).update(is_active=False, activated_by_operator=False)
    ModelVersion.objects.filter(pk=newest.pk).update(is_active=True, activated_by_operator=False)
    logger.info("model version activated", extra={"model_version": newest.name, "by": "newest"})
    return ModelVersion.objects.get(pk=newest.pk)


def model_version_activate(*, version_id: int) -> ModelVersion:
    """An operator's choice: this version stays active until another is chosen or it breaks."""
    return _activate(version_id=version_id, by_operator=True)


def model_version_promote(*, version_id: int) -> ModelVersion:
    """A challenger that won its champion/challenger backtest becomes active (not an operator's pin,
    so a later promotion or a newer deployed folder can replace it)."""
    return _activate(version_id=version_id, by_operator=False)


@transaction.atomic
def _activate(*, version_id: int, by_operator: bool) -> ModelVersion:
    version = ModelVersion.objects.select_for_update().get(pk=version_id)
    if not version.valid:
        raise ValueError(f"{version.name} is not a valid model folder: {version.error}")
    ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(
        is_active=False, activated_by_operator=False
    )
    ModelVersion.objects.filter(pk=version.pk).update(is_active=True, activated_by_operator=by_operator)
    logger.info(
        "model version activated",
        extra={"model_version": version.name, "by": "operator" if by_operator else "promotion"},
    )
    version.refresh_from_db()
    return version
