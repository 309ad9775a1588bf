"""Parsing the rate-limit headers of LLM providers (no I/O; table-tested).

OpenAI (https://platform.openai.com/docs/guides/rate-limits):
    x-ratelimit-limit-requests: 60          x-ratelimit-limit-tokens: 150000
    x-ratelimit-remaining-requests: 59      x-ratelimit-remaining-tokens: 149984
    x-ratelimit-reset-requests: 1s          x-ratelimit-reset-tokens: 6m0s
  (resets are Go-style durations: 1s, 6m0s, 12ms, 1h2m3.5s)
Anthropic (https://docs.anthropic.com/en/api/rate-limits):
    anthropic-ratelimit-requests-limit: 50
    anthropic-ratelimit-requests-remaining: 49
    anthropic-ratelimit-requests-reset: 2024-01-01T00:00:01Z      (RFC 3339)
    anthropic-ratelimit-tokens-limit / -remaining / -reset
  (the input-tokens and output-tokens variants are not mapped: a ratequeue
  resource has one token limit)

parse(headers) returns {"requests"|"tokens": Reading} and a list of the
headers it had to ignore because their values were malformed.
"""
import datetime
import email.utils
import math
import re

__all__ = ["Reading", "parse", "parse_duration", "parse_reset_time", "parse_retry_after"]


class Reading:
    """What a provider reported for one kind of limit."""

    __slots__ = ("remaining", "reset", "limit")

    def __init__(self, remaining, reset=None, limit=None):
        self.remaining = remaining  # units left now (int)
        self.reset = reset          # seconds until full again (float), or None
        self.limit = limit          # the provider's limit (int), or None

    def __eq__(self, other):
        if not isinstance(other, Reading) or (self.remaining, self.limit) != (other.remaining, other.limit):
            return False
        if self.reset is None or other.reset is None:
            return self.reset is other.reset
        return math.isclose(self.reset, other.reset, rel_tol=1e-9, abs_tol=1e-12)

    def __repr__(self):
        return "Reading(remaining=%r, reset=%r, limit=%r)" % (self.remaining, self.reset, self.limit)


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "\u00b5s": 1e-6, "ns": 1e-9}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(h|ms|m|s|us|\u00b5s|ns)")


_MAX_RESET = 366 * 24 * 3600.0  # a reset further away than about a year is not believed


def _finite(seconds, text):
    if not math.isfinite(seconds) or seconds > _MAX_RESET:
        raise ValueError("reset out of range: %r" % text)
    return seconds


def parse_duration(text):
    """'6m0s' -> 360.0, '12ms' -> 0.012, '1h2m3.5s' -> 3723.5; ValueError when
    malformed or beyond a year."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", s):  # a bare number: seconds
        return _finite(float(s), text)
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            raise ValueError("malformed duration %r" % text)
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise ValueError("malformed duration %r" % text)
    return _finite(total, text)


def parse_reset_time(text, now=None):
    """Seconds from `now` (a datetime; default: the current UTC time) until the
    RFC 3339 time `text` (0 when it has passed); ValueError when malformed."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    when = datetime.datetime.fromisoformat(s)
    if when.tzinfo is None:
        raise ValueError("RFC 3339 time without a UTC offset: %r" % text)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return _finite(max(0.0, (when - now).total_seconds()), text)


def _int(text):
    s = text.strip()
    if not re.fullmatch(r"[0-9]{1,15}", s):  # ASCII digits, at most 2^48 or so
        raise ValueError("not a non-negative integer: %r" % text)
    return int(s)


_OPENAI = {kind: ("x-ratelimit-remaining-" + kind, "x-ratelimit-reset-" + kind, "x-ratelimit-limit-" + kind)
           for kind in ("requests", "tokens")}
_ANTHROPIC = {kind: ("anthropic-ratelimit-%s-remaining" % kind, "anthropic-ratelimit-%s-reset" % kind,
                     "anthropic-ratelimit-%s-limit" % kind) for kind in ("requests", "tokens")}


def parse(headers, now=None):
    """({kind: Reading}, [malformed header names]) from a response's headers:
    any mapping or an object with .items() (http.client, requests, httpx,
    aiohttp). Header names are matched case-insensitively."""
    lower = {}
    try:
        pairs = list(headers.items() if hasattr(headers, "items") else headers)
    except (TypeError, ValueError):
        return {}, ["<not a headers mapping>"]
    for pair in pairs:
        try:
            k, v = pair
        except (TypeError, ValueError):
            continue
        k = k.decode("latin-1") if isinstance(k, (bytes, bytearray)) else str(k)
        v = v.decode("latin-1") if isinstance(v, (bytes, bytearray)) else str(v)
        lower[k.lower()] = v
    found, malformed = {}, []
    for table, reset_parser in ((_OPENAI, parse_duration), (_ANTHROPIC, lambda t: parse_reset_time(t, now))):
        for kind, (rem_h, reset_h, limit_h) in table.items():
            if rem_h not in lower:
                continue
            try:
                remaining = _int(lower[rem_h])
            except ValueError:
                malformed.append(rem_h)
                continue
            reset = limit = None
            if reset_h in lower:
                try:
                    reset = reset_parser(lower[reset_h])
                except (ValueError, OverflowError, TypeError):
                    malformed.append(reset_h)
            if limit_h in lower:
                try:
                    limit = _int(lower[limit_h])
                except ValueError:
                    malformed.append(limit_h)
            found[kind] = Reading(remaining, reset, limit)
    return found, malformed


def parse_retry_after(headers, now=None):
    """Seconds a provider asks us to wait before retrying, from `retry-after-ms`
    (milliseconds, OpenAI) or `retry-after` (seconds, or an HTTP date), or None
    when neither is present and well-formed. Capped at about a year."""
    lower = {}
    try:
        for k, v in (headers.items() if hasattr(headers, "items") else headers):
            k = k.decode("latin-1") if isinstance(k, (bytes, bytearray)) else str(k)
            v = v.decode("latin-1") if isinstance(v, (bytes, bytearray)) else str(v)
            lower[k.lower()] = v.strip()
    except (TypeError, ValueError):
        return None
    text = lower.get("retry-after-ms")
    if text is not None and re.fullmatch(r"[0-9]{1,15}(\.[0-9]+)?", text):
        return min(float(text) / 1000.0, _MAX_RESET)
    text = lower.get("retry-after")
    if text is None:
        return None
    if re.fullmatch(r"[0-9]{1,15}(\.[0-9]+)?", text):
        return min(float(text), _MAX_RESET)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return min(max(0.0, (when - now).total_seconds()), _MAX_RESET)
