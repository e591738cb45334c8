"""Reads for the forecasting app."""


def status_section() -> dict:
    """What /status shows about predictions and the model."""
    return {}
