import math

import pytest
import torch
from distill_reference import attention_term, focal_terms

from liafkd.distill.fgd import instance_losses
from liafkd.distill.ld import LocalizationDistillation
from liafkd.distill.liaf import LIAF


def _spread_selector(method: LIAF, seed: int = 0) -> None:
    """Give the zero-initialised last layer values so the logits differ."""
    gen = torch.Generator().manual_seed(seed)
    last = method.selector.score[-1]
    with torch.no_grad():
        last.weight.copy_(torch.randn(last.weight.shape, generator=gen))


def _softmax(values, tau):
    exps = [math.exp(v / tau) for v in values]
    return [e / sum(exps) for e in exps]


def test_liaf_starts_uniform_equal_to_sum_of_instance_terms(make_inputs):
    inputs = make_inputs()
    method = LIAF(4, 2, lam=0.5, alpha_fg=2.0, beta_bg=3.0, gamma_att=5.0, entropy_beta=0.1)
    losses = method(inputs)
    fg, bg, per_instance = focal_terms(inputs)
    assert set(losses) == {"loss_liaf_fg", "loss_liaf_bg", "loss_liaf_att", "loss_liaf_entropy"}
    assert losses["loss_liaf_fg"].item() == pytest.approx(2.0 * sum(per_instance), rel=1e-5)
    assert losses["loss_liaf_bg"].item() == pytest.approx(3.0 * bg, rel=1e-5)
    assert losses["loss_liaf_att"].item() == pytest.approx(5.0 * attention_term(inputs), rel=1e-5)
    assert losses["loss_liaf_entropy"].item() == pytest.approx(-0.1 * math.log(3), rel=1e-6)


def test_liaf_golden_with_learned_logits(make_inputs):
    inputs = make_inputs()
    method = LIAF(4, 2, alpha_fg=1.0, lam=0.3, tau_w=0.7, entropy_beta=0.2)
    _spread_selector(method)
    losses = method(inputs)
    logits = [r["logit"] for r in method.instance_records()]
    assert len(set(logits)) == 3
    probs = _softmax(logits, 0.7)
    weights = [0.7 + 0.3 * 3 * p for p in probs]
    _, _, per_instance = focal_terms(inputs)
    expected = sum(w * v for w, v in zip(weights, per_instance, strict=True))
    assert losses["loss_liaf_fg"].item() == pytest.approx(expected, rel=1e-5)
    entropy = sum(p * math.log(p) for p in probs)
    assert losses["loss_liaf_entropy"].item() == pytest.approx(0.2 * entropy, rel=1e-5)
    assert [r["weight"] for r in method.instance_records()] == pytest.approx(weights, rel=1e-5)


def _selector_grad(objective: str, inputs_factory) -> torch.Tensor:
    torch.manual_seed(0)
    method = LIAF(4, 2, lam=0.5, alpha_fg=1.0, objective=objective, entropy_beta=0.0)
    _spread_selector(method)
    method(inputs_factory())["loss_liaf_fg"].backward()
    return method.selector.score[0].weight.grad


def test_adversarial_reverses_the_selector_gradient(make_inputs):
    joint = _selector_grad("joint", make_inputs)
    adversarial = _selector_grad("adversarial", make_inputs)
    assert joint.abs().sum() > 0
    assert torch.allclose(adversarial, -joint, atol=1e-7)


@pytest.mark.parametrize("objective,sign", [("joint", 1.0), ("adversarial", -1.0)])
def test_logit_gradient_favours_small_loss_under_joint(make_inputs, objective, sign):
    # dL/dz_k = alpha * lam * N * p_k * (L_k - sum_i p_i L_i) / tau_w; at uniform p that is
    # alpha * lam * (L_k - mean L) / tau_w: descent (joint) moves weight to instances with
    # small imitation loss (the entropy term exists against this); adversarial the reverse.
    inputs = make_inputs()
    method = LIAF(4, 2, alpha_fg=2.0, lam=0.5, tau_w=0.5, objective=objective, entropy_beta=0.0)
    captured = {}

    def keep(_module, _inputs, out):
        out.retain_grad()
        captured["logits"] = out

    method.selector.register_forward_hook(keep)
    method(inputs)["loss_liaf_fg"].backward()
    _, _, per_instance = focal_terms(inputs)
    mean = sum(per_instance) / 3
    expected = [sign * 2.0 * 0.5 * (v - mean) / 0.5 for v in per_instance]
    assert captured["logits"].grad.tolist() == pytest.approx(expected, rel=1e-4, abs=1e-9)


