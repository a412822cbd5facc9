"""Mean +- std over seeds, and the paired-seed delta against the baseline.

"Beyond noise" (our rule, an indicator rather than a significance test): the seeds
that both a method and `none` ran give per-seed deltas d_s = method_s - none_s. The
delta is beyond noise when

    |mean(d)| > 2 * std(d) / sqrt(n)   (std with n - 1; a paired t-like test at 2 SE)

and every d_s has the sign of the mean (a sign-test condition: with 2-3 seeds the
t-like rule alone is too easily met by chance). It needs n >= 2; with one seed the
indicator is undefined. Pairing by seed cancels what a seed changes for every method
alike (initialisation, data order, augmentation).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float | None  # sample std (n - 1); None for one value
    n: int


@dataclass(frozen=True)
class PairedDelta:
    mean: float
    std: float | None
    n: int
    deltas: tuple[float, ...]
    beyond_noise: bool | None  # None when n < 2


def summarize(values: Iterable[float | None]) -> Summary | None:
    """Mean and sample std of the values that are not None; None if there are none."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    std = statistics.stdev(present) if len(present) > 1 else None
    return Summary(statistics.fmean(present), std, len(present))


def paired_delta(
    method: Mapping[int, float | None], baseline: Mapping[int, float | None]
) -> PairedDelta | None:
    """Per-seed differences method - baseline over the seeds both have."""
    seeds = sorted(s for s in method if method[s] is not None and baseline.get(s) is not None)
    if not seeds:
        return None
    deltas = tuple(float(method[s]) - float(baseline[s]) for s in seeds)
    n = len(deltas)
    mean = statistics.fmean(deltas)
    if n < 2:
        return PairedDelta(mean, None, n, deltas, None)
    std = statistics.stdev(deltas)
    same_sign = all(d * mean > 0 for d in deltas)
    beyond = abs(mean) > 2 * std / math.sqrt(n) and same_sign
    return PairedDelta(mean, std, n, deltas, beyond)


def pooled_moments(parts: Iterable[Mapping[str, float]]) -> Summary | None:
    """Mean and std of the values behind several {"n", "sum", "sum_sq"} summaries."""
    n = total = total_sq = 0.0
    for part in parts:
        n += part["n"]
        total += part["sum"]
        total_sq += part["sum_sq"]
    if n == 0:
        return None
    mean = total / n
    std = math.sqrt(max(0.0, (total_sq - n * mean * mean) / (n - 1))) if n > 1 else None
    return Summary(mean, std, int(n))
