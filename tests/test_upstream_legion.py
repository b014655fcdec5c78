"""The LEGION adapter against a real checkout of github opendatalab/LEGION ($BENCH_LEGION_REPO).

LEGION's own environment (torch 1.13, transformers 4.28, mmcv, a GPU, 17 GB of weights) is not
here, so ``legion.python`` is a stand-in interpreter written below. It runs the REAL pieces of
the checkout that decide how a run behaves, read from the files with ``ast`` (nothing copied):

- ``parse_args`` and ``custom_collate_fn`` of ``scripts/loc_exp/infer.py`` (so a flag the real
  script does not accept fails the run exactly as it would: argparse, exit status 2);
- ``init_distributed_mode``, ``setup_for_distributed`` and ``GCGEvalDDP`` of ``eval/ddp.py``,
  with ``torch.cuda`` reduced to the GPUs in CUDA_VISIBLE_DEVICES and the NCCL process group
  replaced by a real gloo one on MASTER_ADDR:MASTER_PORT (so a missing variable, a wrong
  LOCAL_RANK or two concurrent runs on one port fail as they would);
- torch's real ``DistributedSampler(dataset, rank=args.local_rank, shuffle=False)`` and
  ``DataLoader`` over that dataset, as the script's main block builds them.

Only the model is replaced: per image, mask = red channel > 127 (from ``cv2.imread``, BGR) and a
text computed from the pixels; outputs in the official layout. It logs each processed image
with its CUDA_VISIBLE_DEVICES to $STANDIN_LOG and raises on an image whose top-left pixel is
(98, 97, 100) ("bad").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bench.adapters._util import AdapterLoadError
from bench.adapters.legion import FIXED_COMMIT, INFER_SCRIPT, LegionAdapter
from bench.core.types import ModelInput

REPO_ENV = "BENCH_LEGION_REPO"


@pytest.fixture(scope="module")
def legion_repo() -> Path:
    value = os.environ.get(REPO_ENV)
    if not value:
        pytest.skip(f"set {REPO_ENV} to a checkout of github opendatalab/LEGION to run these tests")
    repo = Path(value).expanduser()
    if not (repo / INFER_SCRIPT).is_file() or not (repo / "eval" / "ddp.py").is_file():
        pytest.fail(f"{REPO_ENV}={value}: not a LEGION checkout ({INFER_SCRIPT} or eval/ddp.py missing)")
    return repo


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.mktemp("bench-cache")))


STANDIN = textwrap.dedent('''
    """Stand-in for LEGION's interpreter: argv = [infer.py, flags...], cwd = the checkout."""
    import ast, datetime, json, os, sys, types

    def defs(path, names):
        tree = ast.parse(open(path, encoding="utf-8").read(), filename=path)
        body = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in names]
        missing = set(names) - {n.name for n in body}
        if missing:
            sys.exit(f"stand-in: {path} has no {sorted(missing)}")
        return compile(ast.Module(body=body, type_ignores=[]), path, "exec")

    script, flags = sys.argv[1], sys.argv[2:]
    if os.path.abspath(os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or "/nonexistent") != os.getcwd():
        sys.exit("ModuleNotFoundError: No module named 'eval' (the checkout is not on PYTHONPATH)")
    import argparse
    ns = {"argparse": argparse}
    exec(defs(script, ["parse_args", "custom_collate_fn"]), ns)
    sys.argv = [script] + flags
    args = ns["parse_args"]()                      # the real parser: unknown flags exit 2

    import torch, torch.distributed as dist
    from torch.utils.data import DataLoader, Dataset, DistributedSampler
    visible = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g]

    def set_device(index):
        if not 0 <= index < len(visible):
            raise RuntimeError(f"CUDA error: invalid device ordinal {index} (visible: {visible})")

    def init_process_group(backend, init_method, world_size, rank):
        assert backend == "nccl", backend
        dist.init_process_group("gloo", init_method=init_method, world_size=world_size, rank=rank,
                                timeout=datetime.timedelta(seconds=30))

    torch_shim = types.SimpleNamespace(
        cuda=types.SimpleNamespace(device_count=lambda: len(visible), set_device=set_device),
        distributed=types.SimpleNamespace(init_process_group=init_process_group, barrier=dist.barrier))
    dns = {"os": os, "torch": torch_shim, "Dataset": Dataset}
    exec(defs("eval/ddp.py", ["init_distributed_mode", "setup_for_distributed", "GCGEvalDDP"]), dns)
    dns["init_distributed_mode"](args)
    if not getattr(args, "distributed", False):
        sys.exit("stand-in: infer.py builds a DistributedSampler, which needs the process group")

    dataset = dns["GCGEvalDDP"](args.image_dir)
    sampler = DistributedSampler(dataset, rank=args.local_rank, shuffle=False)
    loader = DataLoader(dataset, batch_size=int(args.batch_size_per_gpu), num_workers=0, sampler=sampler,
                        collate_fn=ns["custom_collate_fn"])
    import cv2, numpy as np
    from PIL import Image
    for image_id, image_path in loader:
        image_id, image_path = image_id[0], image_path[0]
        raw = cv2.imread(image_path)
        with open(os.environ["STANDIN_LOG"], "a") as log:
            log.write(json.dumps({"image": image_id, "path": image_path, "pid": os.getpid(),
                                  "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                  "port": os.environ.get("MASTER_PORT")}) + "\\n")
        if tuple(int(v) for v in raw[0, 0][::-1]) == (98, 97, 100):
            raise RuntimeError(f"stand-in model broke on {image_id}")
        save_dir = os.path.join(args.output_dir, image_id)
        os.makedirs(save_dir, exist_ok=True)
        text = f"stand-in {raw.shape[1]}x{raw.shape[0]} {raw.mean():.4f}"
        with open(os.path.join(save_dir, "explanation.json"), "w") as f:
            json.dump({image_path: text}, f, indent=4)
        mask = ((raw[..., 2] > 127).astype(np.uint8) * 255)
        Image.fromarray(mask, mode="L").save(os.path.join(save_dir, "mask.png"))
''')

BAD = (98, 97, 100)


@pytest.fixture
def standin(tmp_path: Path) -> Path:
    path = tmp_path / "standin_python.py"
    path.write_text(STANDIN)
    return path


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    w = tmp_path / "legion_LE"
    w.mkdir()
    (w / "config.json").write_text(json.dumps({"architectures": ["LegionForCausalLM"]}))
    return w


def _images(n: int, seed: int, bad: tuple[int, ...] = ()) -> list[ModelInput]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        h, w = int(rng.integers(12, 40)), int(rng.integers(12, 40))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if tuple(img[0, 0]) == BAD:
            img[0, 0, 1] += 1
        if i in bad:
            img[0, 0] = BAD
        items.append(ModelInput(sample_id=f"s{i}", image=img, file_name=f"img_{i}.jpg"))
    return items


def _adapter(repo: Path, weights: Path, standin: Path, log: Path, **kw) -> LegionAdapter:
    a = LegionAdapter(repo=str(repo), weights=str(weights), python=[sys.executable, str(standin)],
                      timeout_s=120, env={"STANDIN_LOG": str(log)}, **kw)
    a.load("cuda")
    return a


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _assert_exact(item: ModelInput, pred) -> None:
    assert not pred.extras.get("error"), pred.extras.get("error")
    h, w = item.image.shape[:2]
    np.testing.assert_array_equal(pred.mask, item.image[..., 0] > 127)
    assert pred.explanation == f"stand-in {w}x{h} {item.image.mean():.4f}"


def test_standin_runs_the_real_parser(legion_repo, standin, weights, tmp_path):
    """The stand-in refuses what the real infer.py refuses (a negative control for the rest)."""
    images = tmp_path / "images"
    images.mkdir()
    env = {**os.environ, "PYTHONPATH": str(legion_repo), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1", "STANDIN_LOG": str(tmp_path / "log")}
    base = [sys.executable, str(standin), INFER_SCRIPT, "--hf_model_path", str(weights),
            "--image_dir", str(images), "--output_dir", str(tmp_path / "out")]
    # what the repository's infer.sh passed before 55fe9b0; and torch 2's launcher spelling
    for extra, expect in ((["--max_iter", "3"], "unrecognized arguments: --max_iter 3"),
                          (["--local-rank=0"], "unrecognized arguments: --local-rank=0")):
        r = subprocess.run(base + extra, cwd=legion_repo, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and expect in r.stderr, r.stderr
    # the sampler's rank comes from --local_rank, default -1: refused by torch as in the real run
    from bench.adapters.external import free_port

    env["MASTER_PORT"] = str(free_port())
    r = subprocess.run(base, cwd=legion_repo, env={**env, "CUDA_VISIBLE_DEVICES": "0"}, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and "Invalid rank -1" in r.stderr, r.stderr[-2000:]


def test_two_gpus_each_image_exactly_once(legion_repo, standin, weights, tmp_path):
    log = tmp_path / "two.log"
    rng = np.random.default_rng()
    gen = {"do_sample": True, "temperature": round(float(rng.uniform(0.1, 1.0)), 3),
           "top_p": round(float(rng.uniform(0.5, 1.0)), 3), "top_k": int(rng.integers(1, 100))}
    (weights / "generation_config.json").write_text(json.dumps(gen))
    a = _adapter(legion_repo, weights, standin, log, gpus="0,1")
    n = 2 * int(rng.integers(2, 5)) + 1  # odd: a padding DistributedSampler over two ranks repeats one
    items = _images(n, seed=int(rng.integers(1 << 30)))
    preds = a.predict(items)
    for item, pred in zip(items, preds):
        _assert_exact(item, pred)
        assert pred.extras["external_runs"] == 1
    seen = _log(log)
    names = [r["image"] for r in seen]
    assert sorted(names) == sorted(f"{i:06d}.png" for i in range(n)), names  # complete, no duplicate
    per_gpu = {g: [r["image"] for r in seen if r["cuda"] == g] for g in ("0", "1")}
    assert per_gpu["0"] and per_gpu["1"] and not set(per_gpu["0"]) & set(per_gpu["1"])
    assert {r["cuda"] for r in seen} == {"0", "1"}  # each process saw exactly one GPU
    assert len({r["port"] for r in seen}) == 2 and len({r["pid"] for r in seen}) == 2
    assert len({os.path.dirname(r["path"]) for r in seen}) == 2  # disjoint image folders
    assert len(a.runs) == 2 and all(r["returncode"] == 0 for r in a.runs)
    recorded = a.identity()["config"]["generation"]
    assert recorded["from"] == str(weights / "generation_config.json")
    assert {k: recorded[k] for k in gen} == gen and a.deterministic is False
    assert (recorded["num_beams"], recorded["max_new_tokens"]) == (1, 512)
    print(f"\nimages per GPU: {len(per_gpu['0'])} + {len(per_gpu['1'])} = {n}; duplicates: {len(names) - len(set(names))}")


def test_a_bad_image_fails_only_itself(legion_repo, standin, weights, tmp_path):
    log = tmp_path / "bad.log"
    a = _adapter(legion_repo, weights, standin, log, gpus="0,1")
    rng = np.random.default_rng()
    n = int(rng.integers(6, 10))
    bad = int(rng.integers(n))
    items = _images(n, seed=int(rng.integers(1 << 30)), bad=(bad,))
    preds = a.predict(items)
    for i, (item, pred) in enumerate(zip(items, preds)):
        if i == bad:
            msg = pred.extras["error"]
            assert "exited with status 1" in msg and f"stand-in model broke on {i:06d}.png" in msg, msg
            assert "Traceback" in msg and f"s{i}" in msg
        else:
            _assert_exact(item, pred)
    counts: dict[str, int] = {}
    for r in _log(log):
        counts[r["image"]] = counts.get(r["image"], 0) + 1
    good = [f"{i:06d}.png" for i in range(n) if i != bad]
    assert all(counts.get(g) == 1 for g in good), counts  # no good image processed twice, none lost
    assert counts[f"{bad:06d}.png"] >= 2  # with its group, then alone
    assert any(r["images"] == [f"{bad:06d}.png"] and r["returncode"] == 1 for r in a.runs)
    print(f"\n{n} images, bad #{bad}: {len(a.runs)} runs, {[len(r['images']) for r in a.runs]} images per run")


def _old_checkout(repo: Path, dest: Path) -> Path:
    """The checkout with scripts/loc_exp/infer.py as it was at 55fe9b0's parent (from git)."""
    sources = [["git", "-C", str(repo)]]
    if os.environ.get("BENCH_LEGION_GIT_DIR"):
        sources.append(["git", f"--git-dir={os.environ['BENCH_LEGION_GIT_DIR']}"])
    for git in sources:
        r = subprocess.run(git + ["show", f"{FIXED_COMMIT}^:{INFER_SCRIPT}"], capture_output=True, text=True)
        if r.returncode == 0:
            break
    else:
        pytest.skip(f"the history of {REPO_ENV} has no {FIXED_COMMIT}^ (shallow?); set BENCH_LEGION_GIT_DIR "
                    "to a full clone's git directory")
    for sub in ("scripts", "eval", "model", "tools"):
        shutil.copytree(repo / sub, dest / sub, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / INFER_SCRIPT).write_text(r.stdout)
    return dest


def test_a_checkout_before_the_fix_is_refused_at_load(legion_repo, standin, weights, tmp_path):
    _adapter(legion_repo, weights, standin, tmp_path / "log")  # the checkout as it is loads
    old = _old_checkout(legion_repo, tmp_path / "LEGION-old")
    a = LegionAdapter(repo=str(old), weights=str(weights), python=[sys.executable, str(standin)])
    with pytest.raises(AdapterLoadError) as e:
        a.load("cuda")
    msg = str(e.value)
    assert "\n" not in msg and FIXED_COMMIT in msg and f"git -C {old} pull" in msg
    assert INFER_SCRIPT in msg
    print(f"\n{msg}")
