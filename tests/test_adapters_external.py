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

from bench.adapters._util import AdapterLoadError
from bench.adapters.external import GenericExternalAdapter
from bench.adapters.legion import LEGION_PROMPT, LegionAdapter
from bench.adapters.predictions import PredictionsAdapter
from bench.errors import BenchError, SampleError
from bench.core.prediction_folders import read_legion_prediction, read_native_prediction
from bench.core.types import ModelInput

@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Weight hashes are remembered under the cache root: keep the user's cache out of tests."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.mktemp("bench-cache")))


# A stand-in for LEGION's infer.py: same arguments (argparse rejects others), the same
# environment demands (init_distributed_mode + DistributedSampler need RANK/WORLD_SIZE/...,
# --local_rank 0; `eval` importable from the repo root), the same output layout. It logs every
# image it processes (with its CUDA_VISIBLE_DEVICES and MASTER_PORT) to $FAKE_LOG, and treats an
# image whose top-left pixel is (98, 97, 100) ("bad" in ASCII) as one that breaks the model.
FAKE_INFER = textwrap.dedent("""
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
    if mode == "broken-env":
        sys.exit("ImportError: libcudart.so.11.0: cannot open shared object file")
    for image_id in os.listdir(args.image_dir):
        path = f"{args.image_dir}/{image_id}"
        img = np.asarray(Image.open(path))          # cv2.imread would fail on a non-image too
        with open(os.environ["FAKE_LOG"], "a") as log:
            log.write(json.dumps({"image": image_id, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                  "port": os.environ["MASTER_PORT"], "pid": os.getpid()}) + "\\n")
        if tuple(img[0, 0]) == (98, 97, 100):
            if mode == "crash":
                print("Traceback (most recent call last):", file=sys.stderr)
                print("torch.cuda.OutOfMemoryError: CUDA out of memory", file=sys.stderr)
                sys.exit(3)
            if mode == "skip":
                continue
        out = os.path.join(args.output_dir, image_id)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "explanation.json"), "w") as f:
            json.dump({path: f"{MARKER} {img.shape[1]}x{img.shape[0]} {img.mean():.4f}"}, f, indent=4)
        mask = ((img[..., 0] > 127).astype(np.uint8) * 255)
        Image.fromarray(mask, mode="L").save(os.path.join(out, "mask.png"))
""")

BAD_PIXEL = (98, 97, 100)  # "bad"


def _images(sizes=((40, 64), (57, 31), (24, 24)), seed=0, bad=()) -> list[ModelInput]:
    rng = np.random.default_rng(seed)
    items = []
    for i, (h, w) in enumerate(sizes):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if tuple(img[0, 0]) == BAD_PIXEL:
            img[0, 0, 0] += 1
        if i in bad:
            img[0, 0] = BAD_PIXEL
        items.append(ModelInput(sample_id=f"s{i}", image=img, file_name=f"orig_{i}.jpg"))
    return items


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


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


def _legion(repo: Path, weights: Path, log: Path | None = None, env: dict | None = None, **kw) -> LegionAdapter:
    log = log or repo.parent / "fake.log"
    a = LegionAdapter(repo=str(repo), weights=str(weights), python=sys.executable, timeout_s=60,
                      env={"FAKE_LOG": str(log), **(env or {})}, **kw)
    a.load("cpu")
    return a


def _assert_exact(item: ModelInput, pred) -> None:
    """The fake model's output, computed independently from the image the harness sent."""
    assert not pred.extras.get("error"), pred.extras.get("error")
    h, w = item.image.shape[:2]
    np.testing.assert_array_equal(pred.mask, item.image[..., 0] > 127)
    assert pred.mask.dtype == bool
    assert pred.explanation == f"legion-fake {w}x{h} {item.image.mean():.4f}"


def test_legion_launch_and_output_layout(fake_legion):
    repo, weights = fake_legion
    a = _legion(repo, weights)
    items = _images()
    preds = a.predict(items)
    assert len(preds) == len(items)
    for item, pred in zip(items, preds):
        # the PNG round trip must be lossless and outputs must come back to the right sample
        _assert_exact(item, pred)
        pred.validate(*item.image.shape[:2], a.tasks, item.sample_id)
    assert len(a.runs) == 1 and a.runs[0]["gpus"] == "0"
    argv = a.last_result.argv
    assert argv[1] == "scripts/loc_exp/infer.py" and argv[-2:] == ["--local_rank", "0"]
    assert "torch.distributed.launch" not in argv and "--max_iter" not in argv


