"""Every code block of README.md and docs/*.md runs as a test (tests/docs/blocks.py says how).

Sybil finds the blocks: its Markdown parsers give Python blocks, ``<!-- skip: next -->`` and
invisible set-up blocks, and run a document's examples in order in one namespace, each a
pytest item named by its file and line (``README.md::line:192,column:1``). The documents
live outside ``testpaths``, so pytest never visits them: they are collected under
tests/docs/test_markdown.py, found anew on every run, so a document added to docs/ is
covered without a change here. One document's or one block's:
``pytest tests/docs -k "README and line:71"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sybil import Sybil
from sybil.integration.pytest import SybilFile, SybilItem
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from tests.docs.blocks import ROOT, BlockParser

HERE = Path(__file__).resolve().parent

DOCS = Sybil(
    parsers=[PythonCodeBlockParser(), BlockParser(), SkipParser()],
    path=str(ROOT),
    fixtures=["sandbox_vendor"],
)


def markdown_documents() -> list[Path]:
    """The documents whose blocks run: README.md and every Markdown file under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


class MarkdownBlock(SybilItem):
    """One block of a document. A Python block that raises is shown by its document's line
    alone: the long form would print the whole document down to that line."""

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        return super().repr_failure(excinfo, style=style or "short")


class MarkdownFile(SybilFile):
    """One document: its blocks in order, in one namespace."""

    def collect(self) -> Iterable[pytest.Item]:
        for sybil in self.sybils:
            document = sybil.parse(self.path)
            self.documents.append(document)
            for example in document.examples():
                yield MarkdownBlock.from_parent(self, sybil=sybil, example=example)


class MarkdownModule(pytest.Module):
    """tests/docs/test_markdown.py: its own tests, then one Sybil file per document."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        yield from super().collect()
        for path in markdown_documents():
            yield MarkdownFile.from_parent(self, path=path, sybils=[DOCS])


def pytest_pycollect_makemodule(
    module_path: Path, parent: pytest.Collector
) -> pytest.Module | None:
    if module_path.resolve() == HERE / "test_markdown.py":
        module: pytest.Module = MarkdownModule.from_parent(parent, path=module_path)
        return module
    return None


@pytest.fixture(scope="module")
def sandbox_vendor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    """For a document's Python blocks: a sandbox vendor with 100 credits, and the
    PREFLIGHT_* settings a user would have set pointing at it and at an empty SQLite
    database, in an empty working directory. One per document (a reader's session); it
    is ``sandbox_vendor`` in the blocks' namespace."""
    work = tmp_path_factory.mktemp("docs-python")
    with SandboxServer(credits=Decimal("100")) as vendor, pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        patch.setenv("PREFLIGHT_DATABASE_URL", f"sqlite:///{work / 'preflight.db'}")
        patch.setenv("PREFLIGHT_VENDOR_URL", vendor.url)
        patch.setenv("PREFLIGHT_API_TOKEN", DEFAULT_TOKEN)
        yield vendor
