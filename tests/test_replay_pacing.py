"""Schedules: due times computed from the schedule, never from the clock."""

from __future__ import annotations

import pytest

from asgi_log_to_sqlite.replay.pacing import AsFastAsAllowed, FixedRate, OriginalPace, parse_rate


def test_parse_rate():
    assert parse_rate("500/s") == 500
    assert parse_rate("30/m") == 0.5
    assert parse_rate("7200 / hour") == 2
    assert parse_rate("200") == 200
    for bad in ("", "fast", "0/s", "-1/s", "5/d"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_fixed_rate_spaces_requests_evenly():
    pace = FixedRate(200)
    assert [pace.due(0, i) for i in (0, 1, 200, 1999)] == [0, 0.005, 1.0, 9.995]
    # 10 s at 200/s: exactly 2,000 requests are due before the end.
    assert sum(1 for i in range(5000) if pace.due(0, i) < 10) == 2000


def test_original_pace_keeps_the_gaps_divided_by_speed():
    starts = [100.0, 100.5, 102.0, 110.0]
    assert [OriginalPace(1).due(s, i) for i, s in enumerate(starts)][:1] == [0.0]
    pace = OriginalPace(1)
    assert [pace.due(s, i) for i, s in enumerate(starts)] == [0.0, 0.5, 2.0, 10.0]
    fast = OriginalPace(10)
    assert [round(fast.due(s, i), 6) for i, s in enumerate(starts)] == [0.0, 0.05, 0.2, 1.0]


def test_original_pace_loops_after_an_average_gap():
    pace = OriginalPace(2)
    assert [pace.due(s, i) for i, s in enumerate([0.0, 2.0, 4.0])] == [0.0, 1.0, 2.0]
    pace.restart()
    assert [pace.due(s, i) for i, s in enumerate([0.0, 2.0, 4.0])] == [3.0, 4.0, 5.0]


def test_as_fast_as_allowed_has_no_schedule():
    assert AsFastAsAllowed().due(5.0, 3) is None
