"""The claims files shipped under ``results/<suite>/claims/`` (the LEGION paper's Tables 2, 3
and 10): each loads with the project's own claims loader, and their numbers are the ones in the
reference notes' table text (``/work/shared/reference/PROTOCOL.md``), so a typo is caught.

The loader is imported inside the test functions (through :func:`_load_claims`), so a module
move breaks only these tests, and is fixed in one line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLAIMS_FILES = sorted(ROOT.glob("results/*/claims/*.yaml"))
PROTOCOL_MD = Path("/work/shared/reference/PROTOCOL.md")


def _load_claims(path: Path):
    """The project's public claims loader (``load_claims``) on ``path``."""
    try:
        from bench.results.claims import load_claims
    except ImportError:  # before the package restructure
        from bench.claims import load_claims
    return load_claims(path)


def _rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


# -- (a) every shipped file loads ---------------------------------------------------------------

def test_claims_files_are_shipped():
    names = {_rel(p) for p in CLAIMS_FILES}
    for expected in ("results/synthscars/claims/legion_table2_localization.yaml",
                     "results/loki/claims/legion_table2_localization.yaml",
                     "results/richhf/claims/legion_table2_localization.yaml",
                     "results/synthscars/claims/legion_table3_explanation.yaml",
                     "results/synthscars/claims/legion_table10_robustness.yaml"):
        assert expected in names


@pytest.mark.parametrize("path", CLAIMS_FILES, ids=_rel)
def test_claims_file_loads(path):
    cf = _load_claims(path)
    assert len(cf.claims) > 0
    assert cf.title and "2503.15264" in cf.source
    for c in cf.claims:
        assert c.value is not None and c.scale == 100 and c.tolerance == 0.005, c.text()


# -- (b) the numbers are PROTOCOL.md's -----------------------------------------------------------

def _protocol_text() -> str:
    if not PROTOCOL_MD.is_file():
        pytest.skip(f"{PROTOCOL_MD} is not here: nothing to compare the shipped numbers with")
    return PROTOCOL_MD.read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The text of the markdown section whose heading starts with ``heading``."""
    m = re.search(rf"^##+ {re.escape(heading)}.*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"PROTOCOL.md has no section {heading!r}"
    return m.group(1)


def _table_rows(section: str) -> list[list[str]]:
    """Cells of every markdown table row (header and separator rows included)."""
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.strip().startswith("|")]


PAIR = re.compile(r"(\d+\.\d+)\s*/\s*(\d+\.\d+)")
METRIC_INDEX = {"miou": 0, "f1": 1, "rouge_l": 0, "css": 1}


def _table2(text: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(method, column) -> (mIoU text, F1 text) from §6's Table 2."""
    rows = _table_rows(_section(text, "6."))
    header = next(r for r in rows if r[0] == "method")
    out = {}
    for r in rows:
        if r[0] == "method" or set(r[0]) <= set("-"):
            continue
        for col, cell in zip(header[1:], r[1:]):
            m = PAIR.fullmatch(cell)
            assert m, f"Table 2 cell {r[0]}/{col}: {cell!r}"
            out[(r[0], col)] = m.groups()
    return out


