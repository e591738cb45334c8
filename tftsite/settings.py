"""tftsite settings: one file, driven by environment variables (see README and .env.example).

With no environment set the service runs on embedded defaults: a SQLite file in WAL mode and a
filesystem Celery broker, both under TFT_DATA_DIR. With DATABASE_URL / CELERY_BROKER_URL it runs on
Postgres and Redis. The code path is the same in both cases.
"""

import os
from pathlib import Path

from forecasting.engine import alert_rules
from forecasting.engine import live_calibration as live_map
from forecasting.engine.spec import METRICS, STATES, STEP_MINUTES
from tftsite.env import (
    ConfigError,
    database_from_url,
    env_bool,
    env_choice,
    env_crontab,
    env_float,
    env_http_url,
    env_http_urls,
    env_int,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DATABASE_URL = env_str("DATABASE_URL")
# Embedded mode (no DATABASE_URL) is the zero-configuration local setup, so DEBUG defaults on there;
# a deployment on Postgres defaults to production behaviour (secret key and API key required).
DEBUG = env_bool("DEBUG", not DATABASE_URL)

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ConfigError(
            "DJANGO_SECRET_KEY is required when DEBUG is off "
            "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))')"
        )
    # Only for DEBUG: a key that is obviously not for production.
    SECRET_KEY = "insecure-debug-only-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ConfigError("ALLOWED_HOSTS is required when DEBUG is off (comma-separated host names)")

# Where the embedded defaults keep their files (SQLite database, filesystem broker, beat schedule).
DATA_DIR = Path(env_str("TFT_DATA_DIR", str(BASE_DIR / "var"))).resolve()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / Redoc assets as local static files (docs work offline)
    "access",
    "ingest",
    "forecasting",
    "dashboard",
    "protocols",
]

