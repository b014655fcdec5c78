"""Running a suite: plan (inputs checked, conditions, cache keys), infer (the prediction cache,
executors), score (metric rows and aggregates), the output folder and its gallery."""
