"""`bench leaderboard [--results DIR] [--port N] [--headless]`: start the Streamlit leaderboard;
`bench leaderboard --export DIR`: write it as a self-contained static site instead."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bench.errors import BenchError


def app_path() -> Path:
    """The Streamlit entry script (``leaderboards/app.py``)."""
    import bench.leaderboards

    return Path(bench.leaderboards.__file__).resolve().parent / "app.py"


def streamlit_argv(results: Path, port: int | None = None, headless: bool = False,
                   address: str | None = None) -> list[str]:
    """The ``python -m streamlit run`` command line; the results folder goes to the app after
    ``--`` (the app reads ``--results``)."""
    argv = [sys.executable, "-m", "streamlit", "run", str(app_path()),
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]
    if port is not None:
        argv += ["--server.port", str(port)]
    if address:
        argv += ["--server.address", address]
    if headless:
        argv += ["--server.headless", "true"]
    return argv + ["--", "--results", str(results)]


def run(args: argparse.Namespace) -> int:
    results = Path(args.results).resolve()
    if not results.is_dir():
        raise BenchError(f"results folder {results} not found; publish a run first "
                         "(`bench run --suite demo --out runs/` then `bench publish runs/<adapter>`)")
    if args.export:
        from bench.leaderboards.export import export_site, stderr_progress

        done = export_site(results, Path(args.export), progress=stderr_progress)
        print(f"{done.out}/index.html: {done.n_runs} result(s) in {done.n_suites} suite(s), "
              f"{done.n_claims_files} claims file(s); also {', '.join(f for f in done.files if f != 'index.html')}")
        return 0
    if args.port is not None and not 1 <= args.port <= 65535:
        raise BenchError(f"--port {args.port} is not a TCP port (1-65535)")
    env = dict(os.environ, BENCH_RESULTS_DIR=str(results))
    argv = streamlit_argv(results, args.port, args.headless, args.address)
    try:
        return subprocess.call(argv, env=env)
    except KeyboardInterrupt:
        return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="start the Streamlit leaderboard on a results folder (or export it)",
                       description="Start the leaderboard app (pages: Leaderboard, Robustness, Samples, "
                       "Protocol, About) on a results folder, or with --export write the same tables and "
                       "robustness charts as a static site (no server, no network).")
    p.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
    p.add_argument("--port", type=int, default=None, metavar="N", help="port (default: Streamlit's, 8501)")
    p.add_argument("--address", default=None, metavar="HOST",
                   help="address to listen on (default: Streamlit's; use 127.0.0.1 to stay local)")
    p.add_argument("--headless", action="store_true", help="do not open a browser")
    p.add_argument("--export", metavar="DIR", default=None,
                   help="write a static site (index.html, leaderboard.csv, reported.csv, leaderboard.md) to DIR "
                        "instead of starting the app; DIR is replaced only if it is an earlier export")
    p.set_defaults(func=run)
