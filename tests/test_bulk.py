"""``insert_columns`` and ``lookup_ids`` against real SQLite files.

The oracle for ``insert_columns`` is a plain ``executemany`` of the same rows into a twin table:
whatever ``insert_columns`` binds once, merges or reorders, the stored values, their SQLite types
and the rowid order must come out identical.
"""

from __future__ import annotations

import random
import sqlite3

import pytest

from asgi_log_to_sqlite import bulk
from asgi_log_to_sqlite.bulk import insert_columns, lookup_ids

SIZES = [1, 2, 63, 64, 65, 200, 1000, 2001]


@pytest.fixture
def conn(tmp_path):
    conn = sqlite3.connect(str(tmp_path / "bulk.db"))
    # What the oldest builds allow: a statement over 999 parameters fails instead of passing.
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    yield conn
    conn.close()


def make_tables(conn, names, types=None):
    """Tables ``t`` (for insert_columns) and ``u`` (for executemany), same columns."""
    declared = ", ".join(f"{name} {types[i] if types else ''}" for i, name in enumerate(names))
    conn.execute(f"CREATE TABLE t ({declared})")
    conn.execute(f"CREATE TABLE u ({declared})")


def stored(conn, table, names):
    """Every row in rowid order, each value with its SQLite storage class (as reprs, so that
    -0.0 and 0.0, equal in Python, compare apart)."""
    picked = ", ".join(f"{name}, typeof({name})" for name in names)
    rows = conn.execute(f"SELECT rowid, {picked} FROM {table} ORDER BY rowid")
    return [tuple(map(repr, row)) for row in rows]


def insert_both(conn, names, rows):
    """Insert ``rows`` with insert_columns into t and with executemany into u."""
    columns = [list(column) for column in zip(*rows, strict=False)] if rows else []
    insert_columns(conn, "t", names, columns)
    marks = ", ".join("?" for _ in names)
    conn.executemany(f"INSERT INTO u ({', '.join(names)}) VALUES ({marks})", rows)


def assert_same_as_executemany(conn, names, rows):
    (before,) = conn.execute("SELECT count(*) FROM t").fetchone()
    insert_both(conn, names, rows)
    got = stored(conn, "t", names)
    assert got == stored(conn, "u", names)
    assert len(got) == before + len(rows)


def inserts(conn, action):
    """The INSERT statements SQLite ran during ``action()``."""
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        action()
    finally:
        conn.set_trace_callback(None)
    return [sql for sql in seen if sql.lstrip().upper().startswith("INSERT")]


def rows_in(sql):
    """Rows in one traced multi-row INSERT (SQLite hands the SQL over with values inlined;
    the tests using this insert numbers, NULLs and plain words only)."""
    return sql.split("VALUES ", 1)[1].count("), (") + 1


# ---- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("count", SIZES)
def test_round_trip_values_types_and_order(conn, count):
    names = ["varying", "constant", "nullable", "label", "ratio"]
    make_tables(conn, names)
    rows = [(i, "GET", None if i % 3 else i * 2, f"row-{i}-é", i / 7) for i in range(count)]
    insert_both(conn, names, rows)
    got = conn.execute(f"SELECT {', '.join(names)} FROM t ORDER BY rowid").fetchall()
    assert got == rows
    assert [type(v) for row in got for v in row] == [type(v) for row in rows for v in row]
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (count,)
    # rowids follow the input: the i-th row has rowid i + 1 (a fresh table)
    assert conn.execute("SELECT rowid, varying FROM t ORDER BY rowid").fetchall() == [
        (i + 1, i) for i in range(count)
    ]
    assert stored(conn, "t", names) == stored(conn, "u", names)


@pytest.mark.parametrize("count", SIZES)
def test_rowid_order_follows_input_after_existing_rows(conn, count):
    make_tables(conn, ["a", "b"])
    conn.execute("INSERT INTO t (a, b) VALUES ('before', 'x')")
    conn.execute("INSERT INTO u (a, b) VALUES ('before', 'x')")
    rows = [(f"r{count - i}", "same") for i in range(count)]  # descending text: order not sorted
    assert_same_as_executemany(conn, ["a", "b"], rows)
    got = [a for (a,) in conn.execute("SELECT a FROM t ORDER BY rowid")]
    assert got == ["before"] + [a for a, _ in rows]


@pytest.mark.parametrize("count", SIZES)
def test_all_columns_constant(conn, count):
    names = ["a", "b", "c"]
    make_tables(conn, names)
    rows = [("same", 7, None)] * count
    assert_same_as_executemany(conn, names, rows)
    assert conn.execute("SELECT a, b, c, count(*) FROM t GROUP BY a, b, c").fetchall() == [
        ("same", 7, None, count)
    ]


