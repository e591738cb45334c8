"""The data contract (the Production Integration Guide) as constants.

Everything that needs to know the record fields, the states or the server families imports them
from here, so the contract lives in one place.
"""

import re

from forecasting.engine.spec import (  # the engine owns the rules both apps and the model share
    METRICS,
    PERCENT_METRICS,
    PROFILE_PREFIXES,
    PROFILES,
    STATE_SEVERITY,
    STATES,
    profile_for,
)

# Server names, the one home of the rule (validation, the API's path and query, the pull feeder):
# a letter or digit, then letters, digits and . _ : @ -, at most 64 characters.
SERVER_NAME_MAX_LENGTH = 64
SERVER_NAME_CHARS = "A-Za-z0-9._:@-"
SERVER_NAME_PATTERN = rf"[A-Za-z0-9][{SERVER_NAME_CHARS}]{{0,{SERVER_NAME_MAX_LENGTH - 1}}}"
SERVER_NAME_RE = re.compile(SERVER_NAME_PATTERN + r"\Z")

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
    "SERVER_NAME_CHARS", "SERVER_NAME_MAX_LENGTH", "SERVER_NAME_PATTERN", "SERVER_NAME_RE",
    "STATES", "STATE_SEVERITY", "VALID_STATES", "profile_for",
]
