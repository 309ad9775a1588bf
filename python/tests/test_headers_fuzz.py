"""The provider-header parser fuzzed with Hypothesis: whatever a provider (or
something pretending to be one) sends, parsing never raises and never yields
a value outside its range; well-formed values round-trip."""
import datetime
import math

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="python3-hypothesis is not installed (scripts/install-deps)")
from hypothesis import given, settings, strategies as st  # noqa: E402

from ratequeue import headers as H  # noqa: E402

NAMES = ["x-ratelimit-%s-%s" % (f, k) for f in ("limit", "remaining", "reset") for k in ("requests", "tokens")] + \
        ["anthropic-ratelimit-%s-%s" % (k, f) for f in ("limit", "remaining", "reset") for k in ("requests", "tokens")] + \
        ["retry-after", "retry-after-ms", "content-type"]
YEAR = 366 * 24 * 3600.0

text = st.one_of(st.text(max_size=40), st.from_regex(r"[0-9.hmsuµn]{0,20}", fullmatch=True),
                 st.from_regex(r"20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:.]{1,15}(Z|[+-][0-9]{2}:[0-9]{2})?", fullmatch=True),
                 st.integers(-10**20, 10**20).map(str), st.floats(allow_nan=True).map(str))
header_maps = st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=20), text, max_size=12)


def case_variants(d):
    return {k.upper() if i % 2 else k: v for i, (k, v) in enumerate(d.items())}


@settings(max_examples=800, deadline=None, database=None)
@given(header_maps)
def test_parse_never_raises_and_stays_in_range(d):
    for headers in (d, case_variants(d), list(d.items()), [(k.encode(), v.encode("utf-8", "replace")) for k, v in d.items()]):
        readings, malformed = H.parse(headers)
        assert set(readings) <= {"requests", "tokens"}
        assert all(isinstance(m, str) for m in malformed)
        for r in readings.values():
            assert isinstance(r.remaining, int) and 0 <= r.remaining < 10**15
            assert r.reset is None or (math.isfinite(r.reset) and 0 <= r.reset <= YEAR)
            assert r.limit is None or (isinstance(r.limit, int) and 0 <= r.limit < 10**15)
        wait = H.parse_retry_after(headers)
        assert wait is None or (math.isfinite(wait) and 0 <= wait <= YEAR)


@settings(max_examples=800, deadline=None, database=None)
@given(text)
def test_durations_are_finite_or_refused(s):
    try:
        v = H.parse_duration(s)
    except ValueError:
        return
    assert math.isfinite(v) and 0 <= v <= YEAR


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["h", "m", "s", "ms", "us", "ns"])), min_size=1,
                max_size=4))
def test_well_formed_durations_round_trip(parts):
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    s = "".join("%d%s" % (n, u) for n, u in parts)
    want = sum(n * units[u] for n, u in parts)
    if want > YEAR:
        with pytest.raises(ValueError):
            H.parse_duration(s)
    else:
        assert H.parse_duration(s) == pytest.approx(want, rel=1e-9, abs=1e-12)


@settings(max_examples=300, deadline=None, database=None)
@given(st.datetimes(min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2100, 1, 1)),
       st.integers(0, 10**6))
def test_reset_times_are_seconds_from_now(when, ahead):
    now = when.replace(tzinfo=datetime.timezone.utc)
    then = now + datetime.timedelta(milliseconds=ahead)
    got = H.parse_reset_time(then.isoformat().replace("+00:00", "Z"), now=now)
    assert got == pytest.approx(ahead / 1000.0, abs=1e-6)
