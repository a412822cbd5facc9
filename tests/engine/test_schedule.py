import pytest

from liafkd.config import ScheduleConfig
from liafkd.engine.schedule import lr_factor


def test_warmup_is_linear_from_ratio_to_one():
    s = ScheduleConfig(epochs=2, warmup_iters=10, warmup_ratio=0.1, policy="step", steps=[])
    assert lr_factor(0, 100, s) == pytest.approx(0.1)
    assert lr_factor(5, 100, s) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(10, 100, s) == pytest.approx(1.0)


def test_step_decay_by_epoch():
    s = ScheduleConfig(epochs=12, warmup_iters=0, policy="step", steps=[8, 11], gamma=0.1)
    assert lr_factor(7 * 10 + 9, 10, s) == pytest.approx(1.0)
    assert lr_factor(8 * 10, 10, s) == pytest.approx(0.1)
    assert lr_factor(11 * 10, 10, s) == pytest.approx(0.01)


def test_cosine_ends_at_zero_and_halves_midway():
    s = ScheduleConfig(epochs=4, warmup_iters=0, policy="cosine")
    assert lr_factor(0, 10, s) == pytest.approx(1.0)
    assert lr_factor(20, 10, s) == pytest.approx(0.5)
    assert lr_factor(40, 10, s) == pytest.approx(0.0, abs=1e-12)
