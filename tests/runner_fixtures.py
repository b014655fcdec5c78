"""A tiny dataset and test adapters for runner tests (importable by spawned worker processes)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from bench.core.registry import ADAPTERS, DATASETS
from bench.core.types import FAKE, REAL, Adapter, Dataset, Prediction, Region, Sample

#: polygon of every fake image (x1, y1, ...): a 30 x 20 rectangle at (10, 8)
POLY = (10.0, 8.0, 40.0, 8.0, 40.0, 28.0, 10.0, 28.0)


class TinyDataset(Dataset):
    """``n`` PNG images (64 x 80, random pixels) in ``data_root``; every 4th is real.
    Option ``broken``: add a missing image, a truncated image and a polygon outside the image."""

    name = "tiny-test"

    def _load(self) -> list[Sample]:
        root = self.data_root
        root.mkdir(parents=True, exist_ok=True)
        n = int(self.options.get("n", 24))
        out = []
        for i in range(n):
            p = root / f"img{i}.png"
            if not p.exists():
                arr = (np.random.default_rng(i).random((64, 80, 3)) * 255).astype(np.uint8)
                Image.fromarray(arr).save(p)
            label = REAL if i % 4 == 0 else FAKE
            regions = (Region("the box", "it is odd", (POLY,)),) if label == FAKE else ()
            out.append(Sample(id=p.name, image_path=p, label=label, regions=regions,
                              reference="the box is odd" if label == FAKE else None,
                              mask_rule="polygon" if label == FAKE else "none"))
        if self.options.get("broken"):
            out.append(Sample(id="missing.png", image_path=root / "missing.png", regions=(Region(polygons=(POLY,)),)))
            trunc = root / "truncated.png"
            good = (root / "img1.png").read_bytes()
            trunc.write_bytes(good[: len(good) // 2])
            out.append(Sample(id="truncated.png", image_path=trunc, regions=(Region(polygons=(POLY,)),)))
            out.append(Sample(id="outside.png", image_path=root / "img2.png",
                              regions=(Region(polygons=((500.0, 500.0, 600.0, 500.0, 600.0, 600.0),)),)))
        return out

    def annotation_files(self) -> list[Path]:
        return []


def counter_path() -> Path | None:
    p = os.environ.get("BENCH_TEST_CALL_LOG")
    return Path(p) if p else None


def log_call(n: int) -> None:
    """Append one line per predict call (works across worker processes)."""
    p = counter_path()
    if p:
        with open(p, "a") as f:
            f.write(f"{os.getpid()} {n}\n")


class BoxAdapter(Adapter):
    """Predicts the rectangle x 20..50, y 8..28 (a shifted copy of POLY) as a mask."""

    name = "box-test"
    tasks = frozenset({"detect", "localize"})
    requirements = {"batch_size": 4, "num_gpus": 0}

    def predict(self, batch):
        if type(self) is BoxAdapter:
            log_call(len(batch))
        out = []
        for mi in batch:
            h, w = mi.image.shape[:2]
            m = np.zeros((h, w), bool)
            m[8:29, 20:51] = True
            out.append(Prediction(mask=m, score=float(mi.image[..., 0].mean() / 255)))
        return out


class BadAdapter(Adapter):
    """Misbehaves by file name: wrong size, NaN heatmap, score out of range, raises."""

    name = "bad-test"
    tasks = frozenset({"detect", "localize"})
    requirements = {"batch_size": 1, "num_gpus": 0}

    def predict(self, batch):
        mi = batch[0]
        h, w = mi.image.shape[:2]
        i = int(mi.sample_id[3:-4]) if mi.sample_id.startswith("img") else 0
        kind = i % 5
        if kind == 0:
            return [Prediction(heatmap=np.zeros((h + 1, w), np.float32), score=0.5)]
        if kind == 1:
            hm = np.zeros((h, w), np.float32)
            hm[0, 0] = np.nan
            return [Prediction(heatmap=hm, score=0.5)]
        if kind == 2:
            return [Prediction(heatmap=np.zeros((h, w), np.float32), score=1.5)]
        if kind == 3:
            raise RuntimeError("model exploded")
        return [Prediction(heatmap=np.full((h, w), 0.75, np.float32), score=0.25)]


class AlwaysFails(Adapter):
    name = "fails-test"
    tasks = frozenset({"localize"})
    requirements = {"batch_size": 2, "num_gpus": 0}

    def predict(self, batch):
        log_call(len(batch))
        raise RuntimeError("CUDA out of memory (pretend)")


class SlowAdapter(BoxAdapter):
    """BoxAdapter that sleeps per batch and logs the sample ids it predicts."""

    name = "slow-test"
    requirements = {"batch_size": 2, "num_gpus": 0}

    def predict(self, batch):
        import time

        time.sleep(float(os.environ.get("BENCH_TEST_SLEEP", "0.15")))
        p = counter_path()
        if p:
            with open(p, "a") as f:
                for mi in batch:
                    f.write(f"{mi.sample_id} {mi.condition}\n")
        return super().predict(batch)


class FlakyAdapter(BoxAdapter):
    """BoxAdapter that fails on the sample ids listed in $BENCH_TEST_FAIL_IDS (comma-separated)
    and logs every sample id it is asked to predict."""

    name = "flaky-test"
    requirements = {"batch_size": 3, "num_gpus": 0}

    def predict(self, batch):
        p = counter_path()
        if p:
            with open(p, "a") as f:
                f.writelines(f"{mi.sample_id}\n" for mi in batch)
        bad = set(filter(None, os.environ.get("BENCH_TEST_FAIL_IDS", "").split(",")))
        out = super().predict(batch)
        return [Prediction(extras={"error": "flaky failure"}) if mi.sample_id in bad else pred
                for mi, pred in zip(batch, out)]


class HangsAdapter(BoxAdapter):
    """Hangs (sleeps 30 s) on img2.png; declares a 1 s batch timeout."""

    name = "hangs-test"
    requirements = {"batch_size": 1, "num_gpus": 0, "timeout_s": 1.0}

    def predict(self, batch):
        import time

        if batch[0].sample_id == "img2.png":
            time.sleep(30)
        return super().predict(batch)


class DeviceAdapter(BoxAdapter):
    """BoxAdapter that stays in the driver's process (like a GPU model), sleeps ~10 ms per image
    and logs ``<pid> <device> <sample id> <condition>`` per prediction to $BENCH_TEST_CALL_LOG."""

    name = "device-test"
    requirements = {"batch_size": 2, "num_gpus": 0, "in_process": True}

    def load(self, device: str = "cpu") -> None:
        if device == os.environ.get("BENCH_TEST_BAD_DEVICE"):
            raise RuntimeError("CUDA error: invalid device ordinal")
        self.device = device

    def predict(self, batch):
        import time

        time.sleep(0.01 * len(batch))
        p = counter_path()
        if p:
            with open(p, "a") as f:
                f.writelines(f"{os.getpid()} {self.device} {mi.sample_id} {mi.condition}\n" for mi in batch)
        return super().predict(batch)


def register() -> None:
    for name, obj in (("tiny-test", TinyDataset),):
        if name not in DATASETS:
            DATASETS.add(name, obj)
    for cls in (BoxAdapter, BadAdapter, AlwaysFails, SlowAdapter, FlakyAdapter, HangsAdapter, DeviceAdapter):
        if cls.name not in ADAPTERS:
            ADAPTERS.add(cls.name, cls)


register()
