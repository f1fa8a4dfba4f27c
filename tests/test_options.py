"""Options are validated once, at construction, with messages that name the option."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from asgi_log_to_sqlite import AsgiLogToSqlite
from asgi_log_to_sqlite.options import Options, option_names


async def app(scope, receive, send):  # pragma: no cover - never called here
    pass


def test_defaults():
    options = Options.from_kwargs({})
    assert options.max_queue >= 1
    assert options.batch_size >= 1
    assert options.flush_interval > 0
    assert {"max_queue", "batch_size", "flush_interval", "max_value_length", "busy_timeout",
            "retry_for"} <= set(option_names())


def test_values_are_kept(log_path):
    log = AsgiLogToSqlite(app, log_path, max_queue=5, flush_interval=0.05, batch_size=3,
                          max_value_length=10, busy_timeout=1, retry_for=2.5)
    assert log.options.max_queue == 5
    assert log.options.flush_interval == 0.05
    assert log.options.busy_timeout == 1.0
    assert log.options.retry_for == 2.5
    log.close()


def test_file_as_keyword_and_pathlike(tmp_path):
    AsgiLogToSqlite(app, file=str(tmp_path / "a.db")).close()
    AsgiLogToSqlite(app, tmp_path / "b.db").close()
    assert (tmp_path / "a.db").exists() and (tmp_path / "b.db").exists()


def test_unknown_option_is_a_type_error_naming_it(log_path):
    with pytest.raises(TypeError, match="flush_intervall"):
        AsgiLogToSqlite(app, log_path, flush_intervall=1)


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("max_queue", "10", TypeError),
        ("max_queue", 0, ValueError),
        ("max_queue", True, TypeError),
        ("max_queue", 1.5, TypeError),
        ("batch_size", -1, ValueError),
        ("max_value_length", None, TypeError),
        ("flush_interval", 0, ValueError),
        ("flush_interval", -0.1, ValueError),
        ("flush_interval", float("nan"), ValueError),
        ("flush_interval", float("inf"), ValueError),
        ("flush_interval", "1", TypeError),
        ("busy_timeout", [], TypeError),
        ("retry_for", 0, ValueError),
    ],
)
def test_bad_values_name_the_option(log_path, name, value, error):
    with pytest.raises(error, match=name):
        AsgiLogToSqlite(app, log_path, **{name: value})


def test_missing_file_argument():
    with pytest.raises(TypeError, match="path"):
        AsgiLogToSqlite(app)


def test_app_must_be_callable(log_path):
    with pytest.raises(TypeError, match="ASGI application"):
        AsgiLogToSqlite(None, log_path)


@pytest.mark.parametrize("file", [b"log.db", 42, None.__class__])
def test_file_of_the_wrong_type(file):
    with pytest.raises(TypeError, match="file"):
        AsgiLogToSqlite(app, file)


@pytest.mark.parametrize("file", ["", ":memory:", "file:log.db?mode=memory"])
def test_file_that_is_not_a_file(file):
    with pytest.raises(ValueError, match="file"):
        AsgiLogToSqlite(app, file)


def test_missing_folder_fails_with_the_path(tmp_path):
    path = str(tmp_path / "no" / "such" / "log.db")
    with pytest.raises(OSError) as info:
        AsgiLogToSqlite(app, path)
    assert path in str(info.value)


def test_folder_as_file_fails_with_the_path(tmp_path):
    with pytest.raises(OSError) as info:
        AsgiLogToSqlite(app, str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_read_only_file_fails_with_the_path(tmp_path):
    path = tmp_path / "log.db"
    AsgiLogToSqlite(app, str(path)).close()
    if os.geteuid() == 0:  # root ignores permission bits: make the file immutable instead
        if subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True).returncode:
            pytest.skip("cannot make a file read-only for root here")
    else:
        path.chmod(stat.S_IRUSR)
    try:
        with pytest.raises(OSError) as info:
            AsgiLogToSqlite(app, str(path))
        assert str(path) in str(info.value)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)


def test_unwritable_path_fails_with_the_path(tmp_path):
    """Works for root too: a path below a regular file can never be opened for writing."""
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a folder")
    path = str(blocker / "log.db")
    with pytest.raises(OSError) as info:
        AsgiLogToSqlite(app, path)
    assert path in str(info.value)


def test_not_a_database_fails_with_the_path(tmp_path):
    path = tmp_path / "log.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises((OSError, ValueError)) as info:
        AsgiLogToSqlite(app, str(path))
    assert str(path) in str(info.value)


# ---- bounds: every bad value fails here, never later ----------------------------------------
@pytest.mark.parametrize(
    "name, value, error",
    [
        ("writer", "processes", ValueError),
        ("writer", "fast", ValueError),
        ("writer", 1, TypeError),
        ("flush_interval", 1e10, ValueError),
        ("flush_interval", 10**400, ValueError),
        ("flush_interval", float("inf"), ValueError),
        ("busy_timeout", 10**400, ValueError),
        ("retry_for", 10**400, ValueError),
        ("retry_for", 1e300, ValueError),
        ("retain", 10**400, ValueError),
        ("retain", "99999999999d", ValueError),
        ("retain", "9" * 400, ValueError),
        ("max_bytes", "9" * 400, ValueError),
        ("max_bytes", 10**400, ValueError),
        ("max_rows", 2**70, ValueError),
        ("max_queue", 10**12, ValueError),
        ("keep", 10**30, ValueError),
        ("redact_query", ["re:" + "(" * 1000], ValueError),
        ("exclude", ["re:" + "(" * 1000], ValueError),
        ("visitor_hash", "\udcff" * 20, ValueError),
        ("capture_request_headers", ["x-\udcff"], ValueError),
        ("trusted_proxies", ["10.0.0.0/33"], ValueError),
        ("trusted_proxies", [object()], TypeError),
        ("anonymize_ip", (24, 200), ValueError),
        ("sample", float("nan"), ValueError),
    ],
)
def test_out_of_bounds_values_name_the_option(log_path, name, value, error):
    kwargs = {name: value}
    if name == "keep":
        kwargs["max_rows"] = 10
    with pytest.raises(error, match=repr(name).strip("'")):
        AsgiLogToSqlite(app, log_path, **kwargs)


@pytest.mark.timeout(10)
def test_trusted_networks_are_kept_whole_never_expanded(log_path):
    import ipaddress

    wide = ipaddress.ip_network("10.0.0.0/12")
    everything = ipaddress.ip_network("::/0")
    log = AsgiLogToSqlite(app, log_path, trusted_proxies=wide)
    assert log.options.trusted_proxies == (wide,)
    log.close()
    log = AsgiLogToSqlite(app, log_path, trusted_proxies=[everything, ipaddress.ip_address("::1")])
    assert log.options.trusted_proxies == (everything, ipaddress.ip_network("::1/128"))
    log.close()


LIST_OPTIONS = ["allow_secret_headers", "capture_request_headers", "capture_response_headers",
                "exclude", "exclude_user_agents", "keep_query", "methods", "redact_query",
                "trusted_proxies"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", LIST_OPTIONS)
@pytest.mark.parametrize("value", ["network", "endless", "huge range"])
def test_lists_too_long_to_read_are_refused_at_once(log_path, name, value):
    """A network object where a list of names is expected, an endless iterator or a range of
    10**18 items is refused with the option's name, never read to the end."""
    import ipaddress
    import itertools

    given = {"network": ipaddress.ip_network("::/0"), "endless": itertools.repeat("x"),
             "huge range": range(10**18)}[value]
    if name == "trusted_proxies" and value == "network":
        AsgiLogToSqlite(app, log_path, **{name: given}).close()  # one network, kept whole
        return
    with pytest.raises((TypeError, ValueError), match=repr(name)):
        AsgiLogToSqlite(app, log_path, **{name: given})