def test_aligned_objective(make_inputs):
    inputs = make_inputs()
    method = LIAF(4, 2, lam=0.5, objective="aligned", entropy_beta=0.0, align_weight=2.0)
    assert "det_grads" in method.needs
    with pytest.raises(ValueError, match="det_grads"):
        method(inputs)
    inputs.det_grads = [torch.randn_like(f) for f in inputs.student_feats]
    losses = method(inputs)
    assert losses["loss_liaf_align"].item() > 0
    # the imitation term does not train the selector under `aligned`
    losses["loss_liaf_fg"].backward(retain_graph=True)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in method.selector.parameters())
    losses["loss_liaf_align"].backward()
    assert method.selector.score[-1].weight.grad.abs().sum() > 0
    assert "alignment" in method.instance_records()[0]


def _train_selector(method: LIAF, inputs, term: str, steps: int = 40) -> list[float]:
    """A few SGD steps of the selector alone on `term`; the weights it then gives."""
    optimizer = torch.optim.SGD(method.selector.parameters(), lr=0.5)
    for _ in range(steps):
        optimizer.zero_grad()
        method(inputs)[term].backward()
        optimizer.step()
    method(inputs)
    return [r["weight"] for r in method.instance_records()]


def test_aligned_weights_an_opposing_instance_below_an_aligned_one(make_inputs):
    # dL_det/dF_S = dL_fg_0/dF_S - dL_fg_2/dF_S: a step imitating instance 0 lowers the
    # detection loss, one imitating instance 2 raises it (disjoint masks: instance 2 is
    # alone on image 1). The selector must end with w_0 > w_2; before the sign fix
    # (r_i = -<.,.>) it learned the reverse.
    inputs = make_inputs()
    method = LIAF(4, 2, lam=0.5, objective="aligned", entropy_beta=0.0)
    per_instance = instance_losses(
        method.level_errors(inputs), method.masks(inputs), inputs.batch_size
    )
    fg = [
        torch.autograd.grad(per_instance[i], inputs.student_feats, retain_graph=True)
        for i in (0, 2)
    ]
    inputs.det_grads = [a - b for a, b in zip(*fg, strict=True)]
    weights = _train_selector(method, inputs, "loss_liaf_align")
    scores = [r["alignment"] for r in method.instance_records()]
    assert scores[0] > 0 > scores[2]
    assert weights[0] > 1.0 > weights[2]


def test_liaf_no_instances(make_inputs):
    inputs = make_inputs(boxes_per_image=[[], []], teacher_loss=[])
    for objective in ("joint", "adversarial", "aligned"):
        method = LIAF(4, 2, lam=0.5, objective=objective, delta_global=1e-3)
        inputs.det_grads = [torch.randn_like(f) for f in inputs.student_feats]
        losses = method(inputs)
        assert losses["loss_liaf_fg"].item() == 0.0
        assert losses["loss_liaf_entropy"].item() == 0.0
        assert all(torch.isfinite(v) for v in losses.values())
        assert method.instance_records() == []
    sum(losses.values()).backward()
    assert all(torch.isfinite(f.grad).all() for f in inputs.student_feats)


def test_liaf_mixed_batch(make_inputs):
    boxes = [[[0.0, 0.0, 16.0, 16.0]], []]
    inputs = make_inputs(boxes_per_image=boxes, teacher_loss=[0.3])
    losses = LIAF(4, 2, lam=0.5, alpha_fg=1.0, beta_bg=1.0)(inputs)
    fg, bg, per_instance = focal_terms(inputs)
    assert losses["loss_liaf_fg"].item() == pytest.approx(per_instance[0], rel=1e-5)
    assert losses["loss_liaf_bg"].item() == pytest.approx(bg, rel=1e-5)


