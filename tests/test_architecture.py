"""The import graph of the one package ``bench``: layers import only downward, no cycles, no
private name crosses a module boundary (docs/architecture.md).

Every import counts, including those inside functions: a function-level import is still a
dependency, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Where each sub-package's files live (bench.adapters etc. are mapped folders: pyproject.toml).
FOLDERS = {"bench": ROOT / "bench", "bench.adapters": ROOT / "adapters",
           "bench.perturbations": ROOT / "perturbations", "bench.leaderboards": ROOT / "leaderboards"}
#: Layer of each sub-package, bottom first. A module may import its own sub-package and any
#: lower layer; sub-packages on one layer are peers and never import each other.
LAYERS: list[tuple[str, ...]] = [
    ("bench", "bench.errors"),
    ("bench.io",),
    ("bench.core",),
    ("bench.datasets", "bench.perturbations", "bench.metrics", "bench.suites"),
    ("bench.adapters",),
    ("bench.results",),
    ("bench.engine",),
    ("bench.leaderboards",),
    ("bench.cli",),
]


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = [pkg, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join(parts)
            if pkg == "bench" and name.split(".")[1:2] and f"bench.{name.split('.')[1]}" in FOLDERS:
                continue  # not a mapped folder's own copy
            mods[name] = path
    return mods


MODULES = _modules()


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, sub-package) of a module: its longest listed prefix."""
    best: tuple[int, str] | None = None
    for i, names in enumerate(LAYERS):
        for n in names:
            if (module == n or module.startswith(n + ".")) and (best is None or len(n) > len(best[1])):
                best = (i, n)
    assert best is not None, f"{module} is in no layer: add its sub-package to LAYERS"
    return best


def _target(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported harness module, names taken from it, line) for every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                t = _target(a.name) if a.name.startswith("bench") else None
                if t:
                    out.append((t, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: None if is_pkg else -1]
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if not name.startswith("bench"):
                continue
            for a in node.names:
                sub = f"{name}.{a.name}"
                if sub in MODULES:
                    out.append((sub, [], node.lineno))
                else:
                    t = _target(name)
                    if t:
                        out.append((t, [a.name], node.lineno))
    return out


def _edges() -> list[tuple[str, str, list[str], int]]:
    return [(m, t, names, line) for m in sorted(MODULES) for t, names, line in imports(m) if t != m]


def test_every_module_is_in_a_layer():
    for m in MODULES:
        layer_of(m)


def test_layers_import_only_downward():
    bad = []
    for src, dst, _, line in _edges():
        (ls, ps), (ld, pd) = layer_of(src), layer_of(dst)
        if ps == pd or ld < ls:
            continue
        how = "a peer" if ld == ls else "a higher layer"
        bad.append(f"{MODULES[src].relative_to(ROOT)}:{line}: {src} imports {dst} ({how}: {pd})")
    assert not bad, "\n".join(bad)


def test_no_private_name_crosses_a_module_boundary():
    bad = [f"{MODULES[src].relative_to(ROOT)}:{line}: {src} takes {n} from {dst}"
           for src, dst, names, line in _edges() for n in names
           if n.startswith("_") and not n.startswith("__")]
    bad += [f"{MODULES[src].relative_to(ROOT)}:{line}: {src} imports the private module {dst}"
            for src, dst, _, line in _edges()
            if dst.rpartition(".")[2].startswith("_") and dst.rpartition(".")[0] != src.rpartition(".")[0]
            and not dst.endswith("__init__")]
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_modules():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for src, dst, _, _ in _edges():
        # a package's __init__ importing its own modules is how a package exposes them
        if dst.startswith(src + "."):
            continue
        graph[src].add(dst)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (cyc := visit(n)):
                return cyc
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The check itself can fail: a core module importing the engine is reported."""
    fake = tmp_path / "bad.py"
    fake.write_text("def f():\n    from bench.engine.runner import run_suite\n    from bench.io.paths import _x\n")
    monkeypatch.setitem(MODULES, "bench.core.bad", fake)
    found = imports("bench.core.bad")
    assert ("bench.engine.runner", ["run_suite"], 2) in found
    assert layer_of("bench.engine.runner")[0] > layer_of("bench.core.bad")[0]
    assert ("bench.io.paths", ["_x"], 3) in found
