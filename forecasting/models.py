from django.conf import settings
from django.db import models

from forecasting.engine.live_calibration import FLEET as FLEET_SCOPE


class ModelVersion(models.Model):
    """One trained model folder under TFT_MODELS_DIR (models/tft_model_<UTC time>/)."""

    name = models.CharField(max_length=128, unique=True)  # the folder name
    path = models.CharField(max_length=512)
    created_at = models.DateTimeField()
    registered_at = models.DateTimeField(auto_now_add=True)
    metrics = models.JSONField(default=dict, blank=True)
    spec = models.JSONField(default=dict, blank=True)
    # Chosen by an operator; when nobody chose, the newest valid folder is active.
    is_active = models.BooleanField(default=False)
    activated_by_operator = models.BooleanField(default=False)
    valid = models.BooleanField(default=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="one_active_model_version"
            )
        ]

    def __str__(self) -> str:
        return self.name


class PredictionRun(models.Model):
    """One fleet forecast. Only a *complete* run is ever served; at most one runs at a time."""

    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETE = "complete"
        FAILED = "failed"
        EXPIRED = "expired"  # its worker died or stalled; a later run took over

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL)
    model_name = models.CharField(max_length=128, blank=True)
    device = models.CharField(max_length=32, blank=True)
    # Once complete: the servers served (every server's current forecast, whichever run made it),
    # and of those the TFT's and the heuristic's; `forecasted` is how many this run forecast itself.
    servers = models.IntegerField(default=0)
    forecasted = models.IntegerField(default=0)
    tft_count = models.IntegerField(default=0)
    fallback_count = models.IntegerField(default=0)
    fallback_reasons = models.JSONField(default=dict, blank=True)  # reason → servers
    chunks_total = models.IntegerField(default=1)
    chunks_done = models.IntegerField(default=0)
    durations = models.JSONField(default=dict, blank=True)  # phase → seconds, summed over chunks
    environment = models.JSONField(default=dict, blank=True)  # the fleet section of /predictions/current
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # The overlap guard: a second run cannot even be inserted while one is running.
            models.UniqueConstraint(
                fields=["status"], condition=models.Q(status="running"), name="one_running_prediction_run"
            )
        ]
        indexes = [models.Index(fields=["status", "-finished_at"], name="run_status_finished_idx")]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class ServerForecast(models.Model):
    """One server's 8-hour forecast within a run."""

    class Method(models.TextChoices):
        TFT = "tft"
        HEURISTIC = "heuristic"

    run = models.ForeignKey(PredictionRun, on_delete=models.CASCADE, related_name="forecasts")
    server = models.ForeignKey("ingest.Server", on_delete=models.CASCADE, related_name="forecasts")
    method = models.CharField(max_length=16, choices=Method.choices)
    fallback_reason = models.CharField(max_length=200, blank=True)
    origin = models.DateTimeField(help_text="start of the first forecast step (just after the last bucket)")
    encoder_steps = models.IntegerField()
    prob_30m = models.FloatField()
    prob_8h = models.FloatField()
    state = models.CharField(max_length=16, blank=True, help_text="dominant state of the last bucket")
    # {metric: {"p10": [HORIZON], "p50": [HORIZON], "p90": [HORIZON], "current": x, "trend": y}} as JSON text:
    # the read path splices it into responses without parsing and re-encoding 1,152 floats a server.
    payload = models.TextField()
    # {metric: {"peak_p50", "peak_p90", "peak_step", "critical", "warning", "prob_30m", "prob_8h"}}
    summary = models.JSONField(default=dict)
    # Alerts this forecast calls for; the run's finalisation turns them into Alert rows.
    alert_candidates = models.JSONField(default=list)
    # What drove the forecast, from the TFT itself (forecasting.engine.explanation): input weights per
    # group and where its attention went; computed for forecasts that rise toward a limit.
    explanation = models.JSONField(default=dict, blank=True)
    # engine.serving.peak_ratios of the summary (the fleet table's order after prob_8h), kept so a
    # 10,000-server table is ordered without decoding 10,000 summaries; null on rows from before it.
    peak_ratio = models.FloatField(null=True, blank=True)
    # The forecast every reader serves for this server: its newest from a complete run. A run forecasts
    # only the servers due (a new closed bucket, a new model), so the others keep an older run's.
    current = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "server"], name="uniq_forecast_run_server"),
            # At most one current forecast per server; also the index of every `current=True` read.
            models.UniqueConstraint(fields=["server"], condition=models.Q(current=True), name="one_current_forecast"),
        ]

    def __str__(self) -> str:
        return f"{self.server_id} in run {self.run_id}"


