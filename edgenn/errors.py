"""Errors for people: one line that says what was wrong and what to do about it.

Every failure a user can cause is raised as an :class:`EdgennError` (or one of its few
subclasses); the CLI prints its message and exits non-zero, without a traceback unless
``--verbose`` is given.
"""

from __future__ import annotations


class EdgennError(Exception):
    """A failure with a message meant for the person running edgenn."""


class InputError(EdgennError, ValueError):
    """Inputs that do not fit the model: wrong names, rank, shape, dtype or values."""


class ModelFileError(EdgennError):
    """A model or weights file that is missing, unreadable, corrupt or not ours."""


class ProviderError(EdgennError):
    """An execution provider that was asked for but is not available."""


class ExportError(EdgennError):
    """The module could not be loaded, run or expressed in ONNX."""


class CheckFailed(EdgennError):
    """The work was done and a check of it did not pass (parity, an accuracy budget): exit code 3."""


class ValidationError(CheckFailed):
    """An exported or quantized model does not compute what its reference computes."""


class WriteError(EdgennError):
    """A file or folder that could not be written: a full disk, a read-only file system, no permission."""


class ModelWarning(UserWarning):
    """A model that loads and runs but holds something that usually means damage (Inf weights, an input
    shadowed by a weight): said once, at load; the CLI prints it as one line."""


# The exit codes of the `edgenn` command (the README lists them).
EXIT_OK = 0
EXIT_ERROR = 1  # bad input, a missing or corrupt file, a provider that is not here, a bug
EXIT_USAGE = 2  # a command line that does not parse (click's own code)
EXIT_CHECK_FAILED = 3  # CheckFailed: validation or a budget did not hold; what was written is named


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (libraries' messages run to pages)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(exc).__name__
