"""The Ray executor (a local Ray instance) gives the local executor's results, number for number."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import runner_fixtures  # noqa: F401
from bench.engine.runner import RunOptions, run_suite
from bench.suites import Suite

ray = pytest.importorskip("ray")


def _local_run(tmp_path, monkeypatch, n: int):
    """The tiny suite (3 conditions) and its run with the local executor, its own cache."""
    suite = Suite.from_mapping({
        "name": "tiny", "version": 1, "dataset": "tiny-test", "dataset_options": {"n": n},
        "conditions": ["clean", "gaussian_noise(sigma=0.2)", "jpeg(quality=50)"],
        "metrics": ["miou", "f1", "iou_fg", "fp_area", "det_auc"],
        "protocol": {"bootstrap": {"n": 100, "seed": 0}}})
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache-local"))
    local = run_suite(suite, ["box-test"], RunOptions(out_dir=tmp_path / "local", data_root=tmp_path / "data",
                                                     workers=1, progress=False, gallery_size=0))[0]
    return suite, local


@pytest.mark.slow
def test_ray_matches_local(tmp_path, monkeypatch):
    suite, local = _local_run(tmp_path, monkeypatch, 16)
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache-ray"))
    try:
        remote = run_suite(suite, ["box-test"], RunOptions(out_dir=tmp_path / "ray", data_root=tmp_path / "data",
                                                          workers=2, executor="ray", progress=False,
                                                          gallery_size=0))[0]
    finally:
        ray.shutdown()
    assert remote.infer.n_inferred == 16 * 3 and remote.infer.n_cached == 0
    a = json.loads((local.out_dir / "results.json").read_text())["conditions"]
    b = json.loads((remote.out_dir / "results.json").read_text())["conditions"]
    assert a == b
    pd.testing.assert_frame_equal(pd.read_parquet(local.out_dir / "samples.parquet"),
                                  pd.read_parquet(remote.out_dir / "samples.parquet"))


def _ray_cli() -> str:
    import shutil
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "")


@pytest.mark.slow
def test_two_node_cluster_whose_workers_cannot_see_the_cache(tmp_path, monkeypatch):
    """A head node with no CPUs (so no task runs there) plus a second node started in its own
    mount namespace, where an empty tmpfs hides the driver's cache folder: every task runs
    where the cache cannot be seen, and the results equal the local executor's."""
    import os
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import time

    if os.geteuid() != 0 or not shutil.which("unshare") or not _ray_cli():
        pytest.skip("needs root, unshare (util-linux) and the ray command to hide a folder from a second node")
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m is not permitted here: {probe.stderr.decode().strip()}")
    suite, local = _local_run(tmp_path, monkeypatch, 12)
    driver_cache = tmp_path / "driver-cache"
    driver_cache.mkdir()
    (driver_cache / "only-the-driver-sees-this").write_text("x")
    ip = ray.util.get_node_ip_address()  # where `ray start` binds
    with socket.socket() as s:
        s.bind((ip, 0))
        port = s.getsockname()[1]
    # no token authentication (Ray >= 2.5x enables it for `ray start`): a test-local cluster
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    ray_cli = _ray_cli()
    head = subprocess.Popen([ray_cli, "start", "--head", "--num-cpus", "0", "--port", str(port),
                             "--include-dashboard", "false", "--disable-usage-stats", "--block"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    node = None
    try:
        script = (f"mount -t tmpfs tmpfs {driver_cache} && exec {ray_cli} start --address {ip}:{port} "
                  f"--num-cpus 2 --disable-usage-stats --block")
        deadline = time.time() + 120
        while True:  # the head is up when a client can connect
            assert head.poll() is None, head.stderr.read().decode()[-2000:]
            try:
                ray.init(address=f"{ip}:{port}", log_to_driver=False,
                         runtime_env={"env_vars": {"PYTHONPATH": env["PYTHONPATH"]}})
                break
            except Exception:
                assert time.time() < deadline, "the head node did not start"
                time.sleep(1)
        node = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        while ray.cluster_resources().get("CPU", 0) < 2:
            assert node.poll() is None, node.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the second node did not join"
            time.sleep(0.5)

        @ray.remote(num_cpus=1)
        def sees(path: str) -> bool:
            return os.path.exists(path)

        assert not ray.get(sees.remote(str(driver_cache / "only-the-driver-sees-this")))  # hidden there
        monkeypatch.setenv("BENCH_CACHE", str(driver_cache))
        remote = run_suite(suite, ["box-test"], RunOptions(out_dir=tmp_path / "ray", data_root=tmp_path / "data",
                                                          workers=2, executor="ray",
                                                          ray_address=f"{ip}:{port}", progress=False,
                                                          gallery_size=0))[0]
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in (node, head):  # each `ray start --block` with every process it started
            if proc is not None:
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(proc.pid, sig)
                        proc.wait(timeout=30)
                        break
                    except (ProcessLookupError, subprocess.TimeoutExpired):
                        continue
    assert remote.infer.n_inferred == 12 * 3 and remote.infer.n_failed == 0
    assert len(list((driver_cache / "predictions").rglob("*.npz"))) == 12 * 3  # written by the driver
    a = json.loads((local.out_dir / "results.json").read_text())["conditions"]
    b = json.loads((remote.out_dir / "results.json").read_text())["conditions"]
    assert a == b
    pd.testing.assert_frame_equal(pd.read_parquet(local.out_dir / "samples.parquet"),
                                  pd.read_parquet(remote.out_dir / "samples.parquet"))