def test_legion_records_generation_from_the_checkpoint_and_refuses_changes(fake_legion):
    repo, weights = fake_legion
    rng = np.random.default_rng()
    cfg = {"temperature": round(float(rng.uniform(0.1, 0.9)), 3), "max_length": 77}
    (weights / "config.json").write_text(json.dumps(cfg))
    a = LegionAdapter(repo=str(repo), weights=str(weights))
    gen = a.identity()["config"]["generation"]
    assert a.identity()["config"]["prompt"] == LEGION_PROMPT
    assert gen["from"] == str(weights / "config.json") and gen["temperature"] == cfg["temperature"]
    assert gen["num_beams"] == 1 and gen["max_new_tokens"] == 512  # what infer.py passes wins
    # generation_config.json takes precedence over config.json (transformers' from_pretrained)
    gc = {"do_sample": True, "top_p": round(float(rng.uniform(0.5, 0.95)), 3),
          "temperature": round(float(rng.uniform(0.1, 0.9)), 3), "num_beams": 4, "max_new_tokens": 9}
    (weights / "generation_config.json").write_text(json.dumps(gc))
    b = LegionAdapter(repo=str(repo), weights=str(weights))
    gen = b.identity()["config"]["generation"]
    assert gen["from"] == str(weights / "generation_config.json")
    assert (gen["do_sample"], gen["top_p"], gen["temperature"]) == (True, gc["top_p"], gc["temperature"])
    assert (gen["num_beams"], gen["max_new_tokens"]) == (1, 512)
    assert b.deterministic is False and a.deterministic is True
    ident = b.identity()
    assert ident["config"]["image_size"] == 1024 and ident["config"]["conv_type"] == "llava_v1"
    assert len(ident["weights_sha256"]) == 64
    with pytest.raises(BenchError, match="prompt is fixed inside the official infer.py"):
        LegionAdapter(repo=str(repo), weights=str(weights), prompt="something else")
    with pytest.raises(BenchError, match="recorded, not configurable"):
        LegionAdapter(repo=str(repo), weights=str(weights), generation={"do_sample": False})
    (weights / "generation_config.json").write_text("{broken")
    with pytest.raises(AdapterLoadError, match="cannot read .*generation_config.json"):
        LegionAdapter(repo=str(repo), weights=str(weights))


def test_legion_two_gpus_run_disjoint_single_process_commands(fake_legion):
    repo, weights = fake_legion
    log = repo.parent / "two.log"
    a = _legion(repo, weights, log=log, gpus="0,1")
    items = _images(sizes=[(20 + i, 30 - i) for i in range(7)])  # odd: a padding sampler would repeat one
    preds = a.predict(items)
    for item, pred in zip(items, preds):
        _assert_exact(item, pred)
    seen = _log(log)
    names = [r["image"] for r in seen]
    assert sorted(names) == [f"{i:06d}.png" for i in range(len(items))]  # each image exactly once
    by_gpu = {g: {r["image"] for r in seen if r["cuda"] == g} for g in ("0", "1")}
    assert by_gpu["0"] and by_gpu["1"] and not by_gpu["0"] & by_gpu["1"]
    assert abs(len(by_gpu["0"]) - len(by_gpu["1"])) <= 1
    assert len({r["port"] for r in seen}) == 2 and len({r["pid"] for r in seen}) == 2
    assert sorted(r["gpus"] for r in a.runs) == ["0", "1"] and all(r["returncode"] == 0 for r in a.runs)
    assert a.requirements["batch_size"] == 128  # 64 per GPU unless batch_size is set
    v = a.placeholder_values(repo, repo / "in", repo / "out", ["1"])
    env = a.build_env(v)
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["PYTHONPATH"] == str(repo)
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == ("0", "1", "0")
    assert env["MASTER_PORT"] == str(v["port"]) and v["num_gpus"] == 1