def test_writer_strategies_are_named(log_path):
    for kind in ("auto", "thread", "inline", "process", "INLINE"):
        log = AsgiLogToSqlite(app, log_path, writer=kind)
        assert log.options.writer == kind.lower()
        log.close()


def test_the_clock_cannot_cross_to_a_writer_process(log_path):
    with pytest.raises(ValueError, match="clock"):
        AsgiLogToSqlite(app, log_path, writer="process", clock=lambda: 0.0)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"capture_requests": "yes"}, TypeError, "capture_requests"),
        ({"capture_responses": 1}, TypeError, "capture_responses"),
        ({"capture_requests": True, "capture_body_limit": "lots"}, ValueError,
         "capture_body_limit"),
        ({"capture_requests": True, "capture_body_limit": -1}, ValueError, "capture_body_limit"),
        ({"capture_requests": True, "capture_body_limit": 2 * 10**9}, ValueError,
         "capture_body_limit"),
        ({"capture_requests": True, "capture_body_limit": 1.5}, TypeError, "capture_body_limit"),
        ({"capture_responses": True}, ValueError, "'capture_responses' needs capture_requests"),
        ({"capture_body_limit": 10}, ValueError, "'capture_body_limit' needs capture_requests"),
    ],
)
def test_capture_options_are_checked(log_path, options, error, message):
    with pytest.raises(error, match=message):
        AsgiLogToSqlite(app, log_path, **options)


def test_capture_options(log_path):
    log = AsgiLogToSqlite(app, log_path)
    assert log.capture is None and log.options.capture_body_limit == 65536
    log.close()
    log = AsgiLogToSqlite(app, log_path, capture_requests=True, capture_body_limit="1KB",
                          capture_responses=True)
    assert log.capture == (1024, True)
    log.close()
    log = AsgiLogToSqlite(app, log_path, capture_requests=True, capture_body_limit=0)
    assert log.capture == (0, False)
    log.close()