def _table3(text: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(method, dataset) -> (ROUGE-L text, CSS text) from §6's Table 3 sentence."""
    sec = _section(text, "6.")
    para = sec[sec.index("Explanation, ROUGE-L / CSS (Table 3)"):].split("\n\n")[0]
    out = {}
    for dataset, label in (("synthscars", "SynthScars"), ("loki", "LOKI")):
        part = re.search(rf"{label} —(.*?)(?:\.\s*$|\.\s+[A-Z]|$)", para, re.S)
        assert part, f"Table 3: no {label} part"
        for name, a, b in re.findall(r"([A-Za-z][\w.\-]*)\s+(\d+\.\d+)/(\d+\.\d+)", part.group(1)):
            out[(name, dataset)] = (a, b)
    return out


TABLE10_CONDITIONS = {  # PROTOCOL.md §3 row label -> the harness's condition keys, in order
    "none": ["clean"],
    "JPEG 50 / 35 / 20": ["jpeg(quality=50)", "jpeg(quality=35)", "jpeg(quality=20)"],
    "noise 0.1 / 0.2 / 0.3": [f"gaussian_noise(sigma={s})" for s in (0.1, 0.2, 0.3)],
    "blur 5 / 9 / 15": [f"gaussian_blur(kernel={k})" for k in (5, 9, 15)],
}


def _table10(text: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(method, condition key) -> (mIoU text, F1 text) from §3's Table 10."""
    rows = _table_rows(_section(text, "3."))
    header = next(r for r in rows if r[0] == "condition")
    out = {}
    for r in rows:
        if r[0] not in TABLE10_CONDITIONS:
            continue
        for method, cell in zip(header[1:], r[1:]):
            pairs = PAIR.findall(cell)
            assert len(pairs) == len(TABLE10_CONDITIONS[r[0]]), f"Table 10 {r[0]}/{method}: {cell!r}"
            for key, pair in zip(TABLE10_CONDITIONS[r[0]], pairs):
                out[(method, key)] = pair
    return out


#: Table 2 column -> where its claims live: the per-category suite (synthscars file) or the dataset.
T2_WHERE = {"Object": "synthscars-object", "Animal": "synthscars-animal", "Human": "synthscars-human",
            "Scene": "synthscars-scene", "LOKI": "loki", "RichHF-18K": "richhf"}


def _expected(path: Path, text: str) -> dict[tuple[str, str, str, str], float]:
    """(method, where, condition, metric) -> the PROTOCOL.md number, for the table ``path`` ships."""
    name = path.stem
    out = {}
    if name == "legion_table2_localization":
        suite = path.parts[-3]  # results/<suite>/claims/<file>
        for (method, col), pair in _table2(text).items():
            where = T2_WHERE[col]
            if where == suite or (suite == "synthscars" and where.startswith("synthscars-")):
                for metric in ("miou", "f1"):
                    out[(method, where, "clean", metric)] = float(pair[METRIC_INDEX[metric]])
    elif name == "legion_table3_explanation":
        for (method, dataset), pair in _table3(text).items():
            for metric in ("rouge_l", "css"):
                out[(method, dataset, "clean", metric)] = float(pair[METRIC_INDEX[metric]])
    elif name == "legion_table10_robustness":
        for (method, key), pair in _table10(text).items():
            for metric in ("miou", "f1"):
                out[(method, "synthscars", key, metric)] = float(pair[METRIC_INDEX[metric]])
    return out


def _where(c) -> str:
    return c.suite or c.dataset


@pytest.mark.parametrize("path", CLAIMS_FILES, ids=_rel)
def test_claims_match_protocol_numbers(path):
    """Every claim is a PROTOCOL.md number, and every number of the table is claimed once."""
    text = _protocol_text()
    expected = _expected(path, text)
    if not expected:
        pytest.skip(f"{path.name}: no PROTOCOL.md table is mapped to this file")
    cf = _load_claims(path)
    seen = {}
    for c in cf.claims:
        key = (c.method, _where(c), c.condition, c.metric)
        assert key in expected, f"{path.name}: claim {c.text()} is not in PROTOCOL.md's table"
        assert c.value == expected[key], f"{path.name}: {c.text()} but PROTOCOL.md says {expected[key]}"
        assert key not in seen, f"{path.name}: {c.text()} claimed twice"
        seen[key] = c.value
    missing = sorted(set(expected) - set(seen))
    assert not missing, f"{path.name}: PROTOCOL.md numbers not claimed: {missing}"


@pytest.mark.parametrize("rel, method, where, condition, metric, value", [
    ("synthscars/claims/legion_table2_localization.yaml", "LEGION", "synthscars-human", "clean", "miou", 60.82),
    ("synthscars/claims/legion_table2_localization.yaml", "HiFi-Net", "synthscars-animal", "clean", "f1", 0.03),
    ("loki/claims/legion_table2_localization.yaml", "PAL4VST (fine-tuned)", "loki", "clean", "f1", 11.58),
    ("richhf/claims/legion_table2_localization.yaml", "TruFor", "richhf", "clean", "miou", 48.41),
    ("synthscars/claims/legion_table3_explanation.yaml", "GPT-4o", "synthscars", "clean", "css", 53.55),
    ("synthscars/claims/legion_table3_explanation.yaml", "LLaVA-1.6", "loki", "clean", "rouge_l", 16.07),
    ("synthscars/claims/legion_table10_robustness.yaml", "PAL4VST", "synthscars", "gaussian_noise(sigma=0.3)",
     "f1", 21.11),
    ("synthscars/claims/legion_table10_robustness.yaml", "LEGION", "synthscars", "gaussian_blur(kernel=15)",
     "miou", 57.50),
])
def test_named_rows(rel, method, where, condition, metric, value):
    """A handful of rows by hand: the shipped value, and the number in PROTOCOL.md's table text."""
    path = ROOT / "results" / rel
    cf = _load_claims(path)
    got = [c.value for c in cf.claims
           if (c.method, _where(c), c.condition, c.metric) == (method, where, condition, metric)]
    assert got == [value]
    expected = _expected(path, _protocol_text())
    assert expected[(method, where, condition, metric)] == value
