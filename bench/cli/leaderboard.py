"""`bench leaderboard [--results DIR] [--port N] [--headless]`: start the Streamlit leaderboard."""

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
    if args.port is not None and not 1 <= args.port <= 65535:
        raise BenchError(f"--port {args.port} is not a TCP port (1-65535)")
    env = dict(os.environ, BENCH_RESULTS_DIR=str(results))
    argv = streamlit_argv(results, args.port, args.headless, args.address)
    try:
        return subprocess.call(argv, env=env)
    except KeyboardInterrupt:
        return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="start the Streamlit leaderboard on a results folder",
                       description="Start the leaderboard app (pages: Leaderboard, Robustness, Samples, "
                       "Protocol) on a results folder.")
    p.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
    p.add_argument("--port", type=int, default=None, metavar="N", help="port (default: Streamlit's, 8501)")
    p.add_argument("--address", default=None, metavar="HOST",
                   help="address to listen on (default: Streamlit's; use 127.0.0.1 to stay local)")
    p.add_argument("--headless", action="store_true", help="do not open a browser")
    p.set_defaults(func=run)