@pytest.mark.parametrize("count", [2, 65, 200])
def test_all_null_column_and_scattered_nulls(conn, count):
    names = ["a", "b", "c"]
    make_tables(conn, names)
    rows = [(None, i if i % 2 else None, "x") for i in range(count)]
    assert_same_as_executemany(conn, names, rows)
    assert conn.execute("SELECT count(*) FROM t WHERE a IS NULL").fetchone() == (count,)


def test_single_column_table(conn):
    make_tables(conn, ["a"])
    assert_same_as_executemany(conn, ["a"], [(i,) for i in range(130)])
    assert_same_as_executemany(conn, ["a"], [("k",)] * 130)


def test_empty_input_inserts_nothing(conn):
    make_tables(conn, ["a", "b"])
    insert_columns(conn, "t", ["a", "b"], [[], []])
    insert_columns(conn, "t", [], [])
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_columns_as_tuples(conn):
    make_tables(conn, ["a", "b"])
    insert_columns(conn, "t", ["a", "b"], [tuple(range(70)), ("z",) * 70])
    assert conn.execute("SELECT a, b FROM t ORDER BY rowid").fetchall() == [
        (i, "z") for i in range(70)
    ]


def test_blob_text_int_real_round_trip(conn):
    names = ["blob", "text", "int", "real"]
    make_tables(conn, names)
    rows = [(b"\x00\xff" * (i % 3), "t\u00e9\U0001f600", 2**62 + i, 1.5e300) for i in range(100)]
    rows += [(b"same", "t", -(2**63), -1e-300)] * 40
    assert_same_as_executemany(conn, names, rows)
    got = conn.execute(f"SELECT {', '.join(names)} FROM t ORDER BY rowid").fetchall()
    assert got == rows


# ---- a constant column binds one value: it must not merge 1, True and 1.0 --------------------


@pytest.mark.parametrize(
    "column",
    [
        [1, True, 1.0],
        [1.0, 1, True],
        [True, 1, 1.0],
        [0, False, 0.0],
        [False, 0, 0.0],
        [0.0, 0, False],
        [1, 1, 1, 1.0],
        [1.0, 1.0, 1],
        [1, 1, True],
        ["1", 1, 1.0],
        [b"1", b"1", bytearray(b"1")],
        [None, None, 0],
    ],
    ids=repr,
)
def test_equal_values_of_other_types_keep_their_own_type(conn, column):
    names = ["a", "b", "c"]
    make_tables(conn, names)
    rows = [(value, "k", i) for i, value in enumerate(column)]
    assert_same_as_executemany(conn, names, rows)
    # Repeated to span several statements and the power-of-two remainders as well.
    conn.execute("DELETE FROM t")
    conn.execute("DELETE FROM u")
    rows = [(value, "k", i) for i, value in enumerate(column * 50)]
    assert_same_as_executemany(conn, names, rows)


def test_real_and_integer_typeof_in_untyped_column(conn):
    make_tables(conn, ["a"])
    insert_columns(conn, "t", ["a"], [[1, True, 1.0]])
    assert conn.execute("SELECT a, typeof(a) FROM t ORDER BY rowid").fetchall() == [
        (1, "integer"),
        (1, "integer"),  # sqlite3 binds True as the integer 1
        (1.0, "real"),
    ]


def test_negative_zero_keeps_its_sign(conn):
    make_tables(conn, ["a", "b"])
    assert_same_as_executemany(conn, ["a", "b"], [(0.0, 1), (-0.0, 2), (0.0, 3)])


@pytest.mark.parametrize(
    "types",
    [
        ["INTEGER", "REAL", "TEXT", "BLOB", "NUMERIC"],
        ["TEXT", "TEXT", "INTEGER", "REAL", ""],
    ],
)
def test_declared_types_apply_the_same_affinity(conn, types):
    names = ["a", "b", "c", "d", "e"]
    make_tables(conn, names, types)
    rows = []
    for value in ["12", "1.5", "x", 3, 3.0, True, None, b"7", "0012", "1e3"]:
        rows += [(value, value, value, value, value)] * 3  # constant runs...
        rows.append((value, "9", 9, 9.5, value))  # ...and rows that vary
    assert_same_as_executemany(conn, names, rows)
    conn.execute("DELETE FROM t")
    conn.execute("DELETE FROM u")
    for value in ["12", 3.0, True, b"7"]:  # whole batches where each column is constant
        assert_same_as_executemany(conn, names, [(value,) * 5] * 70)


