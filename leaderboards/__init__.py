

if __name__ != "bench.leaderboards":  # this folder is the sub-package bench.leaderboards (pyproject package-dir)
    raise ImportError(f"{__name__!r} is not a package of its own: import bench.leaderboards")
