"""Architecture rules that import-linter cannot state (it checks the imports: pyproject.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "preflight"


def test_the_facade_stays_a_facade() -> None:
    # One short method per verb: the verbs themselves live in services/. (300: guard and the
    # check's need from history added a verb and four keyword arguments, one line each.)
    assert len((PACKAGE / "api.py").read_text().splitlines()) <= 300


def test_remote_mode_and_the_report_are_kept_from_every_verbs_module() -> None:
    # The import-linter contract lists the service modules by name (it has no "all but"):
    # a new one must join the list, unless it holds results.
    contracts = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"][
        "importlinter"
    ]["contracts"]
    (contract,) = (c for c in contracts if c["name"].startswith("remote mode, the contract"))
    listed = {m for m in contract["forbidden_modules"] if m.startswith("preflight.services.")}
    results = {"preflight.services.results", "preflight.services.check_result"}
    modules = {
        f"preflight.services.{path.stem}"
        for path in (PACKAGE / "services").glob("*.py")
        if path.stem != "__init__"
    }
    assert listed == modules - results


def test_the_http_app_only_assembles() -> None:
    assert len((PACKAGE / "http" / "app.py").read_text().splitlines()) <= 150
    routes = {path.stem for path in (PACKAGE / "http" / "routes").glob("*.py")}
    assert {"batches", "reports", "audit", "accounts", "health"} <= routes


# ---------------------------------------------------------------- db/ (issue 18)

import ast  # noqa: E402
import re  # noqa: E402

import pytest  # noqa: E402

DB = PACKAGE / "db"
STORES = {"store_sqlite.py", "store_postgresql.py"}


def _sources() -> dict[str, str]:
    return {
        str(path.relative_to(PACKAGE)): path.read_text() for path in sorted(PACKAGE.rglob("*.py"))
    }


@pytest.mark.parametrize("table", ["batches", "snapshots", "accounts"])
def test_one_statement_per_dialect_creates_a_batch_a_snapshot_an_account(table: str) -> None:
    # The write port's one spelling per dialect; no ORM twin (insert(models.X), an
    # insert_if_absent of it, or a model object added to a session).
    model = {"batches": "Batch", "snapshots": "Snapshot", "accounts": "Account"}[table]
    inserts = {
        name: len(re.findall(rf"INSERT INTO {table}\b", text))
        for name, text in _sources().items()
        if re.search(rf"INSERT INTO {table}\b", text)
    }
    assert inserts == {"db/store_sqlite.py": 1, "db/store_postgresql.py": 1}
    orm = re.compile(
        rf"insert\((models\.)?{model}\)|insert_if_absent\([^)]*\b{model}\b|(?<!class )\b{model}\("
    )
    ours = {name: text for name, text in _sources().items() if not name.startswith("sandbox/")}
    assert [name for name, text in ours.items() if orm.search(text)] == []


def test_no_function_of_the_write_port_chooses_a_dialect() -> None:
    # The dialect is chosen once, when a transaction's store is made (Database.store), not
    # by hand in each function as db/writes.py did (`_postgresql(transaction)`).
    pattern = re.compile(r"_postgresql\(|_is_postgresql\(|dialect\.name|is_sqlite\(")
    port = ["db/store.py", "db/store_sqlite.py", "db/store_postgresql.py"]
    sources = _sources()
    assert [name for name in port if pattern.search(sources[name])] == []


def _function_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
    return found


def test_an_import_inside_a_function_of_db_names_the_cold_path_it_protects() -> None:
    # db/ imports at the top, but where a cold path must not load a module: then a
    # one-line comment on the import (or the line above) says which path.
    missing = []
    for path in sorted(DB.glob("*.py")):
        lines = path.read_text().splitlines()
        for node in _function_imports(ast.parse(path.read_text())):
            near = " ".join(lines[max(node.lineno - 2, 0) : node.end_lineno or node.lineno])
            if "cold path" not in near:
                missing.append(f"{path.name}:{node.lineno}")
    assert missing == []


def test_no_service_imports_the_models_not_even_for_annotations() -> None:
    # Services get read models and plain rows from db/, never ORM rows: not even a
    # type-only import (import-linter's contracts skip those, so the graph here keeps them).
    import grimp

    graph = grimp.build_graph("preflight", exclude_type_checking_imports=False)
    importers = graph.find_modules_that_directly_import("preflight.db.models")
    assert sorted(m for m in importers if m.startswith("preflight.services")) == []


# ---------------------------------------------------------------- declared cold paths (issue 19)

#: The entry points whose start-up is held to a list of modules
#: (tests/e2e/test_cold_start.py), and Airflow's DAG parse (tests/airflow/test_provider.py):
#: an import is deferred into a function only to keep one of them from loading a module.
COLD_PATHS = (
    "`preflight check`",
    "`preflight --help`",
    "`import preflight`",
    "`import preflight.remote`",
    "`Preflight.remote(",
    "`AsyncPreflight.remote(",
    "DAG parse",
)


def _deferred_imports() -> dict[str, list[ast.Import | ast.ImportFrom]]:
    """Every import inside a function of preflight/, by file (a nested function's once)."""
    found: dict[str, list[ast.Import | ast.ImportFrom]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        unique = {id(node): node for node in _function_imports(ast.parse(path.read_text()))}
        if unique:
            found[str(path.relative_to(PACKAGE))] = sorted(
                unique.values(), key=lambda node: node.lineno
            )
    return found


def test_at_most_25_imports_are_deferred_into_functions() -> None:
    # Start-up laziness is declared (the verb table, the CLI's command table, the facade's
    # names), not spread over the code: the rest import at the top of their module.
    deferred = {name: len(nodes) for name, nodes in _deferred_imports().items()}
    assert sum(deferred.values()) <= 25, deferred


def test_each_import_deferred_into_a_function_names_the_cold_path_it_protects() -> None:
    # A one-line comment on the import (or the line above): "cold path: `preflight --help`
    # ...". db/ says its own (the test above).
    missing = []
    for name, nodes in _deferred_imports().items():
        if name.startswith("db/"):
            continue
        lines = (PACKAGE / name).read_text().splitlines()
        for node in nodes:
            near = " ".join(lines[max(node.lineno - 2, 0) : node.end_lineno or node.lineno])
            if "cold path" not in near or not any(path in near for path in COLD_PATHS):
                missing.append(f"{name}:{node.lineno}")
    assert missing == []


# ---------------------------------------------------------------- the dialect, chosen once

_DIALECTS = {"sqlite", "postgresql", "postgres"}
_CHOOSERS = {"is_sqlite", "_postgresql", "_is_postgresql", "_dialect", "_insert_of"}


def _reads_the_dialect(node: ast.AST) -> bool:
    """``….dialect.name``: which dialect an engine, a connection or a session's bind is."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "name"
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "dialect"
    )


def _chooses_a_dialect(node: ast.AST) -> bool:
    """A comparison with a dialect's name, or a call of a per-function dialect test."""
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        return any(isinstance(o, ast.Constant) and o.value in _DIALECTS for o in operands)
    if isinstance(node, ast.Call):
        called = node.func
        name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
        return name in _CHOOSERS
    return False


def _innermost_functions(tree: ast.Module) -> dict[int, str]:
    """The name of the innermost function around each node (by ``id``)."""
    around: dict[int, str] = {}
    for node in ast.walk(tree):  # outer functions first: an inner one overwrites
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            around.update({id(inner): node.name for inner in ast.walk(node)})
    return around


def test_no_function_of_db_chooses_a_dialect() -> None:
    # The dialect is chosen once per engine (preflight.db.connectors.connector_of, which
    # Database asks when it is built) and SQLAlchemy's per-dialect hooks (@compiles,
    # with_variant); no function of db/ compares a dialect's name, whatever it reads it
    # from (an engine, a session's bind, the dialect a column type is handed).
    chosen, reads = [], []
    for path in sorted(DB.glob("*.py")):
        tree = ast.parse(path.read_text())
        around = _innermost_functions(tree)
        for node in ast.walk(tree):
            where = f"{path.name}:{around.get(id(node), '<module>')}"
            if _chooses_a_dialect(node):
                chosen.append(where)
            if _reads_the_dialect(node):
                reads.append(where)
    assert chosen == []
    assert reads == ["connectors.py:connector_of"]


def test_db_keeps_at_most_four_imports_inside_functions() -> None:
    # Each one a cold path (the test above checks its comment); the rest at the top,
    # where the acyclic contract over db/ sees them.
    inside = {
        path.name: len(_function_imports(ast.parse(path.read_text())))
        for path in sorted(DB.glob("*.py"))
    }
    assert sum(inside.values()) <= 4, {name: n for name, n in inside.items() if n}


# ---------------------------------------------------------------- services get plain rows


def _service_uses_of_db() -> set[tuple[str, str]]:
    """(db module, name) of every db/ name a service uses: ``from preflight.db.X import
    name``, or ``alias.name`` of ``from preflight.db import X as alias``."""
    used: set[tuple[str, str]] = set()
    for path in sorted((PACKAGE / "services").glob("*.py")):
        tree = ast.parse(path.read_text())
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "preflight.db":
                aliases.update({a.asname or a.name: a.name for a in node.names})
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "preflight.db."
            ):
                module = (node.module or "").removeprefix("preflight.db.")
                used.update((module, a.name) for a in node.names)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                used.add((aliases[node.value.id], node.attr))
    return used


def test_no_db_function_a_service_calls_returns_an_orm_row() -> None:
    # A service gets frozen read rows (db/reports.py's BatchRow, the write port's states),
    # never a mapped object that could lazy-load or be changed behind the store's back.
    import importlib
    import inspect

    from preflight.db.models import Base

    mapped = {mapper.class_.__name__ for mapper in Base.registry.mappers}
    pattern = re.compile(rf"\b({'|'.join(sorted(mapped))})\b")
    returning = {}
    for module_name, name in sorted(_service_uses_of_db()):
        module = importlib.import_module(f"preflight.db.{module_name}")
        target = getattr(module, name, None)
        if inspect.isfunction(target):
            returning[f"{module_name}.{name}"] = str(
                inspect.get_annotations(target).get("return", "")
            )
    assert "repositories.find_batch" in returning  # the classifier's path is seen
    assert {name: ret for name, ret in returning.items() if pattern.search(ret)} == {}
