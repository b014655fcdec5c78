"""The data model and the registries: Sample, Prediction, Adapter and Dataset base classes,
conditions and their seeds, the typed registries, input checking helpers, the prediction folder
formats and the environment record. Builds on :mod:`bench.io` only."""