def test_legion_takes_its_gpus_from_the_run_device(fake_legion):
    """`bench run --device cuda:0,cuda:1` with no gpus configured: one command per GPU."""
    repo, weights = fake_legion
    log = repo.parent / "dev.log"
    a = LegionAdapter(repo=str(repo), weights=str(weights), python=sys.executable, timeout_s=60,
                      env={"FAKE_LOG": str(log)})
    a.load("cuda:0,cuda:1")
    items = _images(sizes=[(20 + i, 24) for i in range(5)])
    for item, pred in zip(items, a.predict(items)):
        _assert_exact(item, pred)
    seen = _log(log)
    by_gpu = {g: {r["image"] for r in seen if r["cuda"] == g} for g in ("0", "1")}
    assert by_gpu["0"] and by_gpu["1"] and not by_gpu["0"] & by_gpu["1"]
    assert sorted(r["gpus"] for r in a.runs) == ["0", "1"]
    b = LegionAdapter(repo=str(repo), weights=str(weights), python=sys.executable, gpus="1")
    b.load("cuda:0,cuda:1")
    assert b.gpu_list() == ["1"]  # a configured list wins


def test_a_crashing_image_fails_only_itself(fake_legion):
    repo, weights = fake_legion
    log = repo.parent / "crash.log"
    a = _legion(repo, weights, log=log, env={"FAKE_MODE": "crash"})
    items = _images(sizes=[(16, 16 + i) for i in range(6)], bad=(3,))
    preds = a.predict(items)
    for i, (item, pred) in enumerate(zip(items, preds)):
        if i == 3:
            msg = pred.extras["error"]
            assert "exited with status 3" in msg and "CUDA out of memory" in msg and "s3" in msg
            assert pred.extras["external_runs"] == 2  # the batch's run, then alone
        else:
            _assert_exact(item, pred)
    counts = {}
    for r in _log(log):
        counts[r["image"]] = counts.get(r["image"], 0) + 1
    assert all(counts[f"{i:06d}.png"] == 1 for i in range(6) if i != 3)  # no good image run twice
    assert [len(r["images"]) for r in a.runs][1:2] == [1] and len(a.runs) <= 3


def test_missing_output_fails_only_that_sample(fake_legion):
    repo, weights = fake_legion
    a = _legion(repo, weights, env={"FAKE_MODE": "skip"})
    preds = a.predict(_images(bad=(1,)))
    assert not preds[0].extras.get("error") and not preds[2].extras.get("error")
    assert "s1" in preds[1].extras["error"] and "no LEGION output folder" in preds[1].extras["error"]
    assert len(a.runs) == 2 and a.runs[1]["images"] == ["000001.png"]  # retried alone once
    b = _legion(repo, weights, env={"FAKE_MODE": "skip"}, retry_alone=False)
    preds = b.predict(_images(bad=(1,)))
    assert "no LEGION output folder" in preds[1].extras["error"] and len(b.runs) == 1


def test_a_failure_of_every_run_is_not_retried_per_image(fake_legion):
    repo, weights = fake_legion
    a = _legion(repo, weights, env={"FAKE_MODE": "broken-env"})
    items = _images(sizes=[(8, 8)] * 12)
    preds = a.predict(items)
    assert all("libcudart" in p.extras["error"] for p in preds)
    assert len(a.runs) == 3  # the batch, its first image alone, the rest: then it gives up
    assert "not specific to one image" in preds[-1].extras["error"]


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
    with pytest.raises(AdapterLoadError, match="must be the checkpoint folder"):
        LegionAdapter(repo=str(repo), weights=str(weights / "config.json"), python=sys.executable).load()
    script = repo / "scripts" / "loc_exp" / "infer.py"
    good = script.read_text()
    # the import layout of checkouts before 55fe9b0, and an import the checkout lacks
    for line, expect in (("from models.LEGION.model.Legion import GLaMMForCausalLM", "models.LEGION.model.Legion"),
                         ("from eval.ddp import GLaMMForCausalLM", "eval/ddp.py does not define")):
        script.write_text(line + "\n" + good)
        with pytest.raises(AdapterLoadError, match="55fe9b0") as e:
            _legion(repo, weights)
        assert expect in str(e.value) and "git -C" in str(e.value) and "\n" not in str(e.value)
    script.write_text(good.replace('"--local_rank"', '"--local-rank"'))
    with pytest.raises(AdapterLoadError, match="does not accept --local_rank"):
        _legion(repo, weights)


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