class AlertThreshold(models.Model):
    """Per-metric warning and critical thresholds (editable in the admin).

    Absolute thresholds are in the metric's unit. Relative ones multiply the server's own recent
    level (the 95th percentile of its context buckets), with `floor` as the smallest threshold.
    """

    metric = models.CharField(max_length=32, unique=True)
    warning = models.FloatField()
    critical = models.FloatField()
    relative = models.BooleanField(default=False)
    floor = models.FloatField(default=0.0)

    class Meta:
        ordering = ["metric"]

    def __str__(self) -> str:
        kind = "× recent p95" if self.relative else ""
        return f"{self.metric}: warning {self.warning}{kind}, critical {self.critical}{kind}"


class Alert(models.Model):
    class Severity(models.TextChoices):
        WARNING = "warning"
        CRITICAL = "critical"

    class State(models.TextChoices):
        ACTIVE = "active"
        ACKNOWLEDGED = "acknowledged"
        RESOLVED = "resolved"

    server = models.ForeignKey("ingest.Server", on_delete=models.CASCADE, related_name="alerts")
    metric = models.CharField(max_length=32)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    rule = models.CharField(max_length=32, help_text="p50_warning, p50_critical, p90_early_warning, trend_projection or incident_prob (metric \"incident\")")
    predicted_value = models.FloatField()
    threshold = models.FloatField()
    steps_ahead = models.IntegerField()
    minutes_ahead = models.IntegerField()
    message = models.CharField(max_length=300)
    opened_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    first_run = models.ForeignKey(PredictionRun, null=True, on_delete=models.SET_NULL, related_name="+")
    last_run = models.ForeignKey(PredictionRun, null=True, on_delete=models.SET_NULL, related_name="+")
    # The severity it opened with (`severity` is the current one; each change is an AlertTransition,
    # pushed re-labelled: forecasting.alerts.push).
    opened_severity = models.CharField(max_length=16, choices=Severity.choices, blank=True, default="")
    # Consecutive runs that no longer predicted it (the hysteresis' M counter; 0 while predicted).
    misses = models.PositiveIntegerField(default=0)
    # Opened within TFT_ALERT_FLAP_WINDOW_MINUTES of the same server × metric's previous alert resolving.
    flap = models.BooleanField(default=False)
    # The forecast origin of the run that last stepped its hysteresis (one step per new origin).
    stepped_origin = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # One open alert per server × metric: a severity change is a transition (AlertTransition).
            models.UniqueConstraint(
                fields=["server", "metric"],
                condition=models.Q(state__in=["active", "acknowledged"]),
                name="one_open_alert_per_server_metric",
            )
        ]
        indexes = [models.Index(fields=["state", "severity"], name="alert_state_severity_idx")]

    def __str__(self) -> str:
        return self.message


class AlertNotification(models.Model):
    """One alert transition to push to Alertmanager / webhooks (forecasting.alerts.push).

    Unique per (alert, transition) for firing and resolved, and per AlertTransition row for a severity
    change (an alert may change severity more than once): a transition is recorded once however often
    the run that caused it is retried. `delivered_at` is set by compare-and-swap, so a notification is
    delivered once even when a retry and the sweeper race; `delivered_targets` keeps a partial fan-out
    from resending to a target that already accepted it. Per alert and target they are sent in the
    order recorded (pk), and one overtaken by a later notification is `superseded`, never sent.
    """

    class Transition(models.TextChoices):
        FIRING = "firing"  # the alert opened
        RESOLVED = "resolved"
        # The open alert's severity changed: the old severity's labels resolve, the new one's fire.
        SEVERITY_CHANGED = "severity_changed"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    transition = models.CharField(max_length=16, choices=Transition.choices)
    # The severity change this pushes (its idempotency key); null for firing and resolved.
    alert_transition = models.OneToOneField(
        "AlertTransition", null=True, blank=True, on_delete=models.CASCADE, related_name="notification"
    )
    created_at = models.DateTimeField()
    # The Alertmanager alert ({labels, annotations, startsAt, endsAt}) as it was at the transition.
    payload = models.JSONField(default=dict)
    attempts = models.IntegerField(default=0)
    claimed_until = models.DateTimeField(null=True, blank=True)  # a worker is delivering it until then
    delivered_targets = models.JSONField(default=list, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    # Never sent (to the targets it still lacked): a later notification of the same alert reached them
    # first, so sending this older state would undo it (forecasting.alerts.push, "Order").
    superseded_at = models.DateTimeField(null=True, blank=True)
    superseded_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "transition"],
                condition=models.Q(transition__in=["firing", "resolved"]),
                name="uniq_alert_notification_transition",
            )
        ]
        indexes = [models.Index(fields=["delivered_at", "created_at"], name="alert_notif_pending_idx")]

    def __str__(self) -> str:
        return f"alert {self.alert_id} {self.transition}"