def test_liaf_ld_scales_ld_by_instance_weights(make_inputs):
    inputs = make_inputs()
    ld = LocalizationDistillation(weight=0.25, temperature=10.0)
    method = LIAF(4, 2, lam=0.5, ld=ld)
    assert {"head", "assign", "instances", "feats"} <= method.needs
    uniform = method(inputs)["loss_liaf_ld"].item()
    assert uniform == pytest.approx(ld(inputs)["loss_ld"].item(), rel=1e-6)
    _spread_selector(method)
    losses = method(inputs)
    weights = torch.tensor([r["weight"] for r in method.instance_records()])
    gt_index = inputs.student_assign.gt_index
    location_weights = torch.where(gt_index >= 0, weights[gt_index.clamp_min(0)], 1.0)
    expected = ld.loss(inputs, location_weights).item()
    assert losses["loss_liaf_ld"].item() == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(uniform)


def test_liaf_stats(make_inputs):
    # the teacher's side is detached by the Distiller: test_distill_config_distiller.py
    method = LIAF(4, 2, lam=0.5, delta_global=1e-3)
    _spread_selector(method)
    for seed in (0, 1):
        sum(method(make_inputs(seed=seed)).values()).backward()
    stats = method.stats()
    assert stats["num_instances"] == 6
    assert stats["weight_mean"] == pytest.approx(1.0)
    assert stats["weight_min"] >= 0.5
    assert 0 < stats["weight_entropy_ratio"] <= 1
    row = method.instance_records()[0]
    assert {"image", "box", "label", "size", "weight", "logit", "level"} <= set(row)
    assert row["size"] == pytest.approx(16.0)


def test_lam_out_of_range():
    with pytest.raises(ValueError, match="lam"):
        LIAF(4, 2, lam=1.5)


# --- lam 0, the shipped default: uniform weights, no selector -------------------------


def test_lam_zero_is_the_class_default_and_builds_no_selector():
    method = LIAF(4, 2)
    assert method.lam == 0.0 and method.selector is None
    assert not any("selector" in name for name, _ in method.named_parameters())
    assert method.needs == {"feats"}  # no instance states: nothing builds descriptors


def test_lam_zero_loss_is_the_plain_per_instance_sum(make_inputs, monkeypatch):
    def no_descriptors(*_args, **_kwargs):
        raise AssertionError("lam 0 must not build descriptors (RoIAlign, selector MLP)")

    monkeypatch.setattr("liafkd.distill.liaf.build_descriptors", no_descriptors)
    inputs = make_inputs()
    inputs.teacher_instances = inputs.student_instances = None  # not gathered at lam 0
    method = LIAF(4, 2, alpha_fg=2.0, beta_bg=3.0, gamma_att=5.0, entropy_beta=0.1)
    losses = method(inputs)
    assert set(losses) == {"loss_liaf_fg", "loss_liaf_bg", "loss_liaf_att"}  # no entropy
    _, bg, per_instance = focal_terms(inputs)
    assert len(per_instance) == 3
    assert losses["loss_liaf_fg"].item() == pytest.approx(2.0 * sum(per_instance), rel=1e-5)
    assert losses["loss_liaf_bg"].item() == pytest.approx(3.0 * bg, rel=1e-5)
    assert losses["loss_liaf_att"].item() == pytest.approx(5.0 * attention_term(inputs), rel=1e-5)
    masks = method.masks(inputs)
    own = instance_losses(method.level_errors(inputs), masks, inputs.batch_size)
    weights, terms = method._select(inputs, masks, own)
    assert terms == {} and torch.equal(weights, torch.ones(3))
    assert torch.equal(losses["loss_liaf_fg"], 2.0 * own.sum())
    assert method.stats() == {} and method.instance_records() == []  # no weight log


def test_lam_zero_liaf_ld_is_plain_ld(make_inputs):
    inputs = make_inputs()
    ld = LocalizationDistillation(weight=0.25, temperature=10.0)
    method = LIAF(4, 2, ld=ld)
    assert "instances" not in method.needs
    assert torch.equal(method(inputs)["loss_liaf_ld"], ld(inputs)["loss_ld"])


@pytest.mark.parametrize("objective", ["aligned", "meta"])
def test_learnt_objectives_refuse_lam_zero(objective):
    with pytest.raises(ValueError, match=f"'{objective}' at lam 0.*set lam > 0"):
        LIAF(4, 2, objective=objective)
    LIAF(4, 2, objective=objective, lam=0.5)  # with a weighting to learn they build
