"""Example third-party adapter package for the bench harness."""

from bench_example_plugin.adapter import HighPassAdapter

__all__ = ["HighPassAdapter"]
