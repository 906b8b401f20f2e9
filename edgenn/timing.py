"""The one timing harness: calls made in interleaved rounds of blocks, each call timed alone.

bench's sweeps and quantize's latency figures both measure here, so "median latency" and "speedup"
mean one thing in every report:
- each contender is warmed up, then the contenders run in rounds; in each round every one makes a
  block of back-to-back calls, the order rotating from round to round, so that drift (clock
  frequency, other tenants) hits all alike, and blocks keep one contender from running on caches
  another has just flushed (calls interleaved one by one made ORT's LeNet-5 about 28% slower
  beside eager PyTorch on a 2-core EPYC);
- each call is timed alone with perf_counter_ns around exactly the call, the garbage collector
  paused (as `timeit` does);
- the process CPU time of each block is read between blocks, never inside a timed call.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CLOCK = time.perf_counter_ns  # tests put a fake clock here to inject timings
MIN_ROUNDS = 6  # with a time budget, at least this many rounds run, even past the budget


def plan_rounds(
    per_call_seconds: Sequence[float], runs: int | None, seconds: float, rounds: int
) -> list[tuple[int, ...]]:
    """Calls per contender in each round: [(calls of contender 0, calls of contender 1, ...), ...].

    With `runs`, each contender makes exactly `runs` calls spread over min(rounds, runs) rounds.
    With a time budget, each gets an equal share of `seconds` at its warm-up speed, in `rounds`
    rounds (fewer when the slowest fits fewer calls, never fewer than MIN_ROUNDS).
    """
    k = len(per_call_seconds)
    if runs is not None:
        count = min(rounds, runs)
        return [(runs // count + (1 if r < runs % count else 0),) * k for r in range(count)]
    share = seconds / k
    fits = [max(1, int(share / t)) if t > 0 else 1 for t in per_call_seconds]
    count = max(min(rounds, min(fits)), min(MIN_ROUNDS, rounds))
    return [tuple(max(1, f // count) for f in fits)] * count


@dataclass(frozen=True)
class Rounds:
    """What run_rounds measured, per contender."""

    times: list[np.ndarray]  # ns per call, in the order made
    bounds: list[list[int]]  # offsets into times where each round's block starts (and the last ends)
    cpu_ns: list[int]  # process CPU time (all threads) over the contender's blocks, read between blocks

    def round_medians(self, contender: int) -> list[float]:
        t, b = self.times[contender], self.bounds[contender]
        return [float(np.median(t[start:end])) for start, end in zip(b[:-1], b[1:], strict=True)]

    def median_seconds(self, contender: int) -> float:
        return float(np.median(self.times[contender])) / 1e9


def run_rounds(calls: Sequence[Callable[[], Any]], blocks: Sequence[Sequence[int]]) -> Rounds:
    """Time the calls in rounds, rotating who goes first in each round."""
    k = len(calls)
    times = [np.empty(sum(b[v] for b in blocks), dtype=np.int64) for v in range(k)]
    bounds: list[list[int]] = [[0] for _ in range(k)]
    cpu_ns = [0] * k
    cpu_clock = time.process_time_ns
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r, sizes in enumerate(blocks):
            for j in range(k):
                v = (r + j) % k
                cpu_start = cpu_clock()  # outside the timed calls: a CPU clock read is a system call
                _time_block(calls[v], times[v], bounds[v][-1], sizes[v])
                cpu_ns[v] += cpu_clock() - cpu_start
                bounds[v].append(bounds[v][-1] + sizes[v])
    finally:
        if was_enabled:
            gc.enable()
    return Rounds(times, bounds, cpu_ns)


def time_calls(call: Callable[[], Any], count: int) -> np.ndarray:
    """`count` calls, each timed alone (ns)."""
    times = np.empty(count, dtype=np.int64)
    _time_block(call, times, 0, count)
    return times


def warm_seconds(call: Callable[[], Any], count: int) -> float:
    """Warm a call up `count` times; the median of the second half of those calls, in seconds (what
    plan_rounds takes), or 0.0 where there were none."""
    if count < 1:
        return 0.0
    warm = time_calls(call, count)
    return float(np.median(warm[len(warm) // 2 :])) / 1e9


def side_by_side(
    calls: Sequence[Callable[[], Any]], warmup: int, runs: int | None, seconds: float, rounds: int
) -> Rounds:
    """Warm each call up, then time them all in interleaved rounds: the harness in one call."""
    per_call = [warm_seconds(call, warmup) for call in calls]
    return run_rounds(calls, plan_rounds(per_call, runs, seconds, rounds))


def _time_block(call: Callable[[], Any], out: np.ndarray, start: int, count: int) -> None:
    # The lean loop: nothing but the call between the two clock reads. CLOCK is looked up here, per
    # block, so that a clock put in by a test is the one used.
    clock = CLOCK
    for i in range(start, start + count):
        t0 = clock()
        call()
        out[i] = clock() - t0
