"""The package's shape: what `import dspfx` loads, and no import cycles between its modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dspfx"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """dspfx modules imported when ``path`` is imported: module-level statements only (imports
    inside functions run on use, and are how a module reaches a heavier one lazily)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue
        for sub in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else ():
            if isinstance(sub, ast.Import):
                found.update(a.name for a in sub.names if a.name.startswith("dspfx"))
            elif isinstance(sub, ast.ImportFrom) and sub.module and sub.module.startswith("dspfx") and sub.level == 0:
                found.add(sub.module)
                found.update(f"{sub.module}.{a.name}" for a in sub.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _top_level_imports(path) if m in modules and m != name}
    return graph


def test_no_import_cycles_between_dspfx_modules():
    """The module-level import graph has no cycle (a package's __init__ importing its own
    submodules is how it re-exports, and is left out), and the two edges that closed the old
    cycles are gone: unit -> io (check_finite now lives in the leaf dspfx.checks) and
    losses -> metrics (metrics now builds on losses)."""
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):  # a package's __init__ importing its children
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert "dspfx.io" not in graph["dspfx.unit"]
    assert "dspfx.fitting.metrics" not in graph["dspfx.fitting.losses"]


def test_import_dspfx_leaves_the_ddsp_pipeline_unloaded():
    code = (
        "import sys, dspfx\n"
        "x = [m for m in sys.modules if m.startswith(('dspfx.ddsp.', 'librosa', 'pretty_midi'))]\n"
        "print(sorted(x))\n"
        "import dspfx.ddsp\n"
        "print(sorted(m for m in sys.modules if m.startswith('dspfx.ddsp.')))\n"
        "dspfx.ddsp.features\n"
        "print('dspfx.ddsp.features' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]", out  # nothing of the DDSP pipeline (nor librosa) on `import dspfx`
    assert out[1] == "[]", out  # `import dspfx.ddsp` is lazy too
    assert out[2] == "True", out  # ... and loads a submodule on first use
