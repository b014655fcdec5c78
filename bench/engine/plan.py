"""Plan a run before any work: every input checked (names, configs, options, conditions), the
dataset opened, and each (sample, condition)'s prediction cache key computed once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from bench.core.conditions import Condition
from bench.core.registry import ADAPTERS, create_dataset
from bench.core.types import Dataset, Sample
from bench.core.validate import InputError, check_run_configs, unknown_name
from bench.engine.cache import PredictionCache
from bench.engine.inference import AdapterSpec, plan_keys
from bench.errors import BenchError
from bench.suites import Suite


@dataclass
class RunOptions:
    """Everything about a run that is not the suite itself."""

    out_dir: Path
    data_root: Path | None = None
    split: str | None = None
    perturb: str | None = None
    extra_conditions: list[str] = field(default_factory=list)
    adapter_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    workers: int | None = None
    executor: str = "local"       # local | ray
    ray_address: str | None = None
    phase: str = "all"            # all | infer | score
    retry_failed: bool = False
    limit: int | None = None      # first N samples only (smoke runs); recorded
    device: str = "cpu"
    progress: bool = True         # bars on a terminal (tqdm hides them when stderr is not a TTY)
    cache_dir: Path | None = None
    gallery_size: int = 24
    command: str | None = None

    @property
    def n_workers(self) -> int:
        return max(1, self.workers or os.cpu_count() or 1)


# -- inputs ---------------------------------------------------------------------------

def suite_conditions(suite: Suite, perturb: str | None, extra: Sequence[str]) -> list[Condition]:
    """Clean first, then the preset's conditions, then the suite's and the command line's;
    duplicates dropped, order kept. A malformed or unknown condition is an
    :class:`~bench.core.validate.InputError` naming where it came from (checked before any work)."""
    conds: list[tuple[str, Condition]] = [("clean", Condition.clean())]
    preset = perturb or suite.perturb
    if preset:
        from bench.perturbations.presets import preset_conditions

        conds += [(f"preset {preset!r}", c) for c in preset_conditions(preset)]
    src = f"{suite.source or f'suite {suite.name!r}'}: conditions"
    for i, spec in enumerate(suite.conditions):
        try:
            conds.append((f"{src}[{i}]", Condition.from_spec(spec)))
        except ValueError as exc:
            raise InputError(f"{src}[{i}]: {exc}") from None
    for text in extra:
        try:
            conds.append((f"--condition {text!r}", Condition.parse(text)))
        except ValueError as exc:
            raise InputError(f"--condition {text!r}: {exc}") from None
    from bench.perturbations import canonical_condition

    seen, out = set(), []
    for where, c in conds:
        try:  # bad names or parameters fail here, before any work; sigma=1 and 1.0 share a key
            c = canonical_condition(c)
        except (ValueError, BenchError) as exc:
            what = "" if where.startswith("--condition") else f" condition {c.key!r}:"
            raise InputError(f"{where}:{what} {exc}") from None
        if c.key not in seen:
            seen.add(c.key)
            out.append(c)
    return out


def check_inputs(suite: Suite, adapters: Sequence[str], opts: RunOptions) -> list[Condition]:
    """Every input of a run, before any work (no dataset opened, no model built or loaded):
    adapter names and configs, options, the suite's registry names and every condition.
    Returns the run's conditions; :class:`~bench.core.validate.InputError` in one line otherwise."""
    if not adapters:
        raise InputError("no adapter to run: pass --adapter NAME (`bench ls adapters`)")
    for name in adapters:
        ADAPTERS.entry(name)  # unknown names fail before any work, with suggestions
    if opts.limit is not None and (isinstance(opts.limit, bool) or not isinstance(opts.limit, int)
                                   or opts.limit < 1):
        raise InputError(f"--limit must be a positive integer (the first N samples), got {opts.limit!r}")
    if opts.workers is not None and (not isinstance(opts.workers, int) or opts.workers < 1):
        raise InputError(f"--workers must be a positive integer, got {opts.workers!r}")
    if opts.phase not in ("all", "infer", "score"):
        raise InputError(f"--phase must be all, infer or score, got {opts.phase!r}")
    if opts.executor not in ("local", "ray"):
        raise InputError(f"--executor must be local or ray, got {opts.executor!r}")
    check_suite_names(suite)
    conditions = suite_conditions(suite, opts.perturb, opts.extra_conditions)
    check_run_configs(opts.adapter_configs, adapters)
    return conditions


