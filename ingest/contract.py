"""The data contract (the Production Integration Guide) as constants.

Everything that needs to know the record fields, the states or the server families imports them
from here, so the contract lives in one place.
"""

from forecasting.engine.spec import (  # the engine owns the rules both apps and the model share
    METRICS,
    PERCENT_METRICS,
    PROFILE_PREFIXES,
    PROFILES,
    STATE_SEVERITY,
    STATES,
    profile_for,
)

RECORD_FIELDS: tuple[str, ...] = ("timestamp", "server_name", *METRICS, "state")
VALID_STATES: tuple[str, ...] = tuple(sorted(STATES))  # as the guide lists them
PROFILE_LABELS: dict[str, str] = {
    "ml_compute": "ML compute",
    "database": "Database",
    "web_api": "Web API",
    "conductor": "Conductor",
    "etl": "ETL",
    "risk": "Risk analytics",
    "generic": "Generic",
}


__all__ = [
    "METRICS", "PERCENT_METRICS", "PROFILES", "PROFILE_LABELS", "PROFILE_PREFIXES", "RECORD_FIELDS",
    "STATES", "STATE_SEVERITY", "VALID_STATES", "profile_for",
]
