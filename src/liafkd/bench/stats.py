"""Mean +- std over seeds, and the paired-seed difference against a baseline.

Paired by seed: the seeds that both a method and its baseline ran give per-seed
differences d_s = method_s - baseline_s (pairing cancels what a seed changes for every
method alike: initialisation, data order, augmentation). Their mean comes with

- a 95% confidence interval, mean +- t_{0.975, n-1} * std(d) / sqrt(n) (Student t,
  std with n - 1), and
- the two-sided p-value of the paired t-test of mean(d) = 0,

and the difference is *beyond noise* when the interval excludes 0 (equivalently
p < 0.05). Both need n >= 2. The t distribution is computed here (the regularized
incomplete beta function by its continued fraction) rather than taken from scipy,
which liafkd does not otherwise need.
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


CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedDelta:
    mean: float
    std: float | None
    n: int
    deltas: tuple[float, ...]
    ci: tuple[float, float] | None  # the 95% confidence interval of the mean; None when n < 2
    p_value: float | None  # two-sided paired t-test; None when n < 2

    @property
    def beyond_noise(self) -> bool | None:
        """The confidence interval excludes 0; None with one seed."""
        if self.ci is None:
            return None
        return self.ci[0] > 0 or self.ci[1] < 0


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
    """Per-seed differences method - baseline over the seeds both have, with the
    confidence interval and p-value of their mean."""
    seeds = sorted(s for s in method if method[s] is not None and baseline.get(s) is not None)
    if not seeds:
        return None
    deltas = tuple(float(method[s]) - float(baseline[s]) for s in seeds)
    n = len(deltas)
    mean = statistics.fmean(deltas)
    if n < 2:
        return PairedDelta(mean, None, n, deltas, None, None)
    std = statistics.stdev(deltas)
    se = std / math.sqrt(n)
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * se
    if se == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
    else:
        p = t_two_sided_p(mean / se, n - 1)
    return PairedDelta(mean, std, n, deltas, (mean - half, mean + half), p)


# --- Student's t distribution ---------------------------------------------------------


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for 0 <= x <= 1 and a, b > 0
    (its continued fraction by the modified Lentz method, as in Numerical Recipes 6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below this point
        return 1.0 - regularized_beta(1.0 - x, b, a)
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    return math.exp(log_front) * _beta_fraction(x, a, b) / a


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 1000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return result


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for T ~ Student t with `df` degrees of freedom."""
    x, complement = df / (df + t * t), t * t / (df + t * t)
    if complement < x:  # small |t|: x rounds towards 1, so work from its complement
        return 1.0 - regularized_beta(complement, 0.5, df / 2.0)
    return regularized_beta(x, df / 2.0, 0.5)


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for T ~ Student t with `df` degrees of freedom."""
    tail = t_two_sided_p(t, df) / 2.0
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The t with P(T <= t) = p, 0 < p < 1 (bisection on t_cdf to 1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must lie in (0, 1), got {p}")
    if df < 1:
        raise ValueError(f"t_quantile: df must be at least 1, got {df}")
    lo, hi = -1.0, 1.0
    while t_cdf(lo, df) > p:
        lo *= 2.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    while hi - lo > 1e-12 * max(1.0, abs(hi)):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


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