MIDDLEWARE = [
    "tftsite.db_release.ReleaseConnectionsMiddleware",  # first: the response's last stop (tftsite/db_release.py)
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files from gunicorn, no separate server
    "access.middleware.CorsMiddleware",
    "access.middleware.DatabaseUnavailableMiddleware",
    "ingest.feed_metrics.FeedMetricsMiddleware",  # feed latency and record outcomes for GET /metrics
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tftsite.urls"
WSGI_APPLICATION = "tftsite.wsgi.application"
ASGI_APPLICATION = "tftsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
if DATABASE_URL:
    DATABASES = {"default": database_from_url("DATABASE_URL", DATABASE_URL)}
    # WSGI workers keep one persistent connection per thread. Under ASGI each request has its own
    # context, so tftsite/asgi.py sets TFT_DB_POOL_SIZE: a psycopg pool per process (Django then
    # needs CONN_MAX_AGE 0; tftsite/db_release.py gives the connection back once the body is built).
    _pool_size = env_int("TFT_DB_POOL_SIZE", 0, minimum=0)
    if _pool_size:
        DATABASES["default"]["OPTIONS"]["pool"] = {"min_size": 1, "max_size": _pool_size, "timeout": 3}
        DATABASES["default"]["CONN_MAX_AGE"] = 0
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env_int("TFT_DB_CONN_MAX_AGE", 60, minimum=0)
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "tftsite.sqlite3"),
            "OPTIONS": {
                # Web and worker write concurrently: WAL lets readers run beside one writer, the
                # busy timeout makes a second writer wait instead of failing, and IMMEDIATE takes
                # the write lock at BEGIN so two writers never deadlock on a lock upgrade.
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": ("PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA busy_timeout=20000;"),
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# The dashboard's own login page (styled like it); after logging out, back to it.
LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:fleet"
LOGOUT_REDIRECT_URL = "dashboard:login"

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# The admin lists thousands of metric records: never count the whole table for pagination.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("TFT_MAX_BODY_BYTES", 16 * 1024 * 1024, minimum=1024)

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["access.parsers.SafeJSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "access.errors.exception_handler",
    # Rate limits key on the client address: trust X-Forwarded-For only for this many proxies.
    "NUM_PROXIES": env_int("TFT_NUM_PROXIES", 0, minimum=0),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# --- API docs (GET /api/schema/, /api/docs/, /api/redoc/) -----------------------------------------
SPECTACULAR_SETTINGS = {
    "TITLE": "tftsite API",
    "DESCRIPTION": "Server metrics in (POST /feed/data), 8-hour TFT forecasts, incident probabilities and "
    "alerts out. The contract is the Production Integration Guide; GET /metrics (Prometheus "
    "text format) is described in the README.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "tftsite.openapi.strip_trailing_slashes",
        "tftsite.openapi.either_shape_any_of",
    ],
    "APPEND_COMPONENTS": {
        "securitySchemes": {"ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
    },
}

# --- Product settings -----------------------------------------------------------------------
TFT_API_KEY = env_str("TFT_API_KEY")
TFT_WARMUP_RECORDS = env_int("TFT_WARMUP_RECORDS", 150, minimum=1)
# Pinned to the engine spec: the trained model's grid is fixed, so the step is not configurable.
TFT_STEP_MINUTES = STEP_MINUTES
TFT_RETENTION_DAYS = env_int("TFT_RETENTION_DAYS", 14, minimum=2)
TFT_MAX_BATCH_RECORDS = env_int("TFT_MAX_BATCH_RECORDS", 10_000, minimum=1)
# Rollups are tiny (288 rows per server per day) and feed 24 h of model context: keep them longer.
TFT_ROLLUP_RETENTION_DAYS = env_int("TFT_ROLLUP_RETENTION_DAYS", 90, minimum=2)
TFT_MAX_FUTURE_SECONDS = 300  # records more than 5 minutes ahead of our clock are rejected
TFT_PREDICTION_INTERVAL_SECONDS = env_int("TFT_PREDICTION_INTERVAL_SECONDS", 60, minimum=5)
# A forecast whose origin (just after the server's newest bucket) is older than this at the run's
# start continues old data: it is served marked `stale` and /status counts it.
TFT_STALE_AFTER_MINUTES = env_int("TFT_STALE_AFTER_MINUTES", 15, minimum=1)
# A server from which nothing has arrived for longer than this is "silent": counted out of the
# fleet's warm-up (a mistyped name's two stray records would otherwise hold "Warming up: 20/21" for
# as long as the name stays) and shown as silent in /status and on the dashboard. It counts again
# with its next batch. Arrival time, not metric time: a live feeder's backfill is not silence.
TFT_SERVER_SILENT_AFTER_MINUTES = env_int("TFT_SERVER_SILENT_AFTER_MINUTES", 180, minimum=1)
# PostgreSQL: a batch whose servers are all past warm-up and feeding appends its rollup and counter
# increments to ingest_pendingfold instead of updating a server, a rollup and a day-count row per
# distinct server (docs/ingest-guide-shape.md, round 4). A later batch folds them in once the oldest
# has waited this long; readers of rollups and counts fold first, and the beat folds what a quiet
# feed leaves (TFT_INGEST_FOLD_BEAT_SECONDS). A fold sums a server's batches into one row update only
# when its period covers several of them: at the guide's 5 s cadence, 30 s folds six batches per server
# (the 2 s default does that only for faster feeds, e.g. backfills); larger also means larger folds
# for the readers that fold first. At most 60 s: below the 5-minute silent margin of a settled server.
TFT_INGEST_FOLD_AFTER_SECONDS = env_float("TFT_INGEST_FOLD_AFTER_SECONDS", 2.0, minimum=0.0, maximum=60.0)
TFT_INGEST_FOLD_BEAT_SECONDS = env_int("TFT_INGEST_FOLD_BEAT_SECONDS", 10, minimum=1)
# The feed response's servers_tracked / servers_ready count every server row: 11-18 ms at 100,000
# servers, on every batch (docs/ingest-guide-shape.md, round 5). A batch of settled servers cannot
# change them, so its response may reuse this process's counts from up to this many seconds ago (a
# server appearing through another process, or going silent, shows that much later); any other
# batch counts afresh. 0 = count on every batch.
TFT_FEED_SERVER_COUNTS_MAX_AGE_SECONDS = env_float("TFT_FEED_SERVER_COUNTS_MAX_AGE_SECONDS", 2.0, minimum=0.0,
                                                   maximum=60.0)  # fmt: skip
# Ready servers silent for longer than this are not forecast (0 = forecast them anyway).
TFT_SERVER_STALE_HOURS = env_int("TFT_SERVER_STALE_HOURS", 24, minimum=0)
# Scheduled runs forecast only the servers due: a 5-minute bucket closed since their current forecast,
# no forecast yet, or a new active model; the other servers keep serving their current forecast
# (forecasting.runs.selectors.due_server_ids). False: every ready server on every run (the old schedule).
TFT_PREDICTION_DUE_ONLY = env_bool("TFT_PREDICTION_DUE_ONLY", True)
# The due servers are spread over this many runs of each bucket (server id modulo this is a server's
# slot: the run that many intervals into the bucket takes it, or any later one); 0 = the runs a bucket
# holds (5 minutes / TFT_PREDICTION_INTERVAL_SECONDS, 5 at 60 s); 1 = all at the first run after it closes.
TFT_PREDICTION_STAGGER_RUNS = env_int("TFT_PREDICTION_STAGGER_RUNS", 0, minimum=0)
# Servers per prediction task: larger fleets fan out over several workers.
TFT_PREDICTION_CHUNK_SIZE = env_int("TFT_PREDICTION_CHUNK_SIZE", 512, minimum=1)
# A running run whose heartbeat is older than this is expired (its worker died).
TFT_RUN_STALE_SECONDS = env_int("TFT_RUN_STALE_SECONDS", 180, minimum=10)
# Complete runs kept for history; older ones are pruned with their forecasts.
TFT_KEEP_RUNS = env_int("TFT_KEEP_RUNS", 100, minimum=2)
# Live scoring (forecasting.scoring.services): score aggregates (and forecasts never scored) are
# kept this long, so the 7-day accuracy always has its 7 days; at most this many archived forecasts
# are scored per pass, oldest first, so a backlog costs several passes rather than one long one.
TFT_SCORE_RETENTION_DAYS = env_int("TFT_SCORE_RETENTION_DAYS", 8, minimum=1)
TFT_SCORE_MAX_PER_PASS = env_int("TFT_SCORE_MAX_PER_PASS", 5000, minimum=1)
TFT_SCORE_INTERVAL_SECONDS = env_int("TFT_SCORE_INTERVAL_SECONDS", 300, minimum=30)
# Incident probabilities (issue 22): the one incident definition is engine.incidents. A threshold
# incident is a critical limit reached for at least this many consecutive 5-minute buckets (one noisy
# bucket is not an incident); a reported incident is a bucket whose dominant state is one of these.
TFT_INCIDENT_MIN_BUCKETS = env_int("TFT_INCIDENT_MIN_BUCKETS", 2, minimum=1, maximum=12)
TFT_INCIDENT_STATES = tuple(env_list("TFT_INCIDENT_STATES", ["critical_issue"]))
if not TFT_INCIDENT_STATES or set(TFT_INCIDENT_STATES) - set(STATES):
    raise ConfigError(f"TFT_INCIDENT_STATES={','.join(TFT_INCIDENT_STATES)!r}: each must be one of {', '.join(STATES)}")
# Live calibration of the served probabilities (forecasting.scoring.probabilities, engine.live_calibration):
# the trained probabilities count as this many outcomes' worth of evidence (the map's prior precision; the
# slope's is TFT_PROBABILITY_SLOPE_PRIOR_FACTOR times firmer: ranking is the model's, the rate the fleet's),
# outcome counts halve every TFT_PROBABILITY_HALF_LIFE_HOURS so the map follows the fleet, a profile gets
# its own map once it has this many (decayed) outcomes, and a pass resolves at most this many outcomes.
# The defaults live in engine.live_calibration, which the backtest's replay of these maps also reads.
TFT_PROBABILITY_PRIOR_WEIGHT = env_float("TFT_PROBABILITY_PRIOR_WEIGHT", live_map.DEFAULT_PRIOR_WEIGHT, minimum=0.001)
TFT_PROBABILITY_SLOPE_PRIOR_FACTOR = env_float(
    "TFT_PROBABILITY_SLOPE_PRIOR_FACTOR", live_map.DEFAULT_SLOPE_PRIOR_FACTOR, minimum=0.001
)
TFT_PROBABILITY_HALF_LIFE_HOURS = env_float(
    "TFT_PROBABILITY_HALF_LIFE_HOURS", live_map.DEFAULT_HALF_LIFE_HOURS, minimum=1.0
)
TFT_PROBABILITY_PROFILE_MIN_OUTCOMES = env_int(
    "TFT_PROBABILITY_PROFILE_MIN_OUTCOMES", live_map.DEFAULT_PROFILE_MIN_OUTCOMES, minimum=1
)
TFT_PROBABILITY_MAX_PER_PASS = env_int("TFT_PROBABILITY_MAX_PER_PASS", 20000, minimum=1)
# Live probability scores (/status, /metrics, /probabilities/reliability) cover the outcomes of this many days.
TFT_PROBABILITY_SCORE_DAYS = env_int("TFT_PROBABILITY_SCORE_DAYS", 7, minimum=1)
TFT_DEVICE = env_choice("TFT_DEVICE", "auto", ("auto", "cpu", "cuda"))
TFT_GPU_QUEUE = env_str("TFT_GPU_QUEUE", "gpu")
# torch CPU threads in the prediction worker (0 = torch's default, all cores). On a machine whose
# cores are shared with the web server and the database, 1 is often faster: OpenMP threads that
# lose their core wait on each other.
TFT_TORCH_THREADS = env_int("TFT_TORCH_THREADS", 0, minimum=0)
TFT_MODELS_DIR = Path(env_str("TFT_MODELS_DIR", str(BASE_DIR / "models"))).resolve()
# Retraining on the fleet's own data (forecasting.lifecycle.services): a challenger is trained on the
# rollups (plus the shipped real data as a prior) and replaces the active model only if it beats it
# on the most recent held-back days. Its own queue and worker, so predictions never wait for it.
TFT_RETRAIN = env_bool("TFT_RETRAIN", True)
TFT_RETRAIN_CRON = env_crontab("TFT_RETRAIN_CRON", "0 3 * * 0")  # weekly, Sunday 03:00 UTC
TFT_RETRAIN_MAX_MINUTES = env_int("TFT_RETRAIN_MAX_MINUTES", 60, minimum=1)
TFT_RETRAIN_HOLDOUT_DAYS = env_int("TFT_RETRAIN_HOLDOUT_DAYS", 2, minimum=1)
TFT_RETRAIN_WARM_START = env_bool("TFT_RETRAIN_WARM_START", True)
TFT_RETRAIN_PRIOR_DIRS = [Path(d) for d in env_list("TFT_RETRAIN_PRIOR_DIRS", ["data/nab", "data/nab_extra"])]
TFT_TRAINING_QUEUE = env_str("TFT_TRAINING_QUEUE", "training")
# Promote only when the challenger's pooled pinball is this much (relative) lower than the champion's.
TFT_PROMOTE_MARGIN = env_float("TFT_PROMOTE_MARGIN", 0.02, minimum=0.0, maximum=1.0)
# Retrained folders kept besides the active one (older candidates' folders are deleted).
TFT_KEEP_CANDIDATES = env_int("TFT_KEEP_CANDIDATES", 3, minimum=0)

# --- Integrations: Prometheus exposition and alert push (README "Prometheus and Grafana") ----------
# GET /metrics is open unless a key is set (then: Authorization: Bearer <key> or X-API-Key: <key>).
TFT_METRICS_API_KEY = env_str("TFT_METRICS_API_KEY")
# gunicorn runs several workers: per-request counters (feed latency, records accepted/rejected) go
# through prometheus_client's multiprocess mode, one file per process in this folder. It must be set
# before prometheus_client is imported, hence here; bin/run should empty it at start.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR") or str(DATA_DIR / "prometheus")
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", PROMETHEUS_MULTIPROC_DIR)
# pull_prometheus (ingest/prometheus_poller.py): after an outage of the database or of Prometheus the
# poller reads the instants it missed, at most this far back (seconds); between failed polls it backs off up
# to this many seconds.
TFT_PULL_MAX_BACKFILL_SECONDS = env_int("TFT_PULL_MAX_BACKFILL_SECONDS", 24 * 3600, minimum=1)
TFT_PULL_MAX_BACKOFF_SECONDS = env_int("TFT_PULL_MAX_BACKOFF_SECONDS", 300, minimum=1)
# Alert transitions (open, resolve) are POSTed in Alertmanager's webhook format to each URL, and/or
# pushed to an Alertmanager's /api/v2/alerts. Empty = nothing is recorded or sent. Absolute http(s)
# URLs only (checked here: a URL without a scheme would fail every delivery, not the start-up).
TFT_ALERT_WEBHOOK_URLS = env_http_urls("TFT_ALERT_WEBHOOK_URLS")
TFT_ALERTMANAGER_URL = env_http_url("TFT_ALERTMANAGER_URL").rstrip("/")
TFT_ALERT_PUSH_TIMEOUT_SECONDS = env_int("TFT_ALERT_PUSH_TIMEOUT_SECONDS", 10, minimum=1)
TFT_ALERT_PUSH_MAX_ATTEMPTS = env_int("TFT_ALERT_PUSH_MAX_ATTEMPTS", 8, minimum=1)
# Alertmanager forgets a firing alert that is not re-sent before its endsAt; we send each transition
# once, so a firing alert carries an endsAt this far ahead and its resolve ends it sooner.
TFT_ALERTMANAGER_FIRING_TTL_SECONDS = env_int("TFT_ALERTMANAGER_FIRING_TTL_SECONDS", 24 * 3600, minimum=300)
# Alert hysteresis (engine.alert_rules.hysteresis_step): an alert opens after OPEN_AFTER consecutive
# forecasts predict it and resolves after RESOLVE_AFTER that do not, per severity; 1/1 everywhere is
# the old open-at-once, resolve-at-once behaviour. Defaults chosen by `backtest --alert-frontier` on
# development series only, re-chosen in round 5 once the replay read the served forecast without the
# p90 early warning (README "Alert hysteresis, re-chosen on the served forecast";
# bench/results/alert_replay/hysteresis_r5.json): the highest mean recall with at most 0.4 false
# alerts per server-day over the five development sets was K = 1, M = 12 origins at a 15-minute
# stride (tied within 0.01 with M = 6, at 0.25 false alerts a day instead of 0.32): open on the first
# forecast, resolve after 3 h without it.
# Counted in forecasts: one per new 5-minute forecast origin (runs every minute repeat an origin).
TFT_ALERT_OPEN_AFTER_WARNING = env_int("TFT_ALERT_OPEN_AFTER_WARNING", 1, minimum=1, maximum=288)
TFT_ALERT_OPEN_AFTER_CRITICAL = env_int("TFT_ALERT_OPEN_AFTER_CRITICAL", 1, minimum=1, maximum=288)
TFT_ALERT_RESOLVE_AFTER_WARNING = env_int("TFT_ALERT_RESOLVE_AFTER_WARNING", 36, minimum=1, maximum=288)
TFT_ALERT_RESOLVE_AFTER_CRITICAL = env_int("TFT_ALERT_RESOLVE_AFTER_CRITICAL", 36, minimum=1, maximum=288)
# How far ahead the p90 early warning ("p90 reaches critical while the p50 stays below warning")
# looks, 0 = no early warning (the default, chosen on the development replays: README "Early warnings
# and the forecast the rules read"); the p50 rules look over the whole 8 h horizon.
TFT_ALERT_EARLY_WARNING_MINUTES = env_int(
    "TFT_ALERT_EARLY_WARNING_MINUTES", alert_rules.EARLY_WARNING_MINUTES, minimum=0, maximum=480
)
# The forecast the rules read: "served" (blended with the last value and calibrated: what the charts show)
# or "model" (the TFT's own quantiles; a fallback forecast is read as served). Chosen on the development
# replays with the reach above (README "Early warnings and the forecast the rules read").
TFT_ALERT_FORECAST_SOURCE = env_choice("TFT_ALERT_FORECAST_SOURCE", alert_rules.FORECAST_SOURCE,
                                       alert_rules.FORECAST_SOURCES)  # fmt: skip
# The incident-probability alert (engine.alert_rules, rule incident_prob, metric "incident": one per
# server): opens when the event model's P(an incident starts within 8 h) is at or above
# max(TAU, LIFT × the server's own incident base rate, RISE × its usual P(8 h) over the last day; it
# waits for 6 h of those), under its own hysteresis counted in forecasts. Defaults chosen on the
# development replays only (README "`incident_prob` is served"): τ 0.05, λ 1.5, rise 3, K 1 / M 12
# origins at a 15-minute stride = 36 forecasts (3 h). Off: only the forecast rules alert.
TFT_ALERT_INCIDENT_PROB = env_bool("TFT_ALERT_INCIDENT_PROB", True)
TFT_ALERT_INCIDENT_PROB_TAU = env_float("TFT_ALERT_INCIDENT_PROB_TAU", alert_rules.PROB_TAU, minimum=0.0, maximum=1.0)
TFT_ALERT_INCIDENT_PROB_LIFT = env_float("TFT_ALERT_INCIDENT_PROB_LIFT", alert_rules.PROB_LIFT, minimum=0.0)
# Which P(8 h) it reads: "model" (the event model's, before the live map: what τ and λ were chosen on) or
# "served" (after the live map, which learns the fleet's own rates from its outcomes: what operators see).
TFT_ALERT_INCIDENT_PROB_SOURCE = env_choice("TFT_ALERT_INCIDENT_PROB_SOURCE", "model", alert_rules.PROB_SOURCES)
# RISE 0: no "usual" term (a quiet fleet the model over-rates then alerts on every server).
TFT_ALERT_INCIDENT_PROB_RISE = env_float("TFT_ALERT_INCIDENT_PROB_RISE", alert_rules.PROB_RISE, minimum=0.0)
TFT_ALERT_INCIDENT_OPEN_AFTER = env_int("TFT_ALERT_INCIDENT_OPEN_AFTER", 1, minimum=1, maximum=288)
TFT_ALERT_INCIDENT_RESOLVE_AFTER = env_int("TFT_ALERT_INCIDENT_RESOLVE_AFTER", 36, minimum=1, maximum=288)
# The trend rule (engine.alert_rules, rule trend_projection, metric "trend": one warning per server, for
# whichever metric trends): the line through the last FIT minutes of a metric, drawn REACH minutes ahead,
# reaches its critical limit, did so at each 5-minute bucket of the last HOLD minutes, and is already at
# NEAR × that limit (0: anywhere). Read from the values, so it warns of the ramps the forecast damps (the
# TFT and its blend revert to the usual level). Under the forecast rules' hysteresis. Defaults chosen on
# the development replays only (README "The trend rule"): 2 h, 4 h, 15 min, 0. Off: no trend alerts.
TFT_ALERT_TREND = env_bool("TFT_ALERT_TREND", True)
TFT_ALERT_TREND_FIT_MINUTES = env_int("TFT_ALERT_TREND_FIT_MINUTES", alert_rules.TREND_FIT_STEPS * STEP_MINUTES,
                                      minimum=2 * STEP_MINUTES, maximum=1440)  # fmt: skip
TFT_ALERT_TREND_REACH_MINUTES = env_int("TFT_ALERT_TREND_REACH_MINUTES",
                                        alert_rules.TREND_REACH_STEPS * STEP_MINUTES, minimum=STEP_MINUTES,
                                        maximum=1440)  # fmt: skip
TFT_ALERT_TREND_HOLD_MINUTES = env_int("TFT_ALERT_TREND_HOLD_MINUTES", alert_rules.TREND_HOLD_STEPS * STEP_MINUTES,
                                       minimum=STEP_MINUTES, maximum=240)  # fmt: skip
TFT_ALERT_TREND_NEAR = env_float("TFT_ALERT_TREND_NEAR", alert_rules.TREND_NEAR, minimum=0.0, maximum=0.99)
# States in which a feeder declares a server's climb expected (the contract's heavy_load, morning_spike):
# no trend warning through a climb the server reports as one of them (the forecast rules and
# incident_prob still see it). Comma-separated; "none": every climb counts.
TFT_ALERT_TREND_EXPECTED_STATES = tuple(env_list("TFT_ALERT_TREND_EXPECTED_STATES",
                                                 list(alert_rules.TREND_EXPECTED_STATES)))  # fmt: skip
if TFT_ALERT_TREND_EXPECTED_STATES == ("none",):
    TFT_ALERT_TREND_EXPECTED_STATES = ()
if set(TFT_ALERT_TREND_EXPECTED_STATES) - set(STATES):
    raise ConfigError(f"TFT_ALERT_TREND_EXPECTED_STATES={','.join(TFT_ALERT_TREND_EXPECTED_STATES)!r}: "
                      f"each must be one of {', '.join(STATES)}, or none")  # fmt: skip
# A server's alert that opens again within this many minutes of resolving counts as a flap
# (tft_alert_flaps_total{server} in /metrics).
TFT_ALERT_FLAP_WINDOW_MINUTES = env_int("TFT_ALERT_FLAP_WINDOW_MINUTES", 60, minimum=1)
# State `maintenance` counts as a maintenance window: a server whose latest record reports it opens no
# alert, and buckets holding it are left out of scoring, calibration, outcomes and training (windows.py).
TFT_MAINTENANCE_STATE_SILENCES = env_bool("TFT_MAINTENANCE_STATE_SILENCES", True)

# --- Observability protocols: remote_write and OTLP in, a Prometheus read API out (README
# "Observability protocols"). How samples become contract records: a series (or OTLP metric) named
# after a contract metric, `tft:<metric>`, or an alias here (`name=metric`) feeds that metric.
TFT_PROTOCOL_SERIES_ALIASES: dict[str, str] = {}
for _alias in env_list("TFT_PROTOCOL_SERIES_ALIASES", []):
    _name, _, _metric = _alias.partition("=")
    if not _name.strip() or _metric.strip() not in METRICS:
        raise ConfigError(f"TFT_PROTOCOL_SERIES_ALIASES: {_alias!r} must be name=metric, metric one of {', '.join(METRICS)}")
    TFT_PROTOCOL_SERIES_ALIASES[_name.strip()] = _metric.strip()
# Labels (remote_write) naming the server, first present wins; `instance` has its port stripped.
TFT_PROTOCOL_SERVER_LABELS = env_list("TFT_PROTOCOL_SERVER_LABELS", ["server_name", "instance"])
# OTLP resource attributes naming the server when the point has no server label.
TFT_PROTOCOL_SERVER_ATTRIBUTES = env_list("TFT_PROTOCOL_SERVER_ATTRIBUTES", ["host.name", "service.instance.id"])
TFT_PROTOCOL_DEFAULT_STATE = env_choice("TFT_PROTOCOL_DEFAULT_STATE", "healthy", tuple(sorted(STATES)))
# Samples of one server whose timestamps fall in the same window of this many milliseconds form one
# record: an OTLP SDK stamps each instrument microseconds apart, Prometheus a whole rule group alike.
TFT_PROTOCOL_TIMESTAMP_RESOLUTION_MS = env_int("TFT_PROTOCOL_TIMESTAMP_RESOLUTION_MS", 1000, minimum=1)
# A record missing a metric waits this long for the rest (remote_write shards series across
# requests), then is stored with the server's last known value (`last_known`) or dropped (`drop`);
# both outcomes are counted in GET /metrics (tft_protocol_records_total).
TFT_PROTOCOL_WAIT_SECONDS = env_int("TFT_PROTOCOL_WAIT_SECONDS", 30, minimum=1)
TFT_PROTOCOL_INCOMPLETE = env_choice("TFT_PROTOCOL_INCOMPLETE", "last_known", ("last_known", "drop"))
# A compressed body may not expand beyond this; checked from the snappy header (or while inflating
# gzip) before the memory is allocated.
TFT_PROTOCOL_MAX_DECOMPRESSED_BYTES = env_int("TFT_PROTOCOL_MAX_DECOMPRESSED_BYTES", 64 * 1024 * 1024, minimum=1024)
# The read API answers at most this many samples per query (Prometheus' own per-series limit is 11,000).
TFT_PROTOCOL_MAX_SAMPLES = env_int("TFT_PROTOCOL_MAX_SAMPLES", 2_000_000, minimum=1000)

# --- Limits and access ----------------------------------------------------------------------
TFT_READ_REQUIRES_KEY = env_bool("TFT_READ_REQUIRES_KEY", False)
TFT_RATE_LIMIT_FEED_PER_MINUTE = env_int("TFT_RATE_LIMIT_FEED_PER_MINUTE", 12_000, minimum=0)
TFT_RATE_LIMIT_READ_PER_MINUTE = env_int("TFT_RATE_LIMIT_READ_PER_MINUTE", 6_000, minimum=0)
# GET /predictions/current serves a fleet larger than this in pages of at most this many servers
# (?limit= asks for fewer, ?cursor= continues; a 1,000-server page is about 8 MB of JSON).
TFT_PREDICTIONS_PAGE_SIZE = env_int("TFT_PREDICTIONS_PAGE_SIZE", 1_000, minimum=1, maximum=10_000)
# Heavy reads (access/read_limits.py) have their own per-client limits on top: /predictions/current
# and /status, and /metrics (a Prometheus scrapes it a few times a minute). 0 = no limit.
TFT_RATE_LIMIT_HEAVY_READ_PER_MINUTE = env_int("TFT_RATE_LIMIT_HEAVY_READ_PER_MINUTE", 60, minimum=0)
TFT_RATE_LIMIT_METRICS_PER_MINUTE = env_int("TFT_RATE_LIMIT_METRICS_PER_MINUTE", 60, minimum=0)
# /status and /metrics bodies are served from a per-process cache for this long (0 = render each time).
TFT_READ_CACHE_SECONDS = env_int("TFT_READ_CACHE_SECONDS", 5, minimum=0)
# Lockout after repeated failures (access/lockout.py): this many wrong API keys (per client
# address and per key prefix) or wrong logins (per client address) within the window lock that
# address out for TFT_LOCKOUT_SECONDS (API: 429 with Retry-After; login forms: a message). 0 = off.
TFT_API_KEY_MAX_FAILURES = env_int("TFT_API_KEY_MAX_FAILURES", 20, minimum=0)
TFT_LOGIN_MAX_FAILURES = env_int("TFT_LOGIN_MAX_FAILURES", 10, minimum=0)
TFT_LOCKOUT_WINDOW_SECONDS = env_int("TFT_LOCKOUT_WINDOW_SECONDS", 600, minimum=1)
TFT_LOCKOUT_SECONDS = env_int("TFT_LOCKOUT_SECONDS", 900, minimum=1)
# Browsers may call the API only from these origins (none by default: CORS stays closed).
TFT_CORS_ALLOWED_ORIGINS = env_list("TFT_CORS_ALLOWED_ORIGINS", [])

# --- HTTPS and security headers -------------------------------------------------------------
# TFT_HTTPS: the service is reached over HTTPS (directly or through a proxy that sets
# X-Forwarded-Proto): redirect plain HTTP, secure cookies, HSTS.
TFT_HTTPS = env_bool("TFT_HTTPS", False)
if env_bool("TFT_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = TFT_HTTPS
SECURE_REDIRECT_EXEMPT = [r"^health/?$"]  # load balancers probe over plain HTTP
SESSION_COOKIE_SECURE = TFT_HTTPS
CSRF_COOKIE_SECURE = TFT_HTTPS
SECURE_HSTS_SECONDS = 31_536_000 if TFT_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = TFT_HTTPS
SECURE_HSTS_PRELOAD = TFT_HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"

# Rate-limit counters live in Redis when the broker is Redis (shared by all web workers), else in
# each process's memory.
_REDIS = CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "ratelimit": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _REDIS,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
        if _REDIS
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ratelimit"}
    ),
}
if CELERY_BROKER_URL == "filesystem://":
    # Embedded broker: one folder shared by every process on this machine, no server needed.
    _broker_dir = DATA_DIR / "broker"
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 360
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_TASK_ROUTES = {
    "forecasting.tasks.predict_fleet_chunk": {"queue": TFT_GPU_QUEUE},
    "forecasting.tasks.train_challenger": {"queue": TFT_TRAINING_QUEUE},
    "forecasting.tasks.compare_model": {"queue": TFT_TRAINING_QUEUE},
}
# The one beat schedule. Each entry expires before the next one is due, so a backlog
# never piles up stale runs.
CELERY_BEAT_SCHEDULE = {
    "predict-fleet": {
        "task": "forecasting.tasks.predict_fleet",
        "schedule": float(TFT_PREDICTION_INTERVAL_SECONDS),
        "options": {"expires": TFT_PREDICTION_INTERVAL_SECONDS * 0.9},
    },
    # Live scoring: forecasts whose targets arrived since the last pass (plus the score retention).
    "score-forecasts": {
        "task": "forecasting.tasks.score_forecasts",
        "schedule": float(TFT_SCORE_INTERVAL_SECONDS),
        "options": {"expires": TFT_SCORE_INTERVAL_SECONDS * 0.9},
    },
    "prune-runs": {
        "task": "forecasting.tasks.prune_runs",
        "schedule": 3600.0,
        "options": {"expires": 1800},
    },
    # New model folders (train_tft on another machine, a deploy) are picked up without a restart.
    "sync-models": {
        "task": "forecasting.tasks.sync_models",
        "schedule": 300.0,
        "options": {"expires": 240},
    },
    # Pushes whose task was lost (broker restart) or ran out of retries are picked up again.
    "push-alerts": {
        "task": "forecasting.push_tasks.push_pending_alerts",
        "schedule": 120.0,
        "options": {"expires": 110},
    },
    "prune-records": {
        "task": "ingest.tasks.prune_records",
        "schedule": 24 * 3600.0,
        "options": {"expires": 3600},
    },
    # remote_write/OTLP records missing a metric: stored or dropped once TFT_PROTOCOL_WAIT_SECONDS ran out.
    "flush-pending-records": {
        "task": "protocols.tasks.flush_pending_records",
        "schedule": float(TFT_PROTOCOL_WAIT_SECONDS),
        "options": {"expires": TFT_PROTOCOL_WAIT_SECONDS * 0.9},
    },
    # PostgreSQL: increments a quiet feed left in ingest_pendingfold (a busy feed folds them itself).
    "fold-pending-records": {
        "task": "ingest.tasks.fold_pending_records",
        "schedule": float(TFT_INGEST_FOLD_BEAT_SECONDS),
        "options": {"expires": TFT_INGEST_FOLD_BEAT_SECONDS * 0.9},
    },
    # PostgreSQL: record partitions three days ahead, strays out of the DEFAULT partition.
    "maintain-record-partitions": {
        "task": "ingest.tasks.maintain_record_partitions",
        "schedule": 3600.0,
        "options": {"expires": 3000},
    },
}
# Weekly retraining (TFT_RETRAIN_CRON); the beat task only opens the run and queues the training.
if TFT_RETRAIN:
    CELERY_BEAT_SCHEDULE["retrain-model"] = {
        "task": "forecasting.tasks.retrain_model",
        "schedule": TFT_RETRAIN_CRON,
        "options": {"expires": 3600},
    }

# --- Logging: one structured JSON line per event on stdout ----------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")).upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "tftsite.logging.JsonFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "json"}},
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # Replace Django's own console/mail handlers so every line goes out once, as JSON.
        "django": {"handlers": ["stdout"], "level": LOG_LEVEL, "propagate": False},
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": LOG_LEVEL},
    },
}
