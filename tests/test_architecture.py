"""The map of docs/architecture.md, kept: data flows one way, and the SQLite habits (how to
write in a transaction, open read-only, which files sit beside a log, every table's DDL) have
one home, ``schema.py``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "asgi_log_to_sqlite"
MODULES = sorted(PACKAGE.rglob("*.py"))
#: What the writer side is made of: reports must not need any of it to read a log.
WRITER_SIDE = {
    "middleware", "observers", "writer", "writer_process", "wire", "headers", "prepare", "sinks",
    "maintenance", "rotation",
}


def name_of(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def imported(path: Path) -> set[str]:
    """The modules ``path`` imports, as dotted names inside the package where relative
    (``sinks.sqlite``), else as written (``sqlite3``)."""
    package = name_of(path).split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.add(node.module or "")
                continue
            base = package[: len(package) - node.level + 1]
            if node.module:
                found.add(".".join([*base, node.module]))
            else:
                found.update(".".join([*base, alias.name]) for alias in node.names)
    return found


def literals(path: Path) -> list[str]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_the_middleware_never_touches_storage():
    modules = imported(PACKAGE / "middleware.py")
    assert "sqlite3" not in modules
    assert "schema" not in modules


def test_the_writer_knows_neither_sqlite_nor_asgi():
    """The generic writer gets its sink and its row-building step injected."""
    for module in ("writer.py", "writer_process.py"):
        found = imported(PACKAGE / module)
        assert found & {"sqlite3", "schema", "sinks.sqlite", "observers", "middleware"} == set()


@pytest.mark.parametrize("path", [p for p in MODULES if name_of(p).startswith("report.")],
                         ids=name_of)
def test_reports_import_nothing_of_the_writer_side(path):
    assert {m for m in imported(path) if m.split(".")[0] in WRITER_SIDE} == set()


HABITS = {
    "a transaction by hand": re.compile(r"^\s*(BEGIN IMMEDIATE|COMMIT|ROLLBACK)\s*$"),
    "a read-only URI": re.compile(r"mode=ro|immutable=1"),
    "a file SQLite keeps beside a log": re.compile(r"^-(wal|shm|journal)$"),
    "a table's DDL": re.compile(r"CREATE\s+(UNIQUE\s+)?(TABLE|INDEX|VIEW)\b"),
}
#: PostgreSQL's own schema module holds its DDL the same way.
HOMES = {"schema", "postgresql_schema"}


@pytest.mark.parametrize("path", [p for p in MODULES if name_of(p) not in HOMES], ids=name_of)
def test_the_sqlite_habits_live_in_schema(path):
    found = [(habit, text.strip()[:60]) for text in literals(path)
             for habit, pattern in HABITS.items() if pattern.search(text)]
    assert found == []
