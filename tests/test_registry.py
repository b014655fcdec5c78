"""The registries are typed: each holds one kind of object, a name is stated once, and a plugin
(or built-in module) that is broken is an error naming it, never silently absent."""

from __future__ import annotations

import types
from importlib.metadata import EntryPoint

import numpy as np
import pytest

import bench.core.registry as registry
from bench.cli import main
from bench.errors import BenchError
from bench.metrics import MetricSpec
from bench.core.registry import ADAPTERS, DATASETS, METRICS, PERTURBATIONS, SUITES, Registry
from bench.core.types import Adapter, Prediction


class Named(Adapter):
    name = "test-registry-named"
    tasks = frozenset({"detect"})

    def predict(self, batch):
        return [Prediction(score=0.0) for _ in batch]


class Nameless(Adapter):
    tasks = frozenset({"detect"})

    def predict(self, batch):
        return [Prediction(score=0.0) for _ in batch]


def _adapter_registry(*modules: str) -> Registry:
    return Registry("adapter", modules, form="class", base="bench.core.types:Adapter")


def _fake_entry_points(monkeypatch, group: str, *eps: tuple[str, str], dist: str = "fake-dist") -> None:
    """``bench.core.registry.entry_points`` answers ``eps`` (name, value) for ``group``, from a
    distribution called ``dist``, and nothing for other groups."""
    made = []
    for name, value in eps:
        ep = EntryPoint(name, value, group)
        ep = ep._for(types.SimpleNamespace(name=dist))  # what importlib.metadata does for a real dist
        made.append(ep)
    monkeypatch.setattr(registry, "entry_points", lambda group=None: made if group == made[0].group else [])


# -- 1. a registry refuses what is not of its type -------------------------------------------

@pytest.mark.parametrize("obj", [42, "trufor", lambda batch: batch, Prediction, Adapter])
def test_adapters_refuse_anything_but_an_adapter_subclass(obj):
    with pytest.raises(TypeError) as err:
        ADAPTERS.add("x", obj)
    msg = str(err.value)
    assert "adapter registry" in msg and "bench.core.types.Adapter" in msg and "\n" not in msg
    assert "x" not in ADAPTERS


def test_datasets_refuse_an_adapter():
    with pytest.raises(TypeError, match=r"dataset registry.*subclass of bench\.core\.types\.Dataset"):
        DATASETS.add(Named.name, Named)


def test_metrics_register_one_way_only():
    def bare(pred, ref):
        return 1.0

    with pytest.raises(TypeError, match=r"metric registry.*bench\.metrics\.MetricSpec instance.*function"):
        METRICS.add("bare", bare)
    with pytest.raises(TypeError, match="metric registry"):
        METRICS.add("n", 42)
    assert "bare" not in METRICS
    assert not hasattr(registry, "register_metric")  # the path that stored bare functions is gone
    spec = MetricSpec("test-registry-metric", "pixel", "localize", bare)
    with pytest.raises(ValueError, match="its name is 'test-registry-metric'"):
        METRICS.add("other-name", spec)


def test_perturbations_refuse_non_functions_and_need_a_name():
    for obj in (42, Named, "jpeg"):
        with pytest.raises(TypeError, match=r"perturbation registry.*fn\(image, \*, rng, \*\*params\)"):
            PERTURBATIONS.add("x", obj)
    with pytest.raises(TypeError, match="needs the name"):
        registry.register_perturbation(lambda image, rng=None: image)
    assert "x" not in PERTURBATIONS


def test_suites_refuse_a_mapping():
    with pytest.raises(TypeError, match=r"suite registry.*bench\.suites\.Suite instance"):
        SUITES.add("x", {"name": "x", "dataset": "demo"})


# -- 2. a name is stated once ----------------------------------------------------------------

def test_decorator_takes_the_name_from_the_class():
    reg = _adapter_registry()
    assert reg.register(Named) is Named
    assert reg.names() == [Named.name] and reg.get(Named.name) is Named


def test_decorator_refuses_a_name_argument():
    with pytest.raises(TypeError, match="takes no name"):
        registry.register_adapter("trufor")


def test_class_without_name_is_refused():
    reg = _adapter_registry()
    with pytest.raises(TypeError, match="has no `name`"):
        reg.register(Nameless)
    with pytest.raises(TypeError, match="has no `name`"):
        reg.add("nameless", Nameless)
    assert reg.names() == []


