"""The slice of PromQL the read API answers: a vector selector with label matchers
(`name{label="v", label!="v", label=~"re", label!~"re"}`, or `{__name__="name", ...}`) and a constant
arithmetic expression (Grafana's connection test sends `1+1`: answered as a scalar). Anything else is refused with Prometheus' own error shape, naming what is supported.
Also Prometheus' time and duration parameters."""

from __future__ import annotations

import ast
import math
import operator
import re
import re._parser as _parser  # the stdlib's own pattern parser: to refuse patterns that backtrack for ever
from dataclasses import dataclass, field
from datetime import UTC, datetime

SUPPORTED = (
    "only vector selectors with label matchers are supported, e.g. "
    'tft_forecast{server_name="db1", metric="cpu_pct", quantile=~"0.1|0.9"}; '
    "no functions, operators, aggregations or range vectors"
)
MAX_QUERY_LENGTH = 4096

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'
_MATCHER = re.compile(rf"\s*({_LABEL})\s*(=~|!~|!=|=)\s*({_STRING})\s*(,|\Z)")
_SELECTOR = re.compile(rf"\s*({_NAME})?\s*(\{{.*\}})?\s*\Z", re.S)
_CONSTANT = re.compile(r"[\d\s.eE+\-*/()]+\Z")
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class BadDataError(ValueError):
    """Answered as {"status": "error", "errorType": "bad_data", "error": ...} with 400."""


@dataclass(frozen=True, slots=True)
class Matcher:
    label: str
    op: str
    value: str
    regex: re.Pattern | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.op in ("=~", "!~"):
            object.__setattr__(self, "regex", regex_compile(self.value))

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        hit = self.regex.match(value) is not None  # RE2 regexes are anchored at both ends
        return hit if self.op == "=~" else not hit


_REPEATS = (_parser.MAX_REPEAT, _parser.MIN_REPEAT, _parser.POSSESSIVE_REPEAT)
MAX_REGEX_LENGTH = 512


def _backtracks(items, *, in_repeat: bool) -> bool:
    """Whether a parsed pattern repeats a repetition or an alternation (what makes Python's
    backtracking engine exponential: `(a+)+`, `(a|ab)*`), or refers back to a group."""
    for op, arg in items:
        if op in _REPEATS:
            if in_repeat or _backtracks(arg[2], in_repeat=True):
                return True
        elif op is _parser.SUBPATTERN:
            if _backtracks(arg[3], in_repeat=in_repeat):
                return True
        elif op is _parser.BRANCH:
            if in_repeat or any(_backtracks(b, in_repeat=False) for b in arg[1]):
                return True
        elif op in (_parser.GROUPREF, _parser.GROUPREF_EXISTS, _parser.ASSERT, _parser.ASSERT_NOT):
            return True
    return False


def regex_compile(value: str) -> re.Pattern:
    """A label matcher's regex, anchored at both ends as Prometheus' RE2 regexes are. Patterns that
    could backtrack for ever are refused: a query must not be able to hold a web worker."""
    if len(value) > MAX_REGEX_LENGTH:
        raise BadDataError(f"regular expressions longer than {MAX_REGEX_LENGTH} characters are not supported")
    try:
        parsed = _parser.parse(value)
        compiled = re.compile(f"(?:{value})\\Z")
    except (re.error, RecursionError, OverflowError) as exc:
        raise BadDataError(f"invalid regular expression {value[:100]!r}: {exc}") from None
    if _backtracks(list(parsed), in_repeat=False):
        raise BadDataError(
            f"regular expression {value[:100]!r} repeats a group that repeats or alternates (or uses a "
            "backreference or lookaround): not supported here; use plain alternatives such as a|b|c, or .*"
        )
    return compiled


def _unquote(text: str) -> str:
    if text[0] == "`":
        return text[1:-1]
    body = text[1:-1]
    try:
        return body.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        raise BadDataError(f"invalid escape in {text}") from None


def selector_parse(query: str) -> list[Matcher]:
    """The matchers of one vector selector (the metric name becomes a __name__ matcher)."""
    if len(query) > MAX_QUERY_LENGTH:
        raise BadDataError(f"the query is longer than {MAX_QUERY_LENGTH} characters")
    match = _SELECTOR.match(query)
    if not match or not (match.group(1) or match.group(2)):
        raise BadDataError(f"cannot parse {query[:200]!r}: {SUPPORTED}")
    matchers = [Matcher("__name__", "=", match.group(1))] if match.group(1) else []
    if match.group(2):
        inner, pos = match.group(2)[1:-1], 0
        while pos < len(inner) and inner[pos:].strip():
            m = _MATCHER.match(inner, pos)
            if not m:
                raise BadDataError(f"cannot parse the label matchers in {query[:200]!r}: {SUPPORTED}")
            matchers.append(Matcher(m.group(1), m.group(2), _unquote(m.group(3))))
            pos = m.end()
    if all(m.matches("") for m in matchers):
        raise BadDataError("vector selector must contain at least one non-empty matcher")
    return matchers


def number_literal(query: str) -> float | None:
    """The value of a constant expression (`1`, `1+1`, `2*(3-1)`), or None for anything else."""
    if len(query) > 100 or not _CONSTANT.match(query):
        return None
    try:
        return _constant(ast.parse(query.strip(), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError):
        return None


def _constant(node) -> float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _constant(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_constant(node.left), _constant(node.right))
    raise ValueError("not a constant expression")


MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(9000, 1, 1, tzinfo=UTC)


def time_parse(text: str | None, *, default: datetime | None = None, name: str = "time") -> datetime:
    """Unix seconds (with fraction) or RFC 3339, as Prometheus accepts them, between 1970 and 9000."""
    parsed = _time(text, default=default, name=name)
    if not MIN_TIME <= parsed <= MAX_TIME:
        raise BadDataError(f'invalid parameter "{name}": {text[:50]} is not between 1970 and 9000')
    return parsed


def _time(text: str | None, *, default: datetime | None, name: str) -> datetime:
    if text is None or text == "":
        if default is None:
            raise BadDataError(f'invalid parameter "{name}": it is required')
        return default
    try:
        seconds = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise BadDataError(f'invalid parameter "{name}": cannot parse "{text[:50]}" to a valid timestamp') from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_TIME.timestamp():
        raise BadDataError(f'invalid parameter "{name}": cannot parse "{text[:50]}" to a valid timestamp')
    return datetime.fromtimestamp(seconds, tz=UTC)


def duration_seconds(text: str | None, *, name: str = "step") -> float:
    """A float of seconds or a Prometheus duration (`15s`, `1m30s`)."""
    if not text:
        raise BadDataError(f'invalid parameter "{name}": it is required')
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(a + b for a, b in parts) != text:
            raise BadDataError(f'invalid parameter "{name}": cannot parse "{text[:50]}" to a valid duration') from None
        seconds = sum(int(n) * _UNITS[unit] for n, unit in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadDataError(
            f'invalid parameter "{name}": zero or negative query resolution step widths are not accepted'
        )
    return seconds
