"""Error types. Every error that concerns one input names the file (or sample) and the problem."""

from __future__ import annotations


class BenchError(Exception):
    """Base class for errors the harness reports to the user (no traceback needed)."""


class SampleError(BenchError):
    """A problem with one sample's input (image, annotation, prediction).

    The runner records it as a failed sample with this message and goes on.
    """

    def __init__(self, where: str, problem: str):
        self.where = str(where)
        self.problem = problem
        # an empty ``where`` keeps a message that already names its file
        super().__init__(f"{self.where}: {problem}" if self.where else problem)


class UnknownNameError(BenchError, KeyError):
    """A registry lookup for a name that is not registered; the message suggests close names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataMissingError(BenchError):
    """The dataset files are not where the suite expects them; the message says how to fix it."""