class ArchivedForecast(models.Model):
    """The first forecast made from each new origin of a server, kept for live scoring.

    Runs are pruned after TFT_KEEP_RUNS (about 100 minutes), too soon for an 8-hour forecast's
    targets to arrive, and a run every minute mostly repeats the same 5-minute origin: this keeps
    one compact row per server per origin (~7 kB with the raw TFT quantiles) until it is scored and the retention passes.
    """

    server = models.ForeignKey("ingest.Server", on_delete=models.CASCADE, related_name="+")
    origin = models.DateTimeField()
    method = models.CharField(max_length=16, choices=ServerForecast.Method.choices)
    model_name = models.CharField(max_length=128, blank=True)
    # float32 (HORIZON, METRICS, 3): p10/p50/p90 per step and metric as served (engine.scoring reads it).
    quantiles = models.BinaryField()
    # The TFT's own p10/p50/p90 before the blend with the last value and the interval calibration,
    # packed to 16 bits per value over each metric's range (engine.scoring.pack_quantiles: 2,336 bytes
    # against the served 4,608); null for a heuristic forecast (nothing blended or calibrated).
    raw_quantiles = models.BinaryField(null=True, blank=True)
    last_values = models.JSONField(help_text="per metric, the last value observed at the origin (the naive forecast)")
    scales = models.JSONField(help_text="per metric, the 1-step naive MAE over the context (the MASE scale)")
    # Bands (engine.spec.BAND_NAMES, in order) already scored: a band's targets all end before the
    # next band's, so "the first k bands" is the whole marker, moved by compare-and-swap.
    bands_scored = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["server", "origin"], name="uniq_archived_server_origin")]
        indexes = [
            models.Index(fields=["bands_scored", "origin"], name="archived_due_idx"),
            models.Index(fields=["origin"], name="archived_origin_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.server_id} from {self.origin.isoformat()}"


class ForecastScore(models.Model):
    """Sums and counts of scored targets per server × metric × band × origin hour × kind × model
    (engine.scoring defines each sum), so 24-hour and 7-day accuracy are sums of rows.

    `kind` served: the forecast as served (blended with the last value, interval-calibrated); raw: the
    TFT's own quantiles of the same forecast, scored against the same targets (TFT forecasts only).
    `model_name`: the model version that made the forecast ('' for the heuristic), so evidence read
    after a model switch can describe the new model (scoring.selectors.blend_evidence)."""

    class Kind(models.TextChoices):
        SERVED = "served"
        RAW = "raw"

    server = models.ForeignKey("ingest.Server", on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=32)
    band = models.CharField(max_length=16)
    hour = models.DateTimeField(help_text="the scored forecasts' origin, truncated to the hour")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.SERVED)
    model_name = models.CharField(max_length=128, blank=True, default="",
                                  help_text="the model version that made the forecast; empty for the heuristic")
    n = models.IntegerField(default=0)
    abs_err = models.FloatField(default=0.0)
    naive_abs_err = models.FloatField(default=0.0)
    scale = models.FloatField(default=0.0)
    pinball = models.FloatField(default=0.0)
    inside = models.IntegerField(default=0)
    below = models.IntegerField(default=0)
    above = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["server", "metric", "band", "hour", "kind", "model_name"],
                                    name="uniq_score_server_metric_band_hour_kind_model")
        ]
        indexes = [models.Index(fields=["hour"], name="score_hour_idx")]

    def __str__(self) -> str:
        return f"{self.server_id} {self.metric} {self.band} @ {self.hour.isoformat()} ({self.kind})"


