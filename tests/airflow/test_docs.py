"""The documentation's Airflow blocks run here, with Airflow installed: every Python block
of docs/airflow.md and README.md's Airflow example (the documentation tests of the main
suite skip them, as they import Airflow)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FENCED = re.compile(r"^```python\n(.*?)^```$", flags=re.MULTILINE | re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    page = [("docs/airflow.md", b) for b in FENCED.findall((ROOT / "docs/airflow.md").read_text())]
    readme = [
        ("README.md", b)
        for b in FENCED.findall((ROOT / "README.md").read_text())
        if "preflight.airflow" in b
    ]
    return page + readme


BLOCKS = _blocks()


def test_the_documents_have_their_airflow_blocks() -> None:
    assert [name for name, _ in BLOCKS] == ["docs/airflow.md", "docs/airflow.md", "README.md"]


@pytest.mark.parametrize(
    ("document", "block"), BLOCKS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BLOCKS)]
)
def test_an_airflow_block_of_the_documentation_runs(document: str, block: str) -> None:
    namespace: dict[str, object] = {"__name__": "documentation"}
    exec(compile(block, document, "exec"), namespace)  # the documentation's own code
