"""External adapters (LEGION's launch, generic command), prediction folders, ``predictions``.

The "model" is a real small Python script run as a subprocess: it mimics LEGION's
``scripts/loc_exp/infer.py`` command line, refuses to run without the environment the real one
needs, and writes LEGION's exact output layout. Others crash or hang.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adapters._util import AdapterLoadError
from adapters.external import GenericExternalAdapter
from adapters.legion import LEGION_PROMPT, LegionAdapter
from adapters.predictions import PredictionsAdapter
from bench.errors import BenchError, SampleError
from bench.prediction_folders import read_legion_prediction, read_native_prediction
from bench.types import ModelInput

@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Weight hashes are remembered under the cache root: keep the user's cache out of tests."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.mktemp("bench-cache")))


# A stand-in for LEGION's infer.py: same arguments (argparse rejects others), the same
# environment demands (init_distributed_mode + DistributedSampler need RANK/WORLD_SIZE/...,
# --local_rank 0; `eval` importable from the repo root), the same output layout.
FAKE_INFER = textwrap.dedent('''
    import argparse, json, os, sys
    import numpy as np
    from PIL import Image
    from eval.ddp import MARKER  # only importable with PYTHONPATH = repo root

    p = argparse.ArgumentParser()
    p.add_argument("--hf_model_path", required=True)
    p.add_argument("--image_dir", default="./inference_data")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--image_size", default=1024, type=int)
    p.add_argument("--model_max_length", default=512, type=int)
    p.add_argument("--conv_type", default="llava_v1", choices=["llava_v1", "llava_llama_2"])
    p.add_argument("--batch_size_per_gpu", default=1)
    p.add_argument("--world_size", default=1, type=int)
    p.add_argument("--local_rank", default=-1, type=int)
    args = p.parse_args()
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            sys.exit(f"RuntimeError: Default process group has not been initialized ({var} missing)")
    if args.local_rank < 0:
        sys.exit("ValueError: Invalid rank -1, rank should be in the interval [0, 0]")
    assert os.path.isdir(args.hf_model_path)
    assert os.getcwd() == os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    mode = os.environ.get("FAKE_MODE", "ok")
    names = os.listdir(args.image_dir)
    for k, image_id in enumerate(sorted(names)):
        path = f"{args.image_dir}/{image_id}"
        img = np.asarray(Image.open(path))          # cv2.imread would fail on a non-image too
        if mode == "crash" and k == 1:
            print("Traceback (most recent call last):", file=sys.stderr)
            print("torch.cuda.OutOfMemoryError: CUDA out of memory", file=sys.stderr)
            sys.exit(3)
        if mode == "skip" and k == 1:
            continue
        out = os.path.join(args.output_dir, image_id)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "explanation.json"), "w") as f:
            json.dump({path: f"{MARKER} {image_id} {img.shape[1]}x{img.shape[0]}"}, f, indent=4)
        mask = ((img[..., 0] > 127).astype(np.uint8) * 255)
        Image.fromarray(mask, mode="L").save(os.path.join(out, "mask.png"))
''')


def _images(sizes=((40, 64), (57, 31), (24, 24)), seed=0) -> list[ModelInput]:
    rng = np.random.default_rng(seed)
    return [
        ModelInput(sample_id=f"s{i}", image=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                   file_name=f"orig_{i}.jpg")
        for i, (h, w) in enumerate(sizes)
    ]


@pytest.fixture
def fake_legion(tmp_path: Path) -> tuple[Path, Path]:
    repo = tmp_path / "LEGION"
    (repo / "scripts" / "loc_exp").mkdir(parents=True)
    (repo / "scripts" / "loc_exp" / "infer.py").write_text(FAKE_INFER)
    (repo / "eval").mkdir()
    (repo / "eval" / "__init__.py").write_text("")
    (repo / "eval" / "ddp.py").write_text("MARKER = 'legion-fake'\n")
    weights = tmp_path / "legion_LE"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    return repo, weights


def _legion(repo: Path, weights: Path, **kw) -> LegionAdapter:
    a = LegionAdapter(repo=str(repo), weights=str(weights), python=sys.executable, timeout_s=60, **kw)
    a.load("cpu")
    return a


def test_legion_launch_and_output_layout(fake_legion):
    repo, weights = fake_legion
    a = _legion(repo, weights)
    items = _images()
    preds = a.predict(items)
    assert len(preds) == len(items)
    for item, pred in zip(items, preds):
        assert not pred.extras.get("error"), pred.extras.get("error")
        h, w = item.image.shape[:2]
        # independent: the fake model marks red > 127; the PNG round trip must be lossless and
        # outputs must come back to the right sample (sizes differ)
        np.testing.assert_array_equal(pred.mask, item.image[..., 0] > 127)
        assert pred.mask.dtype == bool
        assert pred.explanation.startswith("legion-fake ") and pred.explanation.endswith(f"{w}x{h}")
        pred.validate(h, w, a.tasks, item.sample_id)


def test_legion_records_prompt_generation_and_refuses_changes(fake_legion):
    repo, weights = fake_legion
    a = LegionAdapter(repo=str(repo), weights=str(weights))
    ident = a.identity()
    assert ident["config"]["prompt"] == LEGION_PROMPT
    assert ident["config"]["generation"] == {"max_new_tokens": 512, "num_beams": 1, "do_sample": False,
                                             "dtype": "bfloat16"}
    assert ident["config"]["image_size"] == 1024 and ident["config"]["conv_type"] == "llava_v1"
    assert len(ident["weights_sha256"]) == 64
    with pytest.raises(BenchError, match="fixed inside the official infer.py"):
        LegionAdapter(repo=str(repo), weights=str(weights), prompt="something else")


def test_legion_multi_gpu_uses_the_distributed_launcher(fake_legion, tmp_path):
    repo, weights = fake_legion
    a = LegionAdapter(repo=str(repo), weights=str(weights), python="py", gpus="2,3")
    values = a.placeholder_values(tmp_path, tmp_path / "in", tmp_path / "out")
    argv = a.build_argv(values)
    assert argv[:4] == ["py", "-m", "torch.distributed.launch", "--nproc_per_node=2"]
    assert "--local_rank" not in argv  # the launcher passes it
    env = a.build_env(values)
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and env["PYTHONPATH"] == str(repo)
    assert "RANK" not in a.extra_env(values)
    single = LegionAdapter(repo=str(repo), weights=str(weights), python="py", gpus="1")
    v1 = single.placeholder_values(tmp_path, tmp_path / "in", tmp_path / "out")
    argv1 = single.build_argv(v1)
    assert argv1[0] == "py" and argv1[1] == "scripts/loc_exp/infer.py" and argv1[-2:] == ["--local_rank", "0"]
    assert "--max_iter" not in argv1  # infer.sh passes it, infer.py rejects it
    env1 = single.extra_env(v1)
    assert env1["RANK"] == "0" and env1["WORLD_SIZE"] == "1" and env1["LOCAL_RANK"] == "0"
    assert env1["MASTER_PORT"] == str(v1["port"])


def test_crash_keeps_finished_outputs_and_fails_the_rest_with_stderr(fake_legion):
    repo, weights = fake_legion
    a = _legion(repo, weights, env={"FAKE_MODE": "crash"})
    preds = a.predict(_images())
    assert not preds[0].extras.get("error")
    for p in preds[1:]:
        msg = p.extras["error"]
        assert "exited with status 3" in msg and "CUDA out of memory" in msg


def test_missing_output_fails_only_that_sample(fake_legion):
    repo, weights = fake_legion
    a = _legion(repo, weights, env={"FAKE_MODE": "skip"})
    preds = a.predict(_images())
    assert not preds[0].extras.get("error") and not preds[2].extras.get("error")
    assert "s1" in preds[1].extras["error"] and "000001.png" in preds[1].extras["error"]


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = tmp_path / "hang.py"
    script.write_text(textwrap.dedent(f'''
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pidfile)!r}, "w").write(str(child.pid))
        print("started, now hanging", flush=True)
        time.sleep(120)
    '''))
    a = GenericExternalAdapter(command=["{python}", str(script)], timeout_s=1.5)
    a.load()
    t0 = time.monotonic()
    preds = a.predict(_images(sizes=((8, 8), (9, 9))))
    assert time.monotonic() - t0 < 30
    for p in preds:
        assert "timed out after" in p.extras["error"] and "now hanging" in p.extras["error"]
    child = int(pidfile.read_text())
    for _ in range(50):  # the child was in the group: it must be gone (or a zombie being reaped)
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{child}/stat").exists() and Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"child process {child} survived the timeout")


def test_generic_external_native_layout_and_python_list(tmp_path):
    script = tmp_path / "model.py"
    script.write_text(textwrap.dedent('''
        import json, os, sys
        import numpy as np
        from PIL import Image
        inp, out = sys.argv[1], sys.argv[2]
        os.makedirs(f"{out}/heatmaps"); os.makedirs(f"{out}/masks")
        lines = []
        for name in sorted(os.listdir(inp)):
            img = np.asarray(Image.open(f"{inp}/{name}"))
            stem = name.rsplit(".", 1)[0]
            Image.fromarray(img[..., 1], mode="L").save(f"{out}/heatmaps/{stem}.png")
            lines.append(json.dumps({"file_name": name, "score": float(img.mean() / 255), "explanation": stem}))
        open(f"{out}/predictions.jsonl", "w").write("\\n".join(lines))
    '''))
    a = GenericExternalAdapter(command=["{python}", str(script), "{input_dir}", "{output_dir}"],
                               python=[sys.executable, "-I"], tasks=["localize", "detect", "explain"])
    a.load()
    items = _images()
    preds = a.predict(items)
    for i, (item, p) in enumerate(zip(items, preds)):
        assert not p.extras.get("error"), p.extras.get("error")
        np.testing.assert_allclose(p.heatmap, item.image[..., 1].astype(np.float32) / 255.0, rtol=0, atol=1e-7)
        assert p.score == pytest.approx(item.image.mean() / 255)
        assert p.explanation == f"{i:06d}"
    assert a.last_result.argv[:2] == [sys.executable, "-I"]


def test_unknown_placeholder_is_a_load_error():
    a = GenericExternalAdapter(command=["{python}", "x.py", "{nonsense}"])
    with pytest.raises(AdapterLoadError, match="nonsense"):
        a.load()


def test_legion_load_checks_the_checkout_and_interpreter(tmp_path, fake_legion):
    a = LegionAdapter(repo=str(tmp_path), weights=str(tmp_path), python=sys.executable)
    with pytest.raises(AdapterLoadError, match="infer.py not found"):
        a.load()
    repo, weights = fake_legion
    with pytest.raises(AdapterLoadError, match="interpreter of LEGION's own environment"):
        LegionAdapter(repo=str(repo), weights=str(weights)).load()


# -- prediction folder readers ---------------------------------------------------------------
def _write_legion(folder: Path, name: str, mask: np.ndarray, text: str | None, key: str | None = None):
    d = folder / name
    d.mkdir(parents=True)
    Image.fromarray(mask).save(d / "mask.png")
    if text is not None:
        (d / "explanation.json").write_text(json.dumps({key or f"/some/dir/{name}": text}))


def test_read_legion_prediction(tmp_path):
    m = np.zeros((5, 7), np.uint8)
    m[1:3, 2:6] = 255
    _write_legion(tmp_path, "a.jpg", m, "hands look wrong")
    p = read_legion_prediction(tmp_path, "a.jpg", (5, 7))
    np.testing.assert_array_equal(p.mask, m == 255)
    assert p.explanation == "hands look wrong"
    with pytest.raises(SampleError, match=r"mask is 7x5 .* image is 8x5") as e:
        read_legion_prediction(tmp_path, "a.jpg", (5, 8))
    assert "a.jpg/mask.png" in e.value.where
    bad = m.copy()
    bad[0, 0] = 128
    _write_legion(tmp_path, "b.png", bad, "x")
    with pytest.raises(SampleError, match="not binary") as e:
        read_legion_prediction(tmp_path, "b.png", (5, 7))
    assert e.value.where.endswith("b.png/mask.png")
    with pytest.raises(SampleError, match="no LEGION output folder") as e:
        read_legion_prediction(tmp_path, "missing.png", (5, 7))
    _write_legion(tmp_path, "c.png", m, None)
    with pytest.raises(SampleError, match="explanation file not found"):
        read_legion_prediction(tmp_path, "c.png", (5, 7))
    assert read_legion_prediction(tmp_path, "c.png", (5, 7), require_explanation=False).explanation is None


def test_read_native_prediction(tmp_path):
    (tmp_path / "masks").mkdir()
    (tmp_path / "heatmaps").mkdir()
    m = np.zeros((4, 6), np.uint8)
    m[0, :3] = 255
    Image.fromarray(m).save(tmp_path / "masks" / "id-1.png")
    heat = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    Image.fromarray(heat).save(tmp_path / "heatmaps" / "img2.png")
    (tmp_path / "predictions.jsonl").write_text(
        json.dumps({"id": "id-1", "score": 0.25, "explanation": "one"}) + "\n"
        + json.dumps({"file_name": "img2.jpg", "score": 1, "explanation": "two"}) + "\n\n"
        + json.dumps({"id": "id-3", "score": 1.5}) + "\n"
    )
    p1 = read_native_prediction(tmp_path, "id-1", "whatever.png", (4, 6))
    np.testing.assert_array_equal(p1.mask, m > 0)
    assert p1.heatmap is None and p1.score == 0.25 and p1.explanation == "one"
    p2 = read_native_prediction(tmp_path, "other-id", "img2.jpg", (4, 6))
    assert p2.mask is None and p2.heatmap.dtype == np.float32
    np.testing.assert_array_equal(p2.heatmap, heat.astype(np.float32) / 255.0)
    assert p2.score == 1.0 and p2.explanation == "two"
    with pytest.raises(SampleError, match=r"score 1.5 is not a number in \[0, 1\]") as e:
        read_native_prediction(tmp_path, "id-3", None, (4, 6))
    assert e.value.where.endswith("predictions.jsonl:4")
    with pytest.raises(SampleError, match="no prediction for sample 'nope'"):
        read_native_prediction(tmp_path, "nope", "nope.png", (4, 6))
    with pytest.raises(SampleError, match="heatmap is 6x4"):
        read_native_prediction(tmp_path, "x", "img2.png", (6, 4))


def test_predictions_adapter_legion_and_conditions(tmp_path):
    m = np.zeros((6, 4), np.uint8)
    m[2:, 1] = 255
    _write_legion(tmp_path, "p.png", m, "clean text")
    _write_legion(tmp_path / "jpeg(quality=50)", "p.png", 255 - m, "jpeg text")
    a = PredictionsAdapter(dir=str(tmp_path), format="legion")
    a.load()
    assert a.tasks == {"localize", "explain"}
    img = np.zeros((6, 4, 3), np.uint8)
    clean, jpeg, blur, other = a.predict([
        ModelInput("p", img, "p.png"), ModelInput("p", img, "p.png", condition="jpeg(quality=50)"),
        ModelInput("p", img, "p.png", condition="blur(kernel=5)"), ModelInput("q", img, "q.png"),
    ])
    np.testing.assert_array_equal(clean.mask, m > 0)
    assert clean.explanation == "clean text"
    np.testing.assert_array_equal(jpeg.mask, m == 0)
    assert jpeg.explanation == "jpeg text"
    assert "no prediction folder for condition 'blur(kernel=5)'" in blur.extras["error"]
    assert "no LEGION output folder" in other.extras["error"]
    with pytest.raises(BenchError, match="format"):
        PredictionsAdapter(dir=str(tmp_path), format="csv")


@pytest.mark.weights
def test_real_legion_when_configured():
    repo, weights = os.environ.get("BENCH_LEGION_REPO"), os.environ.get("BENCH_LEGION_WEIGHTS")
    if not (repo and weights):
        pytest.skip("set BENCH_LEGION_REPO (checkout), BENCH_LEGION_WEIGHTS (hf_model_path folder) and "
                    "BENCH_LEGION_PYTHON (LEGION env's python) to run the real LEGION")
    a = LegionAdapter(repo=repo, weights=weights, python=os.environ.get("BENCH_LEGION_PYTHON", "python"),
                      gpus=os.environ.get("BENCH_LEGION_GPUS", "0"), timeout_s=3600)
    a.load("cuda")
    items = _images(sizes=((256, 320),))
    pred = a.predict(items)[0]
    assert not pred.extras.get("error"), pred.extras.get("error")
    assert pred.mask.shape == (256, 320) and isinstance(pred.explanation, str) and pred.explanation
