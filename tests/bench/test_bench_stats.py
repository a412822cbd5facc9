import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liafkd.bench.stats import (
    paired_delta,
    pooled_moments,
    regularized_beta,
    summarize,
    t_cdf,
    t_quantile,
    t_two_sided_p,
)


def test_summarize_hand_checked():
    s = summarize([40.0, 40.5, 41.5, None])
    assert s.n == 3
    assert s.mean == pytest.approx(122.0 / 3)
    # deviations -2/3, -1/6, 5/6: squares sum to 7/6; / (n - 1) = 7/12
    assert s.std == pytest.approx(math.sqrt(7 / 12))


def test_summarize_one_value_has_no_std_and_nothing_is_none():
    assert summarize([3.0]).std is None
    assert summarize([None, None]) is None


# t_{0.975, df}: a printed table of Student's t (two-sided 95%), three decimals
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 29: 2.045, 30: 2.042}  # fmt: skip


@pytest.mark.parametrize("df", sorted(T_975))
def test_t_quantile_matches_the_printed_table(df):
    assert t_quantile(0.975, df) == pytest.approx(T_975[df], abs=5e-4)
    assert t_quantile(0.025, df) == pytest.approx(-T_975[df], abs=5e-4)


def test_t_distribution_closed_forms():
    # df 1 is the Cauchy distribution: P(|T| >= t) = 1 - 2 atan(t) / pi
    for t in (0.3, 1.0, 4.0, 50.0):
        assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 * math.atan(t) / math.pi, rel=1e-10)
    # df 2: P(T <= t) = 1/2 + t / (2 sqrt(t^2 + 2))
    for t in (-3.0, -0.5, 0.0, 0.7, 8.0):
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(t * t + 2)), rel=1e-10)
    # large df tends to the normal: P(|Z| >= 1.96) = 0.04999579
    assert t_two_sided_p(1.959964, 100000) == pytest.approx(0.05, abs=1e-5)


def test_regularized_beta_hand_checked():
    # I_x(1, 1) = x; I_x(a, 1) = x^a; I_x(2, 2) = 3x^2 - 2x^3
    assert regularized_beta(0.3, 1.0, 1.0) == pytest.approx(0.3, rel=1e-12)
    assert regularized_beta(0.6, 3.5, 1.0) == pytest.approx(0.6**3.5, rel=1e-12)
    assert regularized_beta(0.8, 2.0, 2.0) == pytest.approx(3 * 0.64 - 2 * 0.512, rel=1e-12)
    assert regularized_beta(0.0, 2.0, 3.0) == 0.0 and regularized_beta(1.0, 2.0, 3.0) == 1.0


@given(st.floats(0.001, 0.999), st.integers(1, 60))
def test_t_quantile_inverts_the_cdf(p, df):
    assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-10)
    assert t_quantile(1 - p, df) == pytest.approx(-t_quantile(p, df), abs=1e-8)


def test_t_quantile_refuses_what_has_no_quantile():
    with pytest.raises(ValueError, match="p must lie in"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="df must be"):
        t_quantile(0.5, 0)


def test_paired_delta_hand_checked_beyond_noise():
    method = {0: 41.0, 1: 42.0, 2: 43.0}
    baseline = {0: 40.0, 1: 40.5, 2: 41.5}
    d = paired_delta(method, baseline)
    assert d.deltas == (1.0, 1.5, 1.5)
    assert d.mean == pytest.approx(4.0 / 3)
    assert d.std == pytest.approx(math.sqrt(1 / 12))  # deviations -1/3, 1/6, 1/6
    # SE = std / sqrt(3) = 1/6; CI = 4/3 +- 4.3027 / 6; t = (4/3) / (1/6) = 8 on 2 df,
    # p = 1 - 8 / sqrt(66) by the df-2 closed form
    assert d.ci[0] == pytest.approx(4 / 3 - 4.302653 / 6, abs=1e-6)
    assert d.ci[1] == pytest.approx(4 / 3 + 4.302653 / 6, abs=1e-6)
    assert d.p_value == pytest.approx(1 - 8 / math.sqrt(66), rel=1e-9)
    assert d.beyond_noise is True


def test_paired_delta_within_noise():
    d = paired_delta({0: 41.0, 1: 40.0, 2: 42.0}, {0: 40.0, 1: 40.5, 2: 41.0})
    # deltas 1.0, -0.5, 1.0: mean 0.5, std sqrt(0.75), SE 0.5, t = 1 on 2 df
    assert d.mean == pytest.approx(0.5)
    assert d.p_value == pytest.approx(1 - 1 / math.sqrt(3), rel=1e-9)
    assert d.ci[0] < 0 < d.ci[1]
    assert d.beyond_noise is False


def test_beyond_noise_is_the_interval_excluding_zero_and_p_below_five_percent():
    deltas = (1.0, 1.5, 2.0)  # mean 1.5, std 0.5, SE 0.2887, t = 5.196
    d = paired_delta({s: 10 + x for s, x in enumerate(deltas)}, dict.fromkeys(range(3), 10.0))
    assert d.beyond_noise is True and d.p_value < 0.05
    # the old rule (|mean| > 2 SE and every seed agrees) said yes here; the interval
    # with 2 df (mean +- 4.30 SE) does not exclude 0
    close = (0.2, 1.5, 2.0)  # mean 1.233, std 0.929, SE 0.536, t = 2.30
    d = paired_delta({s: 10 + x for s, x in enumerate(close)}, dict.fromkeys(range(3), 10.0))
    assert abs(d.mean) > 2 * d.std / math.sqrt(d.n) and all(x > 0 for x in d.deltas)
    assert d.beyond_noise is False and d.p_value > 0.05


def test_paired_delta_pairs_by_seed_only():
    d = paired_delta({0: 2.0, 1: 3.0, 7: 100.0}, {0: 1.0, 1: 1.0, 2: 5.0})
    assert d.n == 2 and d.deltas == (1.0, 2.0)
    one = paired_delta({0: 2.0}, {0: 1.0, 1: 1.0})
    assert one.n == 1 and one.std is None and one.beyond_noise is None
    assert one.ci is None and one.p_value is None
    assert paired_delta({3: 1.0}, {0: 1.0}) is None


def test_pooled_moments_equal_the_moments_of_all_values():
    a, b = [0.5, 1.0, 1.5], [2.0, 3.0]
    parts = [{"n": len(v), "sum": sum(v), "sum_sq": sum(x * x for x in v)} for v in (a, b)]
    pooled = pooled_moments(parts)
    direct = summarize(a + b)
    assert pooled.n == 5
    assert pooled.mean == pytest.approx(direct.mean)
    assert pooled.std == pytest.approx(direct.std)
    assert pooled_moments([{"n": 0, "sum": 0.0, "sum_sq": 0.0}]) is None


@given(st.lists(st.floats(-100, 100), min_size=2, max_size=8), st.floats(-50, 50))
def test_a_constant_shift_is_beyond_noise_unless_zero(base, shift):
    baseline = dict(enumerate(base))
    method = {s: v + shift for s, v in baseline.items()}
    d = paired_delta(method, baseline)
    assert d.mean == pytest.approx(shift, abs=1e-9)
    if abs(shift) > 1e-6:
        assert d.beyond_noise is True