class CalibrationState(models.Model):
    """A server's interval calibration for one metric × horizon band (engine.calibration): the log
    factors scaling the served quantiles' distance from p50 below and above it, moved by each
    scoring pass's coverage counts (forecasting.scoring.calibration) of the active TFT model's served
    forecasts. `model_name`: that model version; the first pass after a switch resets the states of
    another version (their factors were fitted on the old model's errors)."""

    server = models.ForeignKey("ingest.Server", on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=32)
    band = models.CharField(max_length=16, help_text="engine.spec.BAND_NAMES")
    log_lower = models.FloatField(default=0.0)
    log_upper = models.FloatField(default=0.0)
    n = models.BigIntegerField(default=0, help_text="scored targets taken in so far")
    model_name = models.CharField(max_length=128, blank=True, default="",
                                  help_text="the model version whose served intervals the factors were fitted on")
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["server", "metric", "band"], name="uniq_calibration_server_metric_band")
        ]

    def __str__(self) -> str:
        return f"{self.server_id} {self.metric} {self.band}"


class ProbabilityOutcome(models.Model):
    """A served incident probability (the first of each server × window × origin) and, once the
    window has passed, whether an incident (engine.incidents) started in it: the live calibration's
    data and the live Brier / AUC / reliability (forecasting.scoring.probabilities)."""

    server = models.ForeignKey("ingest.Server", on_delete=models.CASCADE, related_name="+")
    window = models.CharField(max_length=8, help_text="engine.incidents.WINDOWS: 30m or 8h")
    origin = models.DateTimeField()
    profile = models.CharField(max_length=16)
    prob_prior = models.FloatField(help_text="the model's probability, before the live map (the map's input)")
    prob_served = models.FloatField(help_text="what was served, after the live map")
    critical = models.JSONField(help_text="the critical limits served at the origin, per metric (engine.spec.TARGETS)")
    # The compare-and-swap marker: None until resolved, then whether an incident started.
    incident = models.BooleanField(null=True, default=None)
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["server", "window", "origin"], name="uniq_outcome_server_window_origin")
        ]
        indexes = [
            models.Index(fields=["origin"], name="outcome_due_idx", condition=models.Q(incident__isnull=True)),
            models.Index(fields=["window", "origin"], name="outcome_window_origin_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.server_id} {self.window} from {self.origin.isoformat()}"


class ProbabilityCalibration(models.Model):
    """The live recalibration map of one window, fleet-wide or for one profile (engine.live_calibration):
    decayed outcome counts per bin of the prior probability and the fitted map p → σ(a + b·logit p)."""

    FLEET = FLEET_SCOPE

    scope = models.CharField(max_length=16, help_text="'fleet' or a profile")
    window = models.CharField(max_length=8)
    counts = models.JSONField(help_text="per bin of logit(prior): n, events, logit_sum (decayed)")
    a = models.FloatField(default=0.0)
    b = models.FloatField(default=1.0)
    outcomes = models.FloatField(default=0.0, help_text="decayed number of outcomes in the counts")
    events = models.FloatField(default=0.0, help_text="decayed number of incidents in the counts")
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "window"], name="uniq_probability_calibration")]

    def __str__(self) -> str:
        return f"{self.scope} {self.window}"


class IncidentHistory(models.Model):
    """A server's own incident history for one window length (the event model's history inputs,
    engine.event_model.history_inputs): decayed sums over its resolved probability outcomes — hours
    of windows and hours of windows in which an incident started — as of ``updated_at`` (half-life
    engine.event_model.HISTORY_HALF_LIFE_HOURS; readers decay them to their own time)."""

    server = models.ForeignKey("ingest.Server", on_delete=models.CASCADE, related_name="+")
    window = models.CharField(max_length=8, help_text="engine.incidents.WINDOWS: 30m or 8h")
    hours = models.FloatField(default=0.0, help_text="decayed hours of resolved windows")
    events_hours = models.FloatField(default=0.0, help_text="of those, decayed hours with an incident")
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["server", "window"], name="uniq_incident_history")]

    def __str__(self) -> str:
        return f"{self.server_id} {self.window}: {self.events_hours:.2f} of {self.hours:.1f} h"


