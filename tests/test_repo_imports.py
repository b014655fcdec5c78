"""The checkout import context (:class:`bench.adapters._util.RepoImports`) and HiFi-Net's scoped
``np.int`` alias: two checkouts with the same top-level package names, used one after another
and nested, never see each other's modules, and nothing of them stays behind."""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from bench.adapters._util import RepoImports, repo_imports
from bench.adapters.hifinet import numpy_int_alias


def _checkout(root: Path, tag: str) -> Path:
    """A checkout with a top-level ``models`` package whose function imports a helper lazily
    (as TruFor's forward pass does), and a top-level ``helper_<tag>`` module not named in the
    context's list."""
    (root / "models" / "cmx").mkdir(parents=True)
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / "cmx" / "__init__.py").write_text("")
    (root / "models" / "cmx" / "net.py").write_text(
        "def run():\n    from .layer import value\n    return value()\n")
    (root / "models" / "cmx" / "layer.py").write_text(f"def value():\n    return {tag!r}\n")
    (root / f"helper_{tag}.py").write_text(f"TAG = {tag!r}\n")
    return root


def _leftovers(*roots: Path) -> list[str]:
    prefixes = [str(r.resolve()) for r in roots]
    return [n for n, m in list(sys.modules.items())
            if any(str(getattr(m, "__file__", "") or "").startswith(p) for p in prefixes)]


def test_lazy_import_inside_re_entered_context_and_no_leak(tmp_path, monkeypatch):
    a_root = _checkout(tmp_path / "a", "a")
    b_root = _checkout(tmp_path / "b", "b")
    outside = types.ModuleType("models")
    monkeypatch.setitem(sys.modules, "models", outside)
    a, b = repo_imports(a_root, ("models",)), RepoImports(b_root, ("models",))
    with a:
        from models.cmx import net as net_a  # type: ignore[import-not-found]
        import helper_a  # type: ignore[import-not-found]  # noqa: F401  (not a named package)
    with b:
        from models.cmx import net as net_b  # type: ignore[import-not-found]
    assert sys.modules["models"] is outside and not _leftovers(a_root, b_root)
    assert str(a_root.resolve()) not in sys.path and str(b_root.resolve()) not in sys.path
    # outside the context the lazy import fails (the bug TruFor's forward pass hit) ...
    with pytest.raises(ImportError):
        net_a.run()
    # ... inside a re-entered context it works, with each checkout's own helper
    with a:
        assert net_a.run() == "a"
        assert sys.modules["models.cmx.net"] is net_a  # the same module objects come back
    with b:
        assert net_b.run() == "b"
    with a, b:  # nested: the inner one wins, the outer one is back afterwards
        assert net_b.run() == "b"
    with b, a:
        assert net_a.run() == "a"
    with a:
        with a:  # the same handle, nested
            assert net_a.run() == "a"
        assert net_a.run() == "a"
    assert sys.modules["models"] is outside and not _leftovers(a_root, b_root)


def test_contexts_in_two_threads_do_not_interleave(tmp_path):
    a = repo_imports(_checkout(tmp_path / "a", "a"), ("models",))
    b = repo_imports(_checkout(tmp_path / "b", "b"), ("models",))
    with a:
        from models.cmx import net as net_a  # type: ignore[import-not-found]
    with b:
        from models.cmx import net as net_b  # type: ignore[import-not-found]
    errors: list[str] = []

    def work(ctx, net, tag):
        for _ in range(200):
            with ctx:
                if net.run() != tag:
                    errors.append(tag)

    threads = [threading.Thread(target=work, args=(a, net_a, "a")),
               threading.Thread(target=work, args=(b, net_b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_numpy_int_alias_is_scoped():
    had = "int" in vars(np)
    with numpy_int_alias():
        assert np.int is int  # type: ignore[attr-defined]
    assert ("int" in vars(np)) == had
    with pytest.raises(RuntimeError), numpy_int_alias():
        raise RuntimeError("boom")
    assert ("int" in vars(np)) == had
