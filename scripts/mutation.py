"""mutmut 3 for the classifier and the verdicts, ``@exact`` functions included.

mutmut 3 never mutates a decorated function (it cannot tell whether copying one for its
trampoline is safe), and every function here that does the arithmetic -- ``classify``,
``foreign_consumption``, ``assess``, ``outstanding_need`` -- carries ``@exact``. Run as
is, mutmut skips them silently and reports a score over the helpers alone.

``@exact`` only widens the decimal context around a call: a copy of the function that
carries it behaves like the function, so this lifts mutmut's rule for that decorator,
and that decorator only, then hands over to mutmut's own command line unchanged. The
hook is in mutmut's internals, hence the version pin in pyproject.toml and the check
below. See docs/classification.md, "Mutation testing".

    rm -rf mutants && .venv/bin/python scripts/mutation.py run --max-children 2
    .venv/bin/python scripts/mutation.py results   # or: show NAME, browse
"""

from __future__ import annotations

import importlib.metadata
import sys

import libcst as cst
from libcst.metadata import PositionProvider
from mutmut.__main__ import cli
from mutmut.mutation import file_mutation

SAFE_DECORATORS = frozenset({"exact"})
KNOWN_MUTMUT = "3.8."


def _only_safe_decorators(node: cst.CSTNode) -> bool:
    return (
        isinstance(node, cst.FunctionDef)
        and bool(node.decorators)
        and all(
            isinstance(d.decorator, cst.Name) and d.decorator.value in SAFE_DECORATORS
            for d in node.decorators
        )
    )


def _allow_safe_decorators() -> None:
    visitor = file_mutation.MutationVisitor
    original = visitor._skip_node_and_children

    def skip_node_and_children(self: file_mutation.MutationVisitor, node: cst.CSTNode) -> bool:
        skip = original(self, node)
        if not (skip and _only_safe_decorators(node)):
            return skip
        # Skipped for its decorator: keep only the other reasons that apply to a function,
        # a "pragma: no mutate block" on its line and the names mutmut never mutates.
        assert isinstance(node, cst.FunctionDef)
        position = self.get_metadata(PositionProvider, node, None)
        pragma = position is not None and position.start.line in self._ignored_node_lines
        return pragma or node.name.value in file_mutation.NEVER_MUTATE_FUNCTION_NAMES

    visitor._skip_node_and_children = skip_node_and_children  # type: ignore[method-assign]


def main() -> None:
    version = importlib.metadata.version("mutmut")
    if not version.startswith(KNOWN_MUTMUT):
        sys.exit(f"scripts/mutation.py hooks into mutmut {KNOWN_MUTMUT}x, not {version}: recheck")
    _allow_safe_decorators()
    cli()


if __name__ == "__main__":
    main()
