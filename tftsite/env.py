"""Small typed readers for environment variables.

Every reader fails loudly with the variable's name, so a typo in a deployment stops start-up
instead of silently running on a default.
"""

import os
from urllib.parse import parse_qs, unquote, urlparse


class ConfigError(RuntimeError):
    """A setting has a value we cannot use; the message names the variable."""


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value} is above the maximum {maximum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}={raw!r} must be one of {', '.join(choices)}")
    return value


def database_from_url(name: str, url: str) -> dict:
    """Turn postgres://user:pass@host:port/db?opt=v into a Django DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ConfigError(f"{name}: unsupported scheme {parsed.scheme!r} (use postgres://…)")
    db_name = unquote(parsed.path.lstrip("/"))
    if not db_name:
        raise ConfigError(f"{name}: the URL names no database")
    options = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    # A dead database must turn into a quick 503, not a request that hangs on connect.
    options.setdefault("connect_timeout", "3")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": db_name,
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        "OPTIONS": options,
        # Persistent connections: a feed request should not pay for a new backend each time.
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


def env_float(name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value != value or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name}={raw!r} is outside [{minimum}, {maximum}]")
    return value


_CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def env_crontab(name: str, default: str):
    """A 5-field cron expression ("minute hour day-of-month month day-of-week") as a celery crontab."""
    from celery.schedules import crontab  # settings only; celery is a dependency of every process

    raw = os.environ.get(name) or default
    fields = raw.split()
    if len(fields) != len(_CRON_FIELDS):
        raise ConfigError(f"{name}={raw!r} is not a 5-field cron expression (minute hour day month weekday)")
    try:
        # crontab expands every field here, so a typo fails at start-up, not at the first tick
        return crontab(**dict(zip(_CRON_FIELDS, fields, strict=True)))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{name}={raw!r} is not a valid cron expression ({exc})") from None


def redact_url(url: str) -> str:
    """scheme://host[:port] of a URL, without user info, path or query: webhook URLs often carry
    their token in one of those (…/hooks/T0/B0/SECRET, ?token=…), and logs must not."""
    try:
        parsed = urlparse(url)
        host = parsed.hostname or ""
        port = f":{parsed.port}" if parsed.port else ""
    except ValueError:
        return "<unparseable URL>"
    rest = "/…" if (parsed.path not in ("", "/") or parsed.query or parsed.fragment) else ""
    return f"{parsed.scheme}://{host}{port}{rest}" if parsed.scheme else "<URL without a scheme>"


def http_url_problem(url: str) -> str | None:
    """Why `url` cannot be POSTed to (None when it can): only absolute http(s) URLs with a host."""
    try:
        parsed = urlparse(url)
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return f"{redact_url(url)} is not a valid URL"
    if parsed.scheme not in ("http", "https"):
        return f"{redact_url(url)} must start with http:// or https://"
    if not parsed.hostname:
        return f"{redact_url(url)} names no host"
    return None


def env_http_urls(name: str) -> list[str]:
    """Comma-separated absolute http(s) URLs; one without a scheme (hooks.example.com/x) would
    otherwise fail at every delivery, never at start-up. Messages never echo a URL's path or token."""
    urls = env_list(name, [])
    for index, url in enumerate(urls):
        problem = http_url_problem(url)
        if problem:
            raise ConfigError(f"{name}: URL #{index + 1} {problem}")
    return urls


def env_http_url(name: str) -> str:
    """One absolute http(s) URL, or "" when unset."""
    url = os.environ.get(name, "").strip()
    problem = http_url_problem(url) if url else None
    if problem:
        raise ConfigError(f"{name}: {problem}")
    return url
