"""Where infer shards run: the local process pool (bench.runner) or a Ray cluster."""
