"""Core types: Region, Sample, ModelInput, Prediction, Adapter, Dataset.

Conventions used everywhere in the harness:
- images are RGB uint8 arrays of shape H x W x 3 (never BGR outside an adapter's own code);
- masks are bool H x W, True = artifact pixel; heatmaps are float32 H x W in [0, 1];
- ``label`` is 1 for a synthetic (fake) image and 0 for a real one;
- metric values are fractions in [0, 1]; only displays multiply by 100.
"""

from __future__ import annotations

import abc
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Literal, Mapping, Sequence

import numpy as np

from bench.errors import SampleError
from bench.io.imageio import decode_heatmap, decode_image

FAKE, REAL = 1, 0
MaskRule = Literal["polygon", "box_inclusive", "heatmap", "file", "none"]


@dataclass(frozen=True)
class Region:
    """One annotated artifact region.

    ``polygons``: flat ``[x1, y1, x2, y2, ...]`` float pixel lists (SynthScars);
    ``box``: ``[x, y, w, h]`` float pixels (LOKI). ``category`` is physics / distortion /
    structure where the dataset gives one.
    """

    phrase: str = ""
    explanation: str = ""
    polygons: tuple[tuple[float, ...], ...] = ()
    box: tuple[float, float, float, float] | None = None
    category: str | None = None


