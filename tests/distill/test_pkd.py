"""PKD: hand-checked values, invariance to per-channel scale and shift, gradients."""

import pytest
import torch

from liafkd.distill.config import load_distill_config
from liafkd.distill.distiller import build_distiller
from liafkd.distill.pkd import PKD, pearson_loss, standardize_channels
from liafkd.models.outputs import DetectorOutput

TEACHER = {"config": "teacher.yaml", "checkpoint": "teacher.pth"}


def level(*channels: list[float]) -> torch.Tensor:
    """[1, C, 1, W] from one row of values per channel."""
    return torch.tensor(channels, dtype=torch.float32)[None, :, None, :]


def test_standardize_channels_population_std():
    z = standardize_channels(level([1, 2, 3, 4], [5, 5, 5, 5]))
    scale = 1.25**0.5  # population std of 1, 2, 3, 4
    expected = torch.tensor([-1.5, -0.5, 0.5, 1.5]) / (scale + 1e-6)
    assert torch.allclose(z[0, 0, 0], expected)
    assert torch.equal(z[0, 1, 0], torch.zeros(4))  # constant channel -> 0, not NaN


def test_hand_checked_values():
    s = level([1, 2, 3, 4])
    # centred s = [-1.5, -0.5, 0.5, 1.5]; t = [1, 2, 4, 3]: cov 4 / var 5 -> r = 0.8;
    # z_s - z_t = [0, 0, -1, 1] / sqrt(1.25): mean square 0.4, halved 0.2 = 1 - r
    assert pearson_loss(s, level([1, 2, 4, 3])).item() == pytest.approx(0.2, rel=1e-5)
    assert pearson_loss(s, level([4, 3, 2, 1])).item() == pytest.approx(2.0, rel=1e-5)  # r = -1
    assert pearson_loss(s, s).item() == pytest.approx(0.0, abs=1e-10)
    # two channels (r = 0.8 and r = -1): mean over channels of 1 - r
    two = pearson_loss(level([1, 2, 3, 4], [1, 2, 3, 4]), level([1, 2, 4, 3], [4, 3, 2, 1]))
    assert two.item() == pytest.approx((0.2 + 2.0) / 2, rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_invariant_to_per_channel_scale_and_shift(seed):
    gen = torch.Generator().manual_seed(seed)
    s, t = torch.randn(2, 5, 4, 6, generator=gen), torch.randn(2, 5, 4, 6, generator=gen)
    scale = torch.rand(1, 5, 1, 1, generator=gen) * 10 + 0.1
    shift = torch.randn(1, 5, 1, 1, generator=gen) * 100
    base = pearson_loss(s, t).item()
    assert pearson_loss(s * scale + shift, t).item() == pytest.approx(base, rel=1e-4)
    assert pearson_loss(s, t * scale - shift).item() == pytest.approx(base, rel=1e-4)
    # a sign flip turns every r into -r: the two losses add up to mean_c 2 = 2
    assert (base + pearson_loss(-s, t).item()) == pytest.approx(2.0, rel=1e-5)


def test_single_cell_level_is_finite():
    loss = pearson_loss(torch.randn(1, 3, 1, 1), torch.randn(1, 3, 1, 1))
    assert loss.item() == 0.0


def test_shape_mismatch_is_clear():
    with pytest.raises(ValueError, match="PKD: student features"):
        pearson_loss(torch.randn(1, 3, 2, 2), torch.randn(1, 4, 2, 2))


def test_method_through_distiller_weights_levels_and_spares_teacher(make_inputs):
    inputs = make_inputs()
    cfg = load_distill_config({"method": "pkd", "teacher": TEACHER, "pkd": {"weight": 2.0}}, "x")
    distiller = build_distiller(cfg, 4, 4, 2)  # identity adapters
    assert isinstance(distiller.method, PKD)
    teacher_feats = [f.clone().requires_grad_() for f in inputs.teacher_feats]
    built = distiller.build_inputs(
        _output(inputs.student_feats), _output(teacher_feats), inputs.targets, (32, 48), [8, 16]
    )
    losses = distiller.method(built)
    expected = 2.0 * sum(
        pearson_loss(s, t) for s, t in zip(inputs.student_feats, inputs.teacher_feats, strict=True)
    )
    assert set(losses) == {"loss_pkd"}
    assert losses["loss_pkd"].item() == pytest.approx(expected.item(), rel=1e-6)
    losses["loss_pkd"].backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in inputs.student_feats)
    assert all(f.grad is None for f in teacher_feats)


def _output(feats):
    return DetectorOutput(losses={}, feats=feats, head=None, assign=None, instances=None)
