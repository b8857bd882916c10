"""Architecture rules that import-linter cannot state (it checks the imports: pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "preflight"


def test_the_facade_stays_a_facade() -> None:
    # One short method per verb: the verbs themselves live in services/.
    assert len((PACKAGE / "api.py").read_text().splitlines()) <= 250


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
