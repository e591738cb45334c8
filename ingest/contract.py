"""The data contract (../shared/seed/PRODUCTION_INTEGRATION_GUIDE.md) as constants.

Everything that needs to know the record fields, the states or the server families imports them
from here, so the contract lives in one place.
"""

METRICS: tuple[str, ...] = ("cpu_pct", "mem_pct", "disk_io_mb_s", "latency_ms")
RECORD_FIELDS: tuple[str, ...] = ("timestamp", "server_name", *METRICS, "state")

# Metrics bounded to percentages; the others only need to be non-negative.
PERCENT_METRICS: frozenset[str] = frozenset({"cpu_pct", "mem_pct"})

# The 8 states, ordered from least to most severe: the order defines a bucket's "worst state".
STATES: tuple[str, ...] = (
    "idle",
    "healthy",
    "morning_spike",
    "maintenance",
    "heavy_load",
    "recovery",
    "offline",
    "critical_issue",
)
VALID_STATES: tuple[str, ...] = tuple(sorted(STATES))  # as the guide lists them
STATE_SEVERITY: dict[str, int] = {state: rank for rank, state in enumerate(STATES)}

# Server families: name prefix → profile. Longest prefix first so "pprisk" never reads as "pp…".
PROFILE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("pprisk", "risk"),
    ("ppweb", "web_api"),
    ("ppcon", "conductor"),
    ("ppetl", "etl"),
    ("ppml", "ml_compute"),
    ("ppdb", "database"),
)
PROFILES: tuple[str, ...] = ("ml_compute", "database", "web_api", "conductor", "etl", "risk", "generic")
PROFILE_LABELS: dict[str, str] = {
    "ml_compute": "ML compute",
    "database": "Database",
    "web_api": "Web API",
    "conductor": "Conductor",
    "etl": "ETL",
    "risk": "Risk analytics",
    "generic": "Generic",
}


def profile_for(server_name: str) -> str:
    """The server's profile, derived from its name prefix (case-insensitive)."""
    lowered = server_name.lower()
    for prefix, profile in PROFILE_PREFIXES:
        if lowered.startswith(prefix):
            return profile
    return "generic"
