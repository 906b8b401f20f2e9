"""Comparing two sets of named outputs: per-output figures and a verdict, as data.

numpy only (bottom layer): validation after export, quantization checks and the runtime share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# Relative error is measured against max(|reference|, this floor) so that outputs near zero do
# not turn a 1e-8 difference into an enormous "relative" error.
_REL_FLOOR = 1e-6


@dataclass(frozen=True)
class Tolerance:
    atol: float = 1e-4
    rtol: float = 1e-3


@dataclass(frozen=True)
class OutputParity:
    """How one output of a candidate compares with the reference."""

    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    mismatch_fraction: float  # elements with |a - b| > atol + rtol * |b|
    argmax_agreement: float | None  # for (N, classes) outputs: fraction of rows with equal argmax
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shape"] = list(self.shape)
        return data


@dataclass(frozen=True)
class ParityReport:
    """All outputs of one comparison (one batch size), and whether every one passed."""

    batch_size: int
    tolerance: Tolerance
    outputs: tuple[OutputParity, ...]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def max_abs_error(self) -> float:
        return max((o.max_abs_error for o in self.outputs), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "tolerance": asdict(self.tolerance),
            "passed": self.passed,
            "outputs": [o.to_dict() for o in self.outputs],
        }


def compare_output(
    name: str, reference: np.ndarray, candidate: np.ndarray, tol: Tolerance, classifier: bool
) -> OutputParity:
    ref = np.asarray(reference)
    cand = np.asarray(candidate)
    if ref.shape != cand.shape:
        return OutputParity(name, tuple(cand.shape), float("inf"), float("inf"), 1.0, None, False)
    ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
    diff = np.abs(ref64 - cand64)
    finite = np.isfinite(ref64) == np.isfinite(cand64)
    diff = np.where(np.isnan(diff) & finite, 0.0, diff)  # NaN where both are the same inf
    bound = tol.atol + tol.rtol * np.abs(ref64)
    mismatched = ~(diff <= bound)
    max_abs = float(diff.max()) if diff.size else 0.0
    rel = diff / np.maximum(np.abs(ref64), _REL_FLOOR)
    max_rel = float(rel.max()) if rel.size else 0.0
    agreement = None
    if classifier and ref.ndim == 2 and ref.shape[1] > 1:
        agreement = float(np.mean(ref.argmax(axis=1) == cand.argmax(axis=1)))
    fraction = float(mismatched.mean()) if mismatched.size else 0.0
    return OutputParity(name, tuple(ref.shape), max_abs, max_rel, fraction, agreement, fraction == 0.0)


def compare(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    tol: Tolerance = Tolerance(),
    classifier: bool = False,
    batch_size: int = 0,
) -> ParityReport:
    """Compare candidate outputs with reference outputs, matched by position of their names."""
    if len(reference) != len(candidate):
        raise ValueError(f"reference has {len(reference)} outputs, candidate {len(candidate)}")
    outputs = tuple(
        compare_output(ref_name, reference[ref_name], candidate[cand_name], tol, classifier)
        for ref_name, cand_name in zip(reference, candidate)
    )
    return ParityReport(batch_size, tol, outputs)
