import os
import tempfile

import pytest

#: Modules whose tests start real servers, browsers or other virtualenvs: ``make test`` runs
#: them, ``make check`` (the quick edit-test loop) leaves them out.
INTEGRATION_MODULES = {"test_benchmarks", "test_datasette_serve", "test_html_report",
                       "test_goaccess", "test_rollups_datasette", "test_pyodide",
                       # These start a PostgreSQL server (tests/pg_support.py).
                       "test_postgresql_sink", "test_postgresql_schema", "test_spill",
                       "test_pull", "test_central", "test_load", "test_dialect",
                       "test_report_postgresql"}
#: Tests that take seconds on their own (subprocesses, real servers, large inputs).
SLOW_TESTS = {
    "test_delete_older_than_in_small_transactions",
    "test_one_builder_matches_fresh_ones_on_the_benchmark_mix",
    "test_concurrent_schema_creation_from_several_processes",
    "test_serve_logs_every_request_of_a_real_server",
    "test_rotate_waits_a_moment_for_a_fresh_file_a_server_is_setting_up",
    "test_demo_as_a_process_writes_demo_db",
    "test_several_processes_share_one_file",
    "test_a_second_sigterm_waits_for_the_flush_of_the_first",
    "test_report_as_a_process_over_several_files",
    "test_the_real_program",
    "test_cli_bad_input",
    "test_any_exchange_passes_through_and_is_accounted_for",
    "test_every_request_was_a_row_a_drop_or_an_exclusion_and_the_writer_lives",
    "test_each_bar_opens_the_rows_behind_it",
    "test_random_damage_never_gives_a_traceback",
    "test_maintenance_refuses_bad_files",
    "test_ctrl_c_stops_record_and_mock_cleanly",
    "test_json_lines_round_trip_to_identical_rows",
    "test_a_damaged_gzip_keeps_what_was_read_and_the_rest_comes_later",
    "test_a_grown_file_adds_only_its_new_lines",
    "test_importing_into_a_log_a_server_writes_to_at_the_same_time",
    "test_standard_input_plain_and_gzip_and_read_once",
    "test_the_writers_aggregate_equals_the_sql_one",
    "test_commands_on_odd_files",
    "test_merge_of_odd_files_is_all_or_nothing",
    "test_the_real_program_on_special_files_and_names",
    "test_serve_on_an_address_in_use_exits_1",
    "test_any_configuration_fails_by_name_or_serves_every_page",
    "test_the_second_process_reads_the_same",
    "test_progress_is_shown_on_a_terminal_only",
}


def pytest_configure(config):
    # The command line keeps ua-parser's answers in a cache folder: the run's own, not ~/.cache.
    os.environ.setdefault(
        "ASGI_LOG_TO_SQLITE_CACHE_DIR", tempfile.mkdtemp(prefix="asgi-log-to-sqlite-cache-")
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        if module in INTEGRATION_MODULES or "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
        if getattr(item, "originalname", item.name) in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def log_path(tmp_path):
    return str(tmp_path / "log.db")


@pytest.fixture
def make_log(log_path):
    """Build middlewares that are always closed at the end of the test (no stray threads)."""
    from asgi_log_to_sqlite import AsgiLogToSqlite

    made = []

    def make(app, path=None, **options):
        log = AsgiLogToSqlite(app, path or log_path, **options)
        made.append(log)
        return log

    yield make
    for log in made:
        log.close(timeout=10)


@pytest.fixture
def data_db(tmp_path):
    """A small database of the app's own, beside the log."""
    import sqlite3

    path = str(tmp_path / "data.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO items (name) VALUES ('one'), ('two')")
    conn.commit()
    conn.close()
    return path


# ---- PostgreSQL (tests/pg_support.py) -----------------------------------------------------------
@pytest.fixture(scope="session")
def pg_cluster():
    """A PostgreSQL server for the session: a throwaway cluster, or the one the environment
    names (ASGI_LOG_TO_SQLITE_TEST_POSTGRESQL)."""
    pytest.importorskip("psycopg")
    from pg_support import open_cluster

    cluster = open_cluster()
    if cluster is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def pg_url(pg_cluster):
    """The URL of a new, empty database, dropped after the test."""
    name = pg_cluster.create_database()
    try:
        yield pg_cluster.url(name)
    finally:
        pg_cluster.drop_database(name)


def _untracked(root: str) -> set[str]:
    import subprocess

    try:
        listed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "-z"], cwd=root,
            capture_output=True, timeout=30, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {entry[3:].decode("utf-8", "replace") for entry in listed.split(b"\0")
            if entry.startswith(b"??")}


@pytest.fixture(scope="session", autouse=True)
def _no_file_left_in_the_repository():
    """Tests write into temporary folders only: a file a test leaves in the working tree
    (a relative path in a command's arguments) fails the run instead of reaching a commit."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    before = _untracked(root)
    yield
    left = _untracked(root) - before
    assert not left, f"tests left files in the repository: {sorted(left)[:10]}"
