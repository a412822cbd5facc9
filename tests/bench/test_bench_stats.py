import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liafkd.bench.stats import paired_delta, pooled_moments, summarize


def test_summarize_hand_checked():
    s = summarize([40.0, 40.5, 41.5, None])
    assert s.n == 3
    assert s.mean == pytest.approx(122.0 / 3)
    # deviations -2/3, -1/6, 5/6: squares sum to 7/6; / (n - 1) = 7/12
    assert s.std == pytest.approx(math.sqrt(7 / 12))


def test_summarize_one_value_has_no_std_and_nothing_is_none():
    assert summarize([3.0]).std is None
    assert summarize([None, None]) is None


def test_paired_delta_hand_checked_beyond_noise():
    method = {0: 41.0, 1: 42.0, 2: 43.0}
    baseline = {0: 40.0, 1: 40.5, 2: 41.5}
    d = paired_delta(method, baseline)
    assert d.deltas == (1.0, 1.5, 1.5)
    assert d.mean == pytest.approx(4.0 / 3)
    assert d.std == pytest.approx(math.sqrt(1 / 12))  # deviations -1/3, 1/6, 1/6
    # 2 * std / sqrt(3) = 0.333 < 1.333, and every delta is positive
    assert d.beyond_noise is True


def test_paired_delta_within_noise():
    d = paired_delta({0: 41.0, 1: 40.0, 2: 42.0}, {0: 40.0, 1: 40.5, 2: 41.0})
    # deltas 1.0, -0.5, 1.0: mean 0.5, std 0.866, 2 SE = 1.0 > 0.5
    assert d.mean == pytest.approx(0.5)
    assert d.beyond_noise is False


def test_paired_delta_needs_every_seed_to_agree_in_sign():
    # mean 4.0, std 2.30, 2 SE = 2.05: the t-like rule passes, one seed disagrees
    deltas = [5.0, 5.2, 4.8, 5.1, -0.1]
    method = {s: 10.0 + d for s, d in enumerate(deltas)}
    baseline = dict.fromkeys(range(5), 10.0)
    d = paired_delta(method, baseline)
    assert abs(d.mean) > 2 * d.std / math.sqrt(d.n)  # the t-like rule alone would say yes
    assert d.beyond_noise is False


def test_paired_delta_pairs_by_seed_only():
    d = paired_delta({0: 2.0, 1: 3.0, 7: 100.0}, {0: 1.0, 1: 1.0, 2: 5.0})
    assert d.n == 2 and d.deltas == (1.0, 2.0)
    one = paired_delta({0: 2.0}, {0: 1.0, 1: 1.0})
    assert one.n == 1 and one.std is None and one.beyond_noise is None
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
