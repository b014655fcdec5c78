"""Streamlit helpers shared by the pages: where the results are, cached loading, escaping,
and view state kept in the page address (``st.query_params``) so a link restores the view.

Escaping rule: text that comes from a result (adapter names, explanations, dataset names ...)
is shown with ``st.text`` / ``st.code`` / ``st.dataframe`` (rendered as text), or passed
through :func:`md_escape` before it reaches any Markdown (headers, captions, expander labels).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import streamlit as st

from bench.leaderboards import data as D

ENV_RESULTS = "BENCH_RESULTS_DIR"


def results_dir() -> Path:
    """``--results DIR`` after ``--`` on the ``streamlit run`` line, else ``$BENCH_RESULTS_DIR``,
    else ``./results``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--results")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return Path(args.results or os.environ.get(ENV_RESULTS) or "results")


@st.cache_data(show_spinner=False, max_entries=8)
def _load(root: str, sig: tuple) -> D.Loaded:  # sig: part of the cache key only
    return D.load_runs(root)


def load() -> D.Loaded:
    """All valid runs under the results folder (re-read when a file there changes)."""
    root = results_dir()
    return _load(str(root.resolve()), D.signature(root))


@st.cache_data(show_spinner=False, max_entries=32)
def _samples(run_dir: str, sig: tuple, _run: D.Run) -> pd.DataFrame:
    return D.load_samples(_run)


def claims_signature(root: Path) -> tuple:
    """Paths, sizes and mtimes of the claims files under ``root`` (part of a cache key)."""
    from bench.results.claims import claims_files

    return D.stat_signature(claims_files(root))


@st.cache_data(show_spinner=False, max_entries=8)
def _reported(root: str, sig: tuple, _runs: list) -> tuple[list, list]:
    from bench.leaderboards.reported import load_reported

    return load_reported(root, _runs)


def reported(loaded: D.Loaded) -> tuple[list, list]:
    """The claims files under the results folder with their verdicts against its runs
    (:mod:`bench.leaderboards.reported`), and the files skipped with the reason."""
    root = results_dir()
    return _reported(str(root.resolve()), (D.signature(root), claims_signature(root)), loaded.runs)


@st.cache_data(show_spinner=False, max_entries=64)
def suite_groups(sdf: pd.DataFrame, metrics: list[str], conditions: list[str], *, sort_metric: str | None,
                 with_ci: bool, failed: dict) -> list:
    """:func:`bench.leaderboards.board.suite_groups`, cached per view (a rerun that changes
    nothing in the tables, e.g. opening an expander, does not rebuild them)."""
    from bench.leaderboards import board as B

    return B.suite_groups(sdf, metrics, conditions, sort_metric=sort_metric, with_ci=with_ci, failed=failed)


def samples(run: D.Run) -> pd.DataFrame:
    f = run.dir / D.SAMPLES_FILE
    try:
        st_ = f.stat()
        sig = (st_.st_size, st_.st_mtime_ns)
    except OSError:
        sig = ()
    return _samples(str(run.dir), sig, run)


_MD_SPECIAL = set("\\`*_{}[]()<>#+-.!|~:$&\"'=^%@/;?,")
_ZWSP = "\u200b"
_WWW = re.compile(r"(?i)(www)\.")


def md_escape(text: Any) -> str:
    """Text safe to embed in Streamlit Markdown: every ASCII punctuation character that
    Markdown, HTML or Streamlit's directives (``:red[...]``, ``:emoji:``, ``$math$``) could
    interpret is backslash-escaped (CommonMark allows escaping any ASCII punctuation), line
    breaks become spaces, and GitHub-style autolinks (``http://``, ``www.``, ``a@b.c``), which
    escapes do not stop, are broken with a zero-width space."""
    s = str(text).replace("\r", " ").replace("\n", " ")
    s = _WWW.sub(lambda m: m.group(1) + _ZWSP + ".", s).replace("://", ":" + _ZWSP + "//").replace("@", "@" + _ZWSP)
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in s)


def no_results(loaded: D.Loaded) -> None:
    st.info("No results to show in this folder. Produce some with "
            "`bench run --suite demo --adapter empty,random --out runs/` and "
            "`bench publish runs/<adapter>`, then reload.")
    st.text(f"results folder: {loaded.root}")
    show_problems(loaded)


def show_problems(loaded: D.Loaded, more: Sequence[tuple[str, str]] = ()) -> None:
    """The folders (and claims files, ``more``) that were skipped, with the reason."""
    problems = list(loaded.problems) + list(more)
    if problems:
        with st.expander(f"{len(problems)} folder(s) or file(s) skipped (invalid or unsafe)"):
            st.dataframe(pd.DataFrame(problems, columns=["folder or file", "reason"]), hide_index=True)


# -- view state in the address ------------------------------------------------------------

def _qp_list(name: str) -> list[str]:
    return list(st.query_params.get_all(name))


def query_list(name: str) -> list[str]:
    """The values of query parameter ``name`` in the page address (repeated parameters)."""
    return _qp_list(name)


def init_state(key: str, param: str, options: Sequence[Any], default: Any, multi: bool = False,
               to_str: Callable[[Any], str] = str) -> None:
    """Before a widget is drawn: set its session value from the query parameter ``param`` on
    the first draw (only values that are valid options are taken), else ``default``; drop a
    stale value that is no longer an option."""
    by_str = {to_str(o): o for o in options}
    if key in st.session_state:
        cur = st.session_state[key]
        if multi:
            kept = [v for v in cur if v in options]
            if kept != list(cur):  # options changed (e.g. another suite): keep what still exists
                st.session_state[key] = kept if kept else list(default)
        elif cur not in options and options:
            st.session_state[key] = default
        return
    if multi:
        vals = [by_str[v] for v in _qp_list(param) if v in by_str]
        st.session_state[key] = vals if _qp_list(param) else list(default)
    else:
        got = _qp_list(param)
        st.session_state[key] = by_str[got[-1]] if got and got[-1] in by_str else default


def init_text(key: str, param: str, default: str = "") -> None:
    if key not in st.session_state:
        got = _qp_list(param)
        st.session_state[key] = got[-1][:200] if got else default


def init_bool(key: str, param: str, default: bool) -> None:
    if key not in st.session_state:
        got = _qp_list(param)
        st.session_state[key] = (got[-1] == "1") if got else default


def write_params(values: dict[str, Any]) -> None:
    """Write the view into the address: lists as repeated parameters, bools as 1/0."""
    new: dict[str, Any] = {}
    for k, v in values.items():
        if v is None or v == "":
            continue
        if isinstance(v, bool):
            new[k] = "1" if v else "0"
        elif isinstance(v, (list, tuple)):
            new[k] = [str(x) for x in v] if v else ["-"]  # "-": an explicit empty choice
        else:
            new[k] = str(v)
    current = {k: _qp_list(k) for k in st.query_params}
    target = {k: (v if isinstance(v, list) else [v]) for k, v in new.items()}
    if current != target:
        st.query_params.from_dict(new)