@dataclass(frozen=True)
class Sample:
    """One dataset item. Pixels are loaded lazily (``load_image`` / ``load_mask``).

    ``mask_rule`` says how the ground-truth mask is built at the image's size:
    ``polygon`` (regions' polygons, LEGION's SynthScars rule), ``box_inclusive`` (regions'
    boxes, LEGION's LOKI rule), ``heatmap`` (``gt_heatmap`` > 0, nearest resize; RichHF),
    ``file`` (a mask image at ``mask_path``), ``none`` (no artifact: all False).
    ``error`` set means the record itself is broken: the sample is counted as failed with
    that message, never dropped. ``clip_geometry``: polygons / boxes past the image border are
    filled clipped, as LEGION's code does (else refused; :mod:`bench.io.masks`). ``warnings``:
    ``"code: text"`` notes from the loader (e.g. ``duplicate_record``), kept with the scores.
    """

    id: str
    image_path: Path | None
    label: int = FAKE
    reference: str | None = None
    regions: tuple[Region, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    mask_rule: MaskRule = "polygon"
    mask_path: Path | None = None
    image_bytes: bytes | None = field(default=None, repr=False)
    gt_heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: the ground-truth heatmap still encoded (PNG bytes), decoded on demand by
    #: :meth:`heatmap_array` (keeps a 16k-record RichHF split at ~1/50 of the memory)
    gt_heatmap_png: bytes | None = field(default=None, repr=False, compare=False)
    error: str | None = None
    clip_geometry: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def file_name(self) -> str:
        """The image's bare file name (LEGION's prediction folders are keyed by it)."""
        if "file_name" in self.meta:
            return str(self.meta["file_name"])
        return self.image_path.name if self.image_path is not None else self.id

    @property
    def where(self) -> str:
        return str(self.image_path) if self.image_path is not None else f"sample {self.id}"

    def load_image_bytes(self) -> bytes:
        if self.error:
            raise SampleError(self.where, self.error)
        if self.image_bytes is not None:
            return self.image_bytes
        if self.image_path is None:
            raise SampleError(self.where, "no image file for this record")
        try:
            return Path(self.image_path).read_bytes()
        except FileNotFoundError:
            raise SampleError(self.where, "image file not found") from None
        except OSError as exc:
            raise SampleError(self.where, f"cannot read image: {exc}") from None

    def load_image(self) -> np.ndarray:
        """RGB uint8 H x W x 3."""
        if self.error:
            raise SampleError(self.where, self.error)
        if self.image_bytes is not None:
            return decode_image(self.image_bytes, name=self.where)
        if self.image_path is None:
            raise SampleError(self.where, "no image file for this record")
        return decode_image(self.image_path)

    def heatmap_array(self) -> np.ndarray:
        """The ground-truth heatmap, uint8 H x W as stored (decoded from ``gt_heatmap_png`` if
        that is how the loader kept it)."""
        if self.gt_heatmap is not None:
            return self.gt_heatmap
        if self.gt_heatmap_png is not None:
            try:
                return decode_heatmap(self.gt_heatmap_png)
            except Exception as exc:
                raise SampleError(self.where, f"cannot decode ground-truth heatmap ({exc})") from None
        raise SampleError(self.where, "no ground-truth heatmap for this record")

    def load_mask(self, height: int, width: int, warnings: list[str] | None = None) -> np.ndarray:
        """Ground-truth artifact mask, bool H x W at the given (original) image size; notes on
        clipped geometry are appended to ``warnings`` when given."""
        from bench.io import masks  # local: keeps cv2 off the import path of light users

        where = self.where
        if self.mask_rule == "none" or self.label == REAL:
            return np.zeros((height, width), dtype=bool)
        if self.mask_rule == "polygon":
            polys = [p for r in self.regions for p in r.polygons]
            return masks.polygons_to_mask(polys, height, width, where, self.clip_geometry, warnings)
        if self.mask_rule == "box_inclusive":
            boxes = [r.box for r in self.regions if r.box is not None]
            return masks.boxes_to_mask_inclusive(boxes, height, width, where, self.clip_geometry, warnings)
        if self.mask_rule == "heatmap":
            return masks.heatmap_to_mask(self.heatmap_array(), height, width)
        if self.mask_rule == "file":
            from bench.io.imageio import load_binary_mask_png

            if self.mask_path is None:
                raise SampleError(where, "mask_rule is 'file' but no mask_path is set")
            return load_binary_mask_png(self.mask_path, (height, width))
        raise SampleError(where, f"unknown mask rule {self.mask_rule!r}")


@dataclass(frozen=True)
class ModelInput:
    """What an adapter receives per image: the (perturbed) RGB uint8 image and its identity.

    ``file_name`` is the original image file name (an external model writes its outputs under
    it); ``condition`` is the condition key (``clean``, ``jpeg(quality=50)`` ...); ``meta`` holds
    only non-ground-truth fields (``file_name``, ``content_type``, ``source``), never the label.
    """

    sample_id: str
    image: np.ndarray
    file_name: str
    condition: str = "clean"
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Prediction:
    """An adapter's output for one image, always at the input image's size (H x W).

    ``heatmap``: float32 H x W in [0, 1]; ``mask``: bool H x W; ``score``: image-level
    probability of being synthetic in [0, 1]; ``explanation``: free text.
    """

    heatmap: np.ndarray | None = None
    mask: np.ndarray | None = None
    score: float | None = None
    explanation: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def binary_mask(self, threshold: float = 0.5) -> np.ndarray | None:
        """The mask if given, else ``heatmap > threshold`` (strict), else None."""
        if self.mask is not None:
            return self.mask
        if self.heatmap is not None:
            return self.heatmap > threshold
        return None

    def problems(self, height: int, width: int, tasks: Iterable[str]) -> list[ContractProblem]:
        """Every way this output breaks the adapter contract for an H x W image and the adapter's
        declared ``tasks`` (empty: it keeps the contract). This is the one place the contract is
        written; :meth:`validate` (the runner) and ``bench check-adapter`` both use it.

        The rules, in the order they are checked (rule id: rule):

        - ``mask_dtype``: ``mask``, when given, is bool;
        - ``mask_size``: ``mask`` is H x W (the input image's size);
        - ``heatmap_size``: ``heatmap``, when given, is H x W;
        - ``heatmap_dtype``: ``heatmap`` has a float dtype (float32 expected: see :meth:`advisories`);
        - ``heatmap_finite``: ``heatmap`` holds no NaN or infinity;
        - ``heatmap_range``: ``heatmap``'s (finite) values lie in [0, 1];
        - ``localize_output``: an adapter declaring ``localize`` returns a mask or a heatmap;
        - ``score_type``: ``score``, when given, is a real number (int, float, numpy float; not bool);
        - ``score_finite``: ``score`` is not NaN or infinity;
        - ``score_range``: ``score`` lies in [0, 1];
        - ``detect_output``: an adapter declaring ``detect`` returns a score;
        - ``explanation_type``: ``explanation``, when given, is a str;
        - ``explain_output``: an adapter declaring ``explain`` returns an explanation.

        Each problem is a str (the message the runner records for the sample) carrying its
        ``rule`` id and a shorter ``brief`` that ``bench check-adapter`` lists per sample. Arrays
        are read with ``np.asarray``; something that cannot be read as one raises (TypeError /
        ValueError), as the runner expects.
        """
        tasks, size, P = set(tasks), (height, width), ContractProblem
        out: list[ContractProblem] = []
        if self.mask is not None:
            out.extend(_mask_problems(np.asarray(self.mask), size))
        if self.heatmap is not None:
            out.extend(_heatmap_problems(np.asarray(self.heatmap), size))
        if "localize" in tasks and self.mask is None and self.heatmap is None:
            out.append(P("adapter localizes but returned neither mask nor heatmap", "localize_output",
                         "localize declared but no mask or heatmap"))
        if self.score is not None:
            out.extend(_score_problems(self.score))
        if "detect" in tasks and self.score is None:
            out.append(P("adapter detects but returned no score", "detect_output", "detect declared but no score"))
        if self.explanation is not None and not isinstance(self.explanation, str):
            kind = type(self.explanation).__name__
            out.append(P(f"prediction explanation is {kind}, not str", "explanation_type", f"explanation is {kind}"))
        if "explain" in tasks and self.explanation is None:
            out.append(P("adapter explains but returned no explanation", "explain_output",
                         "explain declared but no explanation"))
        return out

    def advisories(self) -> list[ContractProblem]:
        """What keeps the contract but is probably unintended (``bench check-adapter`` warns):
        ``heatmap_float32``: a float heatmap that is not float32; ``explanation_empty``: an
        explanation that is empty or whitespace only."""
        out = []
        if self.heatmap is not None:
            h = np.asarray(self.heatmap)
            if np.issubdtype(h.dtype, np.floating) and h.dtype != np.float32:
                out.append(ContractProblem(f"prediction heatmap has dtype {h.dtype}; float32 expected",
                                           "heatmap_float32", f"heatmap dtype {h.dtype} (float32 expected)"))
        if isinstance(self.explanation, str) and not self.explanation.strip():
            out.append(ContractProblem("prediction explanation is empty", "explanation_empty",
                                       "explanation is empty"))
        return out

    def validate(self, height: int, width: int, tasks: Iterable[str], where: str) -> None:
        """Raise :class:`SampleError` (at ``where``) with the first of :meth:`problems`, if any."""
        problems = self.problems(height, width, tasks)
        if problems:
            raise SampleError(where, str(problems[0]))


class ContractProblem(str):
    """One way a :class:`Prediction` breaks the contract: the message the runner records, with
    ``rule`` (the rule's id, listed in :meth:`Prediction.problems`) and ``brief`` (a short form
    for ``bench check-adapter``'s per-sample lists)."""

    rule: str
    brief: str

    def __new__(cls, message: str, rule: str = "", brief: str | None = None) -> "ContractProblem":
        self = super().__new__(cls, message)
        self.rule = rule
        self.brief = message if brief is None else brief
        return self


def _mask_problems(m: np.ndarray, size: tuple[int, int]) -> list[ContractProblem]:
    """The mask rules of :meth:`Prediction.problems`: bool, H x W."""
    out = []
    if m.dtype != bool:
        out.append(ContractProblem(f"prediction mask has dtype {m.dtype}; bool required", "mask_dtype",
                                   f"mask dtype {m.dtype}, bool required"))
    if m.shape != size:
        out.append(ContractProblem(f"prediction mask is {m.shape} but the image is {size} (H x W)", "mask_size",
                                   f"mask is {m.shape}, image is {size} (H x W)"))
    return out


def _heatmap_problems(h: np.ndarray, size: tuple[int, int]) -> list[ContractProblem]:
    """The heatmap rules of :meth:`Prediction.problems`: size, float dtype, finite, in [0, 1]."""
    out = []
    if h.shape != size:
        out.append(ContractProblem(f"prediction heatmap is {h.shape} but the image is {size} (H x W)",
                                   "heatmap_size", f"heatmap is {h.shape}, image is {size} (H x W)"))
    if not np.issubdtype(h.dtype, np.floating):
        out.append(ContractProblem(f"prediction heatmap has dtype {h.dtype}; float required",
                                   "heatmap_dtype", f"heatmap dtype {h.dtype}, float32 required"))
        return out  # NaN and range are float questions
    finite = np.isfinite(h)
    if not np.all(finite):
        out.append(ContractProblem("prediction heatmap contains NaN or infinity", "heatmap_finite",
                                   f"heatmap has {int(np.sum(~finite))} NaN/inf values"))
    values = h[finite]
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        lo, hi = values.min(), values.max()
        out.append(ContractProblem(f"prediction heatmap has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]",
                                   "heatmap_range", f"heatmap spans [{lo:.3g}, {hi:.3g}]"))
    return out


def _score_problems(s: Any) -> list[ContractProblem]:
    """The score rules of :meth:`Prediction.problems`: a real number (not bool), finite, in [0, 1]."""
    message = f"prediction score {s!r} is not a number in [0, 1]"
    if isinstance(s, bool) or not isinstance(s, (int, float, np.floating)):
        return [ContractProblem(message, "score_type", f"score is {type(s).__name__}")]
    if not math.isfinite(float(s)):
        return [ContractProblem(message, "score_finite", f"score is {s}")]
    if not 0.0 <= float(s) <= 1.0:
        return [ContractProblem(message, "score_range", f"score {s} outside [0, 1]")]
    return []


class Adapter(abc.ABC):
    """A model behind the harness's one interface.

    Subclasses set ``name``, ``version``, ``tasks`` and may set ``requirements`` (what the run
    must provide: ``batch_size``, ``num_gpus``, ``gpu_memory_gb``; ``timeout_s`` per batch;
    ``needs_setup`` when weights or a service must be configured) and ``flags`` (shown as badges:
    ``external``, ``hard_mask``, ``box_output``, ``finetuned_on``). ``config`` holds every
    option that changes outputs; it is recorded in results and part of the cache key.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "0"
    tasks: ClassVar[frozenset[str]] = frozenset()
    requirements: ClassVar[dict[str, Any]] = {"batch_size": 8, "num_gpus": 0, "gpu_memory_gb": 0}
    flags: ClassVar[dict[str, Any]] = {}
    summary: ClassVar[str] = ""
    #: True when predict() is a pure function of (image, config). The cache reuses outputs
    #: either way (an API's answers cost money); results record the flag.
    deterministic: ClassVar[bool] = True
    #: config keys that do not change outputs (timeouts, GPU lists, batch size ...): recorded in
    #: results but left out of the cache key, so a re-run on other hardware reuses predictions.
    runtime_keys: ClassVar[frozenset[str]] = frozenset()
    #: the config keys the adapter accepts (``runtime_keys`` are accepted too); ``frozenset()``
    #: for an adapter without options. None: not declared, so the harness cannot refuse a
    #: misspelt ``--config`` key before a run (the adapter's ``__init__`` should then refuse
    #: unknown keys itself). When declared, ``__init__`` refuses any other key, with a suggestion.
    config_keys: ClassVar[frozenset[str] | None] = None
    #: What is known about the model, for the leaderboard (recorded in results as
    #: ``adapter.card``): ``paper`` (citation), ``paper_url``, ``code_url``, ``licence``,
    #: ``parameters`` (text, e.g. "~8B"), ``training_data``, ``finetuned_on`` (a dataset the
    #: weights were fine-tuned on). A key left out is unknown (None): never guessed.
    card: ClassVar[dict[str, str | None]] = {}
    #: The keys of ``card``, in display order.
    card_keys: ClassVar[tuple[str, ...]] = ("paper", "paper_url", "code_url", "licence", "parameters",
                                            "training_data", "finetuned_on")

    def __init__(self, **config: Any):
        self.check_config(config)
        self.config: dict[str, Any] = dict(config)

    @classmethod
    def accepted_config_keys(cls) -> frozenset[str] | None:
        """``config_keys | runtime_keys``, or None when the adapter declares nothing."""
        if cls.config_keys is None:
            return None
        return frozenset(cls.config_keys) | frozenset(cls.runtime_keys)

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        """Refuse a config key the adapter does not declare (``InputError``, a ValueError)."""
        keys = cls.accepted_config_keys()
        if keys is None:
            return
        unknown = [k for k in config if k not in keys]
        if unknown:
            from bench.core.validate import InputError, did_you_mean

            k = unknown[0]
            listing = ", ".join(sorted(keys)) if keys else "none: it takes no options"
            raise InputError(f"adapter {getattr(cls, 'name', cls.__name__)!r} has no option {k!r}"
                             f"{did_you_mean(k, keys)} (options: {listing})")

    def load(self, device: str = "cpu") -> None:
        """Load weights onto ``device`` ("cpu", "cuda", "cuda:1"). Default: nothing to load."""

    @abc.abstractmethod
    def predict(self, batch: Sequence[ModelInput]) -> list[Prediction]:
        """One Prediction per input, in order, each at its input's size."""

    def weights_sha256(self) -> str | None:
        """sha256 of the weight file(s), or None for weight-free adapters."""
        return None

    def identity(self) -> dict[str, Any]:
        """Name, version, full config and weights hash: recorded in results."""
        return {
            "name": self.name,
            "version": self.version,
            "config": self.config,
            "weights_sha256": self.weights_sha256(),
        }

    def cache_identity(self) -> dict[str, Any]:
        """What determines outputs: the identity without ``runtime_keys``, plus the sha256 of
        the adapter's source file, so editing an adapter without bumping ``version`` can never
        serve predictions its old code made. This is the cache key's adapter part."""
        ident = self.identity()
        ident["config"] = {k: v for k, v in ident["config"].items() if k not in self.runtime_keys}
        ident["code_sha256"] = adapter_code_sha256(type(self))
        return ident


_CODE_SHA: dict[type, str | None] = {}


def adapter_code_sha256(cls: type) -> str | None:
    """sha256 of the source files of ``cls`` and its Adapter base classes (None if unknown)."""
    if cls not in _CODE_SHA:
        import inspect

        h = hashlib.sha256()
        found = False
        for klass in cls.__mro__:
            if klass is Adapter or not (isinstance(klass, type) and issubclass(klass, Adapter)):
                continue
            try:
                src = inspect.getsourcefile(klass)
            except TypeError:
                src = None
            if src and Path(src).is_file():
                h.update(Path(src).read_bytes())
                found = True
        _CODE_SHA[cls] = h.hexdigest() if found else None
    return _CODE_SHA[cls]


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class Dataset(abc.ABC):
    """A dataset loader. ``samples()`` returns light records (pixels stay on disk).

    ``fingerprint()`` is sha256 over the sorted sample ids and the annotation files' bytes,
    so two results on different data or annotations are never compared.
    """

    name: ClassVar[str]
    splits: ClassVar[tuple[str, ...]] = ("test",)
    #: True when the split holds both real and fake images (detection metrics meaningful).
    summary: ClassVar[str] = ""

    def __init__(self, data_root: Path | str | None = None, split: str = "test", **options: Any):
        self.data_root = Path(data_root) if data_root is not None else None
        self.split = split
        self.options = options
        self._samples: list[Sample] | None = None

    @abc.abstractmethod
    def _load(self) -> list[Sample]:
        """Read annotations into Samples (broken records become Samples with ``error`` set)."""

    @abc.abstractmethod
    def annotation_files(self) -> list[Path]:
        """Files whose bytes define the ground truth (for the fingerprint)."""

    def samples(self) -> list[Sample]:
        if self._samples is None:
            self._samples = self._load()
        return self._samples

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for sid in sorted(s.id for s in self.samples()):
            h.update(sid.encode("utf-8") + b"\0")
        for path in self.annotation_files():
            h.update(b"\1" + Path(path).read_bytes())
        return h.hexdigest()
