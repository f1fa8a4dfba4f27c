"""Host detection: AWS Lambda and Pyodide choose their delivery and writer by themselves."""

from __future__ import annotations

import sys

import pytest

from asgi_log_to_sqlite import hosts


@pytest.fixture
def lambda_env(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "my-function")


@pytest.fixture(autouse=True)
def no_lambda(monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)


def test_a_server_batches_with_its_default_writer():
    assert not hosts.on_lambda()
    assert not hosts.commits_each_response("auto")
    assert hosts.commits_each_response("response")
    assert not hosts.commits_each_response("batch")
    assert hosts.writer_for("auto") == "auto"


def test_lambda_commits_each_response_inline(lambda_env):
    assert hosts.on_lambda()
    assert hosts.commits_each_response("auto")
    assert not hosts.commits_each_response("batch")  # said explicitly: kept
    assert hosts.writer_for("auto") == "inline"
    assert hosts.writer_for("thread") == "thread"  # said explicitly: kept


def test_an_empty_function_name_is_not_lambda(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "")
    assert not hosts.on_lambda()


def test_pyodide_writes_inline(monkeypatch):
    monkeypatch.setattr(sys, "platform", "emscripten")
    assert hosts.threads_unavailable()
    assert hosts.writer_for("auto") == "inline"
    assert not hosts.commits_each_response("auto")
