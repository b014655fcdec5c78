"""The names of ``bench.results/1``: the schema string and the files of a run folder.

A run folder holds ``results.json`` (the schema: ``bench/results/results.schema.json``, which
documents every field and is what :mod:`bench.results.publish` checks), ``samples.parquet``
(one row per sample and condition) and ``gallery/`` (thumbnails: :mod:`bench.engine.gallery`);
a published copy adds ``publish.json``.
"""

from __future__ import annotations

from pathlib import Path

RESULTS_SCHEMA = "bench.results/1"
RESULTS_FILE = "results.json"
SAMPLES_FILE = "samples.parquet"
GALLERY_DIR = "gallery"
GALLERY_INDEX = "index.json"
PUBLISH_FILE = "publish.json"
#: The JSON Schema of results.json.
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