def check_suite_names(suite: Suite) -> None:
    """Names a suite file uses that only the registries know: dataset, metrics, preset,
    protocol choices. The static format is checked by the schema when the file is read."""
    from bench.core.registry import DATASETS, METRICS

    src = suite.source or f"suite {suite.name!r}"
    if suite.dataset not in DATASETS:
        raise unknown_name("dataset", suite.dataset, DATASETS.names(), f"{src}: dataset")
    for m in suite.metrics:
        if m not in METRICS:
            raise unknown_name("metric", m, METRICS.names(), f"{src}: metrics")
    if suite.perturb:
        from bench.perturbations.presets import resolve_preset

        try:
            resolve_preset(suite.perturb)
        except BenchError as exc:
            raise InputError(f"{src}: perturb: {exc}") from None
    proto = suite.protocol
    from bench.metrics.text_prep import REFERENCE_FIELDS, TEXT_CLEANINGS

    field = proto.get("reference_field")
    if field is not None and field not in REFERENCE_FIELDS:
        raise unknown_name("reference field", field, REFERENCE_FIELDS, f"{src}: protocol.reference_field")
    cleaning = proto.get("text_cleaning", "none")
    if cleaning not in TEXT_CLEANINGS:
        raise unknown_name("text cleaning", cleaning, TEXT_CLEANINGS, f"{src}: protocol.text_cleaning")
    impl = proto.get("rouge_impl")
    if impl is not None and "rouge_l" in suite.metrics:
        from bench.metrics.explanation import ROUGE_IMPLS

        if impl not in ROUGE_IMPLS:
            raise InputError(f"{src}: protocol.rouge_impl {impl!r} is not implemented here; "
                             f"known: {' | '.join(ROUGE_IMPLS)}")




# -- dataset ------------------------------------------------------------------------------

def open_dataset(suite: Suite, opts: RunOptions) -> Dataset:
    if suite.needs_data_root and opts.data_root is None:
        raise BenchError(
            f"suite {suite.name!r} needs its data: pass --data-root DIR "
            f"(get it with `bench data fetch {suite.dataset}`)"
        )
    options = dict(suite.dataset_options)
    ds = create_dataset(suite.dataset, data_root=opts.data_root, split=opts.split or suite.split, **options)
    from bench.datasets.verify import check_data_available

    if opts.data_root is not None:
        check_data_available(suite.dataset, opts.data_root, opts.split or suite.split, dataset=ds, **options)
    return ds


def open_samples(suite: Suite, opts: RunOptions) -> tuple[Dataset, list[Sample]]:
    try:
        dataset = open_dataset(suite, opts)
        samples = dataset.samples()
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        root = opts.data_root
        if root is not None and Path(root).is_file():
            raise BenchError(f"--data-root {root}: is a file, but dataset {suite.dataset!r} needs a folder "
                             "(see README: Datasets)") from None
        raise BenchError(f"--data-root {root}: {exc.strerror or exc}: {exc.filename}") from None
    except PermissionError as exc:
        raise BenchError(f"dataset {suite.dataset!r}: cannot read {exc.filename}: permission denied") from None
    if opts.limit is not None:
        samples = samples[: opts.limit]
    if not samples:
        raise BenchError(f"dataset {dataset.name!r} split {dataset.split!r} has no samples")
    return dataset, samples



# -- cache keys ----------------------------------------------------------------------------

def plan_jobs(spec: AdapterSpec, samples: Sequence[Sample], conditions: Sequence[Condition],
               suite: Suite, cache_dir: Path) -> list:
    """(sample, [(condition key, prediction key)]) per sample; marks the entries as used."""
    identity = spec.create().cache_identity()
    cache = PredictionCache(cache_dir)
    jobs = []
    for sample in samples:
        keys = plan_keys(identity, cache, sample, conditions, suite.seed)
        jobs.append((sample, [(c.key, k) for c, k in zip(conditions, keys)]))
    cache.touch([k for _, items in jobs for _, k in items])  # for `bench cache gc --older-than`
    cache.close()
    return jobs