def test_registered_name_must_equal_the_class_name():
    with pytest.raises(ValueError, match=r"as 'other'.*its name is 'test-registry-named'"):
        _adapter_registry().add("other", Named)


def test_builtin_adapters_state_their_name_once():
    for e in ADAPTERS.entries():
        assert e.obj.name == e.name


# -- 3. entry points: name agreement, broken plugins -----------------------------------------

def test_entry_point_name_must_match_the_class_name(monkeypatch):
    _fake_entry_points(monkeypatch, "bench.adapters", ("not-empty", "bench.adapters.reference:Empty"))
    with pytest.raises(BenchError) as err:
        _adapter_registry().names()
    msg = str(err.value)
    assert "\n" not in msg
    assert "'not-empty'" in msg and "'fake-dist'" in msg and "reference.Empty" in msg and "'empty'" in msg


def test_entry_point_registers_a_matching_class(monkeypatch):
    _fake_entry_points(monkeypatch, "bench.adapters", ("empty", "bench.adapters.reference:Empty"))
    reg = _adapter_registry()
    assert reg.names() == ["empty"] and reg.entry("empty").source == "fake-dist"


def test_entry_point_of_the_wrong_type_is_an_error(monkeypatch):
    _fake_entry_points(monkeypatch, "bench.adapters", ("pi", "math:pi"))
    with pytest.raises(BenchError, match=r"adapter plugin 'pi' \(math:pi\) from distribution 'fake-dist'.*"
                                         r"subclass of bench\.core\.types\.Adapter"):
        _adapter_registry().names()


def _broken_module(tmp_path, monkeypatch, name: str) -> None:
    (tmp_path / f"{name}.py").write_text("import numpy\nraise RuntimeError('weights\\nmissing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_plugin_that_fails_to_import_is_an_error(tmp_path, monkeypatch):
    _broken_module(tmp_path, monkeypatch, "bench_broken_plugin_a")
    _fake_entry_points(monkeypatch, "bench.adapters", ("broken", "bench_broken_plugin_a:Adapter"))
    reg = _adapter_registry()
    for _ in range(2):  # and it stays an error: the registry is not left half-loaded
        with pytest.raises(BenchError) as err:
            reg.names()
        assert str(err.value) == ("adapter plugin 'broken' (bench_broken_plugin_a:Adapter) from distribution "
                                  "'fake-dist' failed to import: RuntimeError: weights missing")


def test_builtin_module_that_fails_to_import_is_an_error(tmp_path, monkeypatch):
    _broken_module(tmp_path, monkeypatch, "bench_broken_builtin_b")
    monkeypatch.setattr(registry, "entry_points", lambda group=None: [])
    with pytest.raises(BenchError, match=r"^built-in adapter module 'bench_broken_builtin_b' failed to import: "
                                         r"RuntimeError: weights missing$"):
        _adapter_registry("bench_broken_builtin_b").names()


def test_bench_ls_reports_a_broken_plugin_in_one_line(tmp_path, monkeypatch, capsys):
    ADAPTERS.names()  # built-ins loaded first, so only the plugin is new
    _broken_module(tmp_path, monkeypatch, "bench_broken_plugin_c")
    _fake_entry_points(monkeypatch, "bench.adapters", ("broken-c", "bench_broken_plugin_c:Thing"),
                       dist="bench-broken-c")
    monkeypatch.setattr(ADAPTERS, "_loaded", False)
    monkeypatch.setattr(ADAPTERS, "_load_error", None)
    rc = main(["ls"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["bench: error: adapter plugin 'broken-c' (bench_broken_plugin_c:Thing) from distribution "
                     "'bench-broken-c' failed to import: RuntimeError: weights missing"]


def test_suite_entry_point_may_name_a_yaml_path(tmp_path, monkeypatch):
    from bench.suites import Suite

    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nversion: 1\ndataset: demo\n")
    mod = types.ModuleType("bench_suite_plugin_d")
    mod.SUITE = str(path)
    monkeypatch.setitem(__import__("sys").modules, "bench_suite_plugin_d", mod)
    _fake_entry_points(monkeypatch, "bench.suites", ("mine", "bench_suite_plugin_d:SUITE"))
    reg = Registry("suite", (), form="instance", base="bench.suites:Suite", coerce="bench.suites:suite_from_entry_point")
    suite = reg.get("mine")
    assert isinstance(suite, Suite) and suite.dataset == "demo"
    np.testing.assert_equal(reg.names(), ["mine"])
