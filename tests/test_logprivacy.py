"""The middleware's privacy rules on imported columns: the same results as in the middleware."""

from __future__ import annotations

import collections

from asgi_log_to_sqlite.logprivacy import Privacy
from asgi_log_to_sqlite.options import Options

START = 1796637600.0  # 2026-12-07T10:00:00Z


def columns(**values):
    return {name: list(column) for name, column in values.items()}


def test_secrets_are_redacted_and_health_checks_counted_per_hour():
    excluded = collections.Counter()
    out = Privacy(Options()).apply(columns(
        start=[START, START + 3600, START + 7200],
        path=["/login", "/healthz", "/a"],
        query_string=["?token=abc&page=2", None, "?code=1"],
        referer=["https://u:p@r.example/?session=x", None, "-"],
        user_agent=["curl/8", "curl/8", "kube-probe/1.29"],
        client_ip=["203.0.113.7", "203.0.113.8", "203.0.113.9"],
    ), excluded)
    assert out["path"] == ["/login"]
    assert out["query_string"] == ["?token=REDACTED&page=2"]
    assert out["referer"] == ["https://r.example/?session=REDACTED"]
    assert out["client_ip"] == ["203.0.113.7"]
    assert excluded == {("2026-12-07T11:00", "health_check"): 1,
                        ("2026-12-07T12:00", "health_check"): 1}


def test_applying_the_rules_twice_changes_nothing():
    privacy = Privacy(Options())
    first = privacy.apply(columns(query_string=["?a=1&password=x"], referer=["https://x/?t=1#y"],
                                  path=["/a"]), collections.Counter())
    second = privacy.apply({k: list(v) for k, v in first.items()}, collections.Counter())
    assert second == first


def test_address_options():
    anonymized = Privacy(Options(anonymize_ip=(24, 48))).apply(
        columns(client_ip=["203.0.113.7", "2001:db8:1:2::1", "not an address"],
                peer_ip=["10.1.2.3", None, None]), collections.Counter())
    assert anonymized == {"client_ip": ["203.0.113.0", "2001:db8:1::", None],
                          "peer_ip": ["10.1.2.0", None, None]}
    dropped = Privacy(Options(client_ip=False)).apply(columns(client_ip=["1.2.3.4"]),
                                                      collections.Counter())
    assert dropped == {"client_ip": [None]}
