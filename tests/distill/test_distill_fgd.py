import pytest
import torch
from distill_reference import attention_term, focal_terms, plain_global_term

from liafkd.distill.fgd import FGD
from liafkd.distill.mimic import FeatureMimic


def _value(losses, key):
    return losses[key].item()


def test_fgd_golden_values(make_inputs):
    inputs = make_inputs()
    method = FGD(4, 2, alpha_fg=2.0, beta_bg=3.0, gamma_att=5.0, lambda_global=7.0)
    losses = method(inputs)
    fg, bg, _ = focal_terms(inputs)
    assert set(losses) == {"loss_fgd_fg", "loss_fgd_bg", "loss_fgd_att", "loss_fgd_global"}
    assert _value(losses, "loss_fgd_fg") == pytest.approx(2.0 * fg, rel=1e-5)
    assert _value(losses, "loss_fgd_bg") == pytest.approx(3.0 * bg, rel=1e-5)
    assert _value(losses, "loss_fgd_att") == pytest.approx(5.0 * attention_term(inputs), rel=1e-5)
    assert _value(losses, "loss_fgd_global") == pytest.approx(
        7.0 * plain_global_term(inputs), rel=1e-5
    )


def test_fgd_masks_follow_fgds_rule_by_default_center_on_request(make_inputs):
    inputs = make_inputs()
    fgd_rule = FGD(4, 2, alpha_fg=1.0, beta_bg=1.0)(inputs)
    center = FGD(4, 2, alpha_fg=1.0, beta_bg=1.0, mask_rule="center")(inputs)
    fg, bg, _ = focal_terms(inputs, rule="fgd")
    fg_center, bg_center, _ = focal_terms(inputs, rule="center")
    assert fgd_rule["loss_fgd_fg"].item() == pytest.approx(fg, rel=1e-5)
    assert fgd_rule["loss_fgd_bg"].item() == pytest.approx(bg, rel=1e-5)
    assert center["loss_fgd_fg"].item() == pytest.approx(fg_center, rel=1e-5)
    assert center["loss_fgd_bg"].item() == pytest.approx(bg_center, rel=1e-5)
    assert fg != pytest.approx(fg_center, rel=1e-3)


def test_fgd_paper_defaults_and_no_global_when_lambda_zero(make_inputs):
    method = FGD(4, 2)
    assert (method.alpha_fg, method.beta_bg, method.gamma_att, method.lambda_global) == (
        1e-3,
        5e-4,
        5e-4,
        5e-6,
    )
    losses = FGD(4, 2, lambda_global=0.0)(make_inputs())
    assert "loss_fgd_global" not in losses
    assert not any(
        n.startswith("relations") for n, _ in FGD(4, 2, lambda_global=0.0).named_parameters()
    )


def test_no_instances_fg_exactly_zero(make_inputs):
    inputs = make_inputs(boxes_per_image=[[], []])
    losses = FGD(4, 2)(inputs)
    assert losses["loss_fgd_fg"].item() == 0.0
    assert all(torch.isfinite(v) for v in losses.values())
    _, bg, _ = focal_terms(inputs)
    assert losses["loss_fgd_bg"].item() == pytest.approx(5e-4 * bg, rel=1e-5)
    sum(losses.values()).backward()
    assert all(torch.isfinite(f.grad).all() for f in inputs.student_feats)


def test_mixed_batch_image_without_instances(make_inputs):
    inputs = make_inputs(boxes_per_image=[[], [[8.0, 8.0, 40.0, 24.0], [0.0, 0.0, 8.0, 8.0]]])
    losses = FGD(4, 2, alpha_fg=1.0, beta_bg=1.0)(inputs)
    fg, bg, _ = focal_terms(inputs)
    assert losses["loss_fgd_fg"].item() == pytest.approx(fg, rel=1e-5)
    assert losses["loss_fgd_bg"].item() == pytest.approx(bg, rel=1e-5)
    # image 0's foreground gradient is zero: only its background term touches it
    only_fg = FGD(4, 2, alpha_fg=1.0, beta_bg=0.0, gamma_att=0.0, lambda_global=0.0)(inputs)
    only_fg["loss_fgd_fg"].backward()
    assert inputs.student_feats[0].grad[0].abs().sum() == 0
    assert inputs.student_feats[0].grad[1].abs().sum() > 0


def test_gradient_reaches_the_student_and_the_gcblocks(make_inputs):
    # the teacher's side is detached by the Distiller, not by the method: tested for
    # every method in test_distill_config_distiller.py
    inputs = make_inputs()
    method = FGD(4, 2)
    sum(method(inputs).values()).backward()
    assert all(f.grad.abs().sum() > 0 for f in inputs.student_feats)
    # the GcBlocks belong to the method and do learn
    assert method.relations_teacher[0].channel_add[-1].weight.grad is not None


def test_mimic_golden(make_inputs):
    inputs = make_inputs()
    expected = 0.0
    for s, t in zip(inputs.student_feats, inputs.teacher_feats, strict=True):
        values = [
            (a - b) ** 2 for a, b in zip(s.flatten().tolist(), t.flatten().tolist(), strict=True)
        ]
        expected += sum(values) / len(values)
    assert FeatureMimic(0.5)(inputs)["loss_mimic"].item() == pytest.approx(0.5 * expected, rel=1e-5)