@pytest.mark.parametrize("seed", range(20))
def test_random_mixed_batches_match_executemany(conn, seed):
    rng = random.Random(seed)
    pool = [0, 1, -1, True, False, 0.0, 1.0, 2.5, "", "a", "1", b"", b"a", None, 2**40]
    width = rng.randint(1, 30)
    names = [f"c{i}" for i in range(width)]
    make_tables(conn, names)
    count = rng.choice([*SIZES, rng.randint(1, 300)])
    columns = []
    for _ in range(width):
        kind = rng.random()
        if kind < 0.4:  # the same value on every row
            columns.append([rng.choice(pool)] * count)
        elif kind < 0.6:  # equal values of mixed types
            columns.append([rng.choice([1, True, 1.0]) for _ in range(count)])
        else:
            columns.append([rng.choice(pool) for _ in range(count)])
    rows = list(zip(*columns, strict=False))
    assert_same_as_executemany(conn, names, rows)


# ---- statement shapes: few statements, under 999 parameters ----------------------------------


@pytest.mark.parametrize(
    "count, expected",
    [(1, [1]), (2, [2]), (63, [32, 16, 8, 4, 2, 1]), (64, [64]), (65, [64, 1]),
     (200, [64, 64, 64, 8]), (1000, [64] * 15 + [32, 8]), (2001, [64] * 31 + [16, 1])],
)
def test_rows_per_statement(conn, count, expected):
    names = ["a", "b", "c"]
    make_tables(conn, names)
    rows = [(i, "k", None) for i in range(count)]
    columns = [list(column) for column in zip(*rows, strict=False)]
    ran = inserts(conn, lambda: insert_columns(conn, "t", names, columns))
    assert [rows_in(sql) for sql in ran] == expected
    assert sum(expected) == count
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (count,)