class TrainingRun(models.Model):
    """One retraining (or comparison) of a challenger against the active model, and its decision.

    Progress (epoch, best validation loss) is written while it runs; the champion/challenger
    backtest figures, the decision and its reason when it ends. At most one runs at a time.
    """

    class Kind(models.TextChoices):
        TRAIN = "train"  # train a challenger, backtest it against the champion, decide
        COMPARE = "compare"  # backtest an existing version against the champion, decide nothing

    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETE = "complete"
        FAILED = "failed"

    class Decision(models.TextChoices):
        NONE = "", "none"
        PROMOTED = "promoted"
        CANDIDATE = "candidate"  # kept, not activated: the reason says why
        COMPARED = "compared"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.TRAIN)
    trigger = models.CharField(max_length=32, help_text="beat, admin or command")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    progress = models.JSONField(default=dict, blank=True)  # epoch, epochs, best_val_loss, phase
    metrics = models.JSONField(default=dict, blank=True)  # data, challenger and champion backtests
    decision = models.CharField(max_length=16, choices=Decision.choices, blank=True, default="")
    reason = models.TextField(blank=True)
    error = models.TextField(blank=True)
    champion = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="championed_runs"
    )
    challenger = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="challenger_runs"
    )

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=models.Q(status="running"), name="one_running_training_run"
            )
        ]

    def __str__(self) -> str:
        return f"training {self.pk} ({self.status}{', ' + self.decision if self.decision else ''})"


class AlertTransition(models.Model):
    """What happened to an alert, in order: the dashboard's timeline per server. Written by
    forecasting.alerts.services in the transaction of the change, with the forecast that caused it."""

    class Kind(models.TextChoices):
        OPENED = "opened"
        SEVERITY_CHANGED = "severity_changed"
        ACKNOWLEDGED = "acknowledged"
        RESOLVED = "resolved"
        SILENCED = "silenced"  # resolved because a maintenance window began

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="transitions")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    at = models.DateTimeField()
    severity = models.CharField(max_length=16, choices=Alert.Severity.choices)  # after the transition
    run = models.ForeignKey(PredictionRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message = models.CharField(max_length=300, blank=True)  # the forecast's message at the time

    class Meta:
        ordering = ["at", "pk"]
        indexes = [models.Index(fields=["alert", "at"], name="alert_transition_at_idx")]

    def __str__(self) -> str:
        return f"{self.alert_id} {self.kind} {self.at:%Y-%m-%d %H:%M}"


class AlertStreak(models.Model):
    """Consecutive runs predicting an alert that is not open yet (the hysteresis' K counter), per
    server × metric; deleted when a run predicts nothing or the alert opens."""

    server = models.ForeignKey("ingest.Server", on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=32)
    hits = models.PositiveIntegerField(default=0)
    stepped_origin = models.DateTimeField(null=True, blank=True)  # see Alert.stepped_origin
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["server", "metric"], name="one_alert_streak_per_server_metric")]

    def __str__(self) -> str:
        return f"{self.server_id} {self.metric}: {self.hits} runs"


class MaintenanceWindow(models.Model):
    """A silence / maintenance window: no alert opens or is pushed for the servers it covers while it
    is on, and its buckets are left out of live scoring, calibration and training data.

    `servers` is a comma-separated list of server names or shell globs ("db-*"); `metric` empty = all."""

    servers = models.CharField(max_length=500, help_text="server names or globs, comma-separated (db-*, web01)")
    metric = models.CharField(max_length=32, blank=True, default="", help_text="empty: every metric")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=300)
    created_by = models.CharField(max_length=150, help_text="the API key's or admin user's name")
    created_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True, help_text="set when ended early")

    class Meta:
        ordering = ["starts_at", "pk"]
        indexes = [models.Index(fields=["ends_at", "starts_at"], name="maintenance_window_span_idx")]
        constraints = [
            models.CheckConstraint(condition=models.Q(ends_at__gt=models.F("starts_at")), name="window_ends_after_start")
        ]

    def __str__(self) -> str:
        return f"{self.servers} {self.starts_at:%Y-%m-%d %H:%M}–{self.ends_at:%H:%M}: {self.reason}"
