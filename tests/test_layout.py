"""The package's import graph (issue 15, points 1-2): the CLI on top, nothing imports it, no cycles;
the meta-learning core imports no modality or data-loading code.

Read from the source (every ``import``, at module level or inside a function), so a lazy
import that runs upward counts as much as one at the top of a file.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import vcinr

ROOT = Path(vcinr.__file__).parent


def _import_graph() -> dict[str, set[str]]:
    """Module name → the vcinr modules it imports (``from a import b`` names ``a.b`` when that is a module)."""
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                               for a in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def test_no_module_imports_the_command_line():
    upward = {name for name, targets in _import_graph().items()
              if not name.startswith("vcinr.cli") and name != "vcinr.__main__"
              and any(t == "vcinr.cli" or t.startswith("vcinr.cli.") for t in targets)}
    assert not upward, f"imports into vcinr.cli from {sorted(upward)}"


def test_there_are_no_import_cycles():
    try:
        TopologicalSorter(_import_graph()).prepare()
    except CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_meta_learning_imports_no_modality_or_data_loading_code():
    """vcinr.meta is modality-agnostic: what it needs to know about the items it is given (vcinr.training)."""
    modality_code = ("vcinr.data", "vcinr.modalities")
    leaks = {name: sorted(t for t in targets if any(t == m or t.startswith(m + ".") for m in modality_code))
             for name, targets in _import_graph().items() if name == "vcinr.meta" or name.startswith("vcinr.meta.")}
    leaks = {name: targets for name, targets in leaks.items() if targets}
    assert not leaks, f"vcinr.meta imports modality or data-loading code: {leaks}"
