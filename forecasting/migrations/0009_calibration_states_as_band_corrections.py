"""Interval calibration states become each band's own correction (engine.calibration: a band is
served the sum of its own and every nearer band's). Existing rows held the served log factor of
their band; rewriting each as its difference from the nearer band's keeps every server's served
intervals exactly as they were."""

from django.db import migrations

BANDS = ("0-30m", "30m-2h", "2h-8h")  # engine.calibration.BAND_NAMES, frozen as of this migration


def _by_server_metric(model) -> dict[tuple[int, str], dict[str, object]]:
    by_key: dict[tuple[int, str], dict[str, object]] = {}
    for state in model.objects.filter(band__in=BANDS):
        by_key.setdefault((state.server_id, state.metric), {})[state.band] = state
    return by_key


def served_to_own(apps, schema_editor):
    CalibrationState = apps.get_model("forecasting", "CalibrationState")
    changed = []
    for states in _by_server_metric(CalibrationState).values():
        nearer = (0.0, 0.0)  # served log factors of the nearer band (none: factor 1)
        for band in BANDS:
            state = states.get(band)
            if state is None:
                continue  # no own correction (0): from now on it is served its nearer band's factor
            served = (state.log_lower, state.log_upper)
            state.log_lower, state.log_upper = served[0] - nearer[0], served[1] - nearer[1]
            nearer = served
            changed.append(state)
    CalibrationState.objects.bulk_update(changed, ["log_lower", "log_upper"], batch_size=1000)


def own_to_served(apps, schema_editor):
    CalibrationState = apps.get_model("forecasting", "CalibrationState")
    changed = []
    for states in _by_server_metric(CalibrationState).values():
        total = (0.0, 0.0)
        for band in BANDS:
            state = states.get(band)
            if state is None:
                continue
            total = (total[0] + state.log_lower, total[1] + state.log_upper)
            state.log_lower, state.log_upper = total
            changed.append(state)
    CalibrationState.objects.bulk_update(changed, ["log_lower", "log_upper"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("forecasting", "0008_training_runs")]

    operations = [migrations.RunPython(served_to_own, own_to_served)]