@pytest.mark.parametrize("count", [1, 63, 64, 65, 200, 1000])
def test_many_columns_fewer_rows_per_statement(conn, count):
    width = 25  # 999 // 25 = 39 rows per statement at most
    names = [f"c{i}" for i in range(width)]
    make_tables(conn, names)
    rows = [tuple(i * width + j for j in range(width)) for i in range(count)]
    columns = [list(column) for column in zip(*rows, strict=False)]
    ran = inserts(conn, lambda: insert_columns(conn, "t", names, columns))
    per_statement = [rows_in(sql) for sql in ran]
    assert sum(per_statement) == count
    assert max(per_statement) <= 999 // width
    assert len(ran) == len(bulk._sizes(count, 999 // width))
    marks = ", ".join("?" for _ in names)
    conn.executemany(f"INSERT INTO u VALUES ({marks})", rows)
    assert stored(conn, "t", names) == stored(conn, "u", names)


@pytest.mark.parametrize("count", [2, 40, 200])
def test_many_columns_with_constants(conn, count):
    width = 60  # 20 constants, 40 varying: (999 - 20) // 40 = 24 rows per statement
    names = [f"c{i}" for i in range(width)]
    make_tables(conn, names)
    rows = [tuple(j if j % 3 == 0 else i * width + j for j in range(width)) for i in range(count)]
    assert_same_as_executemany(conn, names, rows)


def test_wider_than_the_parameter_limit_per_row(conn):
    width = 600  # one row per statement; two would pass 999 parameters
    names = [f"c{i}" for i in range(width)]
    make_tables(conn, names)
    rows = [tuple(i * width + j for j in range(width)) for i in range(5)]
    assert_same_as_executemany(conn, names, rows)


@pytest.mark.parametrize("count", [0, 1, 5, 63, 64, 65, 127, 128, 129, 1000])
@pytest.mark.parametrize("per", [1, 7, 39, 64])
def test_sizes_cover_the_count(count, per):
    sizes = bulk._sizes(count, per)
    assert sum(sizes) == count
    assert all(0 < size <= per for size in sizes)
    assert sizes == sorted(sizes, reverse=True)


def test_works_in_an_explicit_transaction_and_rolls_back(tmp_path):
    path = str(tmp_path / "tx.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE t (a, b)")
    conn.execute("BEGIN IMMEDIATE")
    insert_columns(conn, "t", ["a", "b"], [list(range(100)), ["x"] * 100])
    assert conn.in_transaction
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    conn.execute("BEGIN IMMEDIATE")
    insert_columns(conn, "t", ["a", "b"], [list(range(100)), ["x"] * 100])
    conn.execute("COMMIT")
    conn.close()
    other = sqlite3.connect(path)
    assert other.execute("SELECT count(*), sum(a) FROM t").fetchone() == (100, sum(range(100)))
    other.close()


# ---- lookup_ids ------------------------------------------------------------------------------


@pytest.fixture
def lookup(tmp_path):
    conn = sqlite3.connect(str(tmp_path / "lookup.db"), isolation_level=None)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    conn.execute("CREATE TABLE agents (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
    yield conn
    conn.close()


def table_of(conn):
    return dict(conn.execute("SELECT name, id FROM agents"))


@pytest.mark.parametrize("count", [0, 1, 63, 64, 65, 128, 300])
def test_lookup_inserts_missing_names(lookup, count):
    names = [f"agent {i}" for i in range(count)]
    ids = lookup_ids(lookup, "agents", names)
    assert set(ids) == set(names)
    assert ids == table_of(lookup)
    assert len(set(ids.values())) == count
    assert all(type(key) is int for key in ids.values())
    # No NULL name was inserted by the padding.
    assert lookup.execute("SELECT count(*) FROM agents WHERE name IS NULL").fetchone() == (0,)


def test_lookup_keeps_ids_of_names_already_there(lookup):
    first = lookup_ids(lookup, "agents", [f"n{i}" for i in range(100)])
    mixed = [f"n{i}" for i in range(50, 150)]
    second = lookup_ids(lookup, "agents", mixed)
    assert set(second) == set(mixed)
    for name in mixed[:50]:
        assert second[name] == first[name]
    assert len(table_of(lookup)) == 150
    again = lookup_ids(lookup, "agents", list(reversed(mixed)))
    assert again == second


def test_lookup_returns_only_the_names_asked_for(lookup):
    lookup_ids(lookup, "agents", ["a", "b", "c"])
    assert lookup_ids(lookup, "agents", ["b"]) == {"b": table_of(lookup)["b"]}


def test_lookup_with_duplicate_names(lookup):
    names = ["dup", "x", "dup"] * 30
    ids = lookup_ids(lookup, "agents", names)
    assert set(ids) == {"dup", "x"}
    assert len(table_of(lookup)) == 2


def test_lookup_names_present_before_keep_their_ids(lookup):
    lookup.execute("INSERT INTO agents (id, name) VALUES (1000, 'old'), (5, 'older')")
    ids = lookup_ids(lookup, "agents", ["new", "old", "older"])
    assert ids["old"] == 1000 and ids["older"] == 5
    assert ids["new"] not in (5, 1000)


def test_lookup_unicode_and_odd_names(lookup):
    names = [
        "caf\u00e9",
        "cafe\u0301",  # the same word, not normalised: another name
        "\u65e5\u672c",
        "\U0001f600",
        "",
        " ",
        "123",
        "1.5",
        "NULL",
        "it's",
        "a\x00b",
        "Agent",
        "agent",
        "x" * 5000,
    ]
    ids = lookup_ids(lookup, "agents", names)
    assert set(ids) == set(names)
    assert len(set(ids.values())) == len(names)
    # Stored as text, exactly: "123" stays a str, NFC and NFD stay apart.
    assert lookup.execute("SELECT count(*) FROM agents WHERE typeof(name) = 'text'").fetchone() == (
        len(names),
    )
    assert lookup_ids(lookup, "agents", names) == ids


def test_lookup_inside_begin_immediate(lookup, tmp_path):
    lookup.execute("BEGIN IMMEDIATE")
    ids = lookup_ids(lookup, "agents", [f"t{i}" for i in range(70)])
    assert lookup.in_transaction
    lookup.execute("ROLLBACK")
    assert table_of(lookup) == {}

    lookup.execute("BEGIN IMMEDIATE")
    ids = lookup_ids(lookup, "agents", [f"t{i}" for i in range(70)])
    again = lookup_ids(lookup, "agents", ["t0", "t69", "t70"])
    assert again["t0"] == ids["t0"] and again["t69"] == ids["t69"]
    assert lookup.in_transaction
    lookup.execute("COMMIT")
    other = sqlite3.connect(str(tmp_path / "lookup.db"))
    try:
        assert dict(other.execute("SELECT name, id FROM agents")) == {**ids, "t70": again["t70"]}
    finally:
        other.close()


def test_lookup_after_another_connection_inserted_the_same_names(lookup, tmp_path):
    other = sqlite3.connect(str(tmp_path / "lookup.db"), isolation_level=None)
    try:
        theirs = lookup_ids(other, "agents", ["shared", "theirs"])
    finally:
        other.close()
    lookup.execute("BEGIN IMMEDIATE")
    ours = lookup_ids(lookup, "agents", ["ours", "shared"])
    lookup.execute("COMMIT")
    assert ours["shared"] == theirs["shared"]
    assert len(table_of(lookup)) == 3
