from pathlib import Path

import pytest
import torch

from liafkd.config import ConfigError
from liafkd.distill.adapters import Adapters
from liafkd.distill.config import load_distill_config
from liafkd.distill.distiller import Distiller, build_distiller
from liafkd.distill.fgd import FGD, build_level_masks, instance_losses
from liafkd.distill.registry import CROSS_HEAD_METHODS, METHODS, build_method
from liafkd.distill.selector import alignment_scores
from liafkd.models.outputs import DetectorOutput, HeadOutputs

TEACHER = {"config": "teacher.yaml", "checkpoint": "teacher.pth"}


def test_unknown_key_names_its_path():
    raw = {"method": "liaf", "teacher": TEACHER, "liaf": {"selector": {"lamb": 0.3}}}
    with pytest.raises(ConfigError) as err:
        load_distill_config(raw, "exp.yaml")
    message = str(err.value)
    assert "exp.yaml: distill.liaf.selector.lamb: unknown key" in message
    assert "distill.liaf.selector.lam'" in message


def test_config_errors():
    with pytest.raises(ConfigError, match="distill.method"):
        load_distill_config({"method": "fgdd", "teacher": TEACHER}, "exp.yaml")
    with pytest.raises(ConfigError, match="teacher"):
        load_distill_config({"method": "fgd"}, "exp.yaml")
    with pytest.raises(ConfigError, match="distill.liaf.selector.lam"):
        load_distill_config(
            {"method": "liaf", "teacher": TEACHER, "liaf": {"selector": {"lam": 2}}}, "x"
        )
    with pytest.raises(ConfigError, match="distill: missing"):
        load_distill_config(None, "exp.yaml")
    assert load_distill_config({"method": "none"}, "exp.yaml").teacher is None


def test_defaults_and_relative_teacher_paths(tmp_path):
    cfg = load_distill_config({"method": "liaf+ld", "teacher": TEACHER}, "exp.yaml", tmp_path)
    assert Path(cfg.teacher.config) == tmp_path / "teacher.yaml"
    assert (cfg.fgd.alpha_fg, cfg.fgd.beta_bg, cfg.fgd.gamma_att, cfg.fgd.lambda_global) == (
        1e-3,
        5e-4,
        5e-4,
        5e-6,
    )
    assert (cfg.ld.weight, cfg.ld.temperature) == (0.25, 10.0)
    # frozen by cpu-synthetic-v2-tune: uniform instance weights
    assert cfg.liaf.selector.objective == "joint" and cfg.liaf.selector.lam == 0.0


def test_adapters_identity_and_projection():
    feats = [torch.randn(2, 4, 3, 3), torch.randn(2, 4, 2, 2)]
    same = Adapters(4, 4, 2)
    assert all(torch.equal(a, f) for a, f in zip(same(feats), feats, strict=True))
    wider = Adapters(4, 6, 2)
    assert [a.shape[1] for a in wider(feats)] == [6, 6]
    with pytest.raises(ValueError, match="levels"):
        same(feats[:1])


def _outputs(inputs, feats):
    student = DetectorOutput(
        losses={},
        feats=feats,
        head=inputs.student_head,
        assign=inputs.student_assign,
        instances=inputs.student_instances,
    )
    teacher = DetectorOutput(
        losses={},
        feats=inputs.teacher_feats,
        head=inputs.teacher_head,
        assign=inputs.student_assign,
        instances=inputs.teacher_instances,
    )
    return student, teacher


def _call(distiller, inputs, student, teacher, det_loss=None):
    return distiller(
        student, teacher, inputs.targets, inputs.images_shape, inputs.strides, det_loss
    )


def test_none_has_no_parameters_and_no_terms(make_inputs):
    inputs = make_inputs()
    distiller = build_distiller(load_distill_config({"method": "none"}, "x"), 4, 4, 2)
    assert list(distiller.parameters()) == []
    assert _call(distiller, inputs, *_outputs(inputs, inputs.student_feats)) == {}


def test_distiller_matches_method_and_protects_teacher(make_inputs):
    inputs = make_inputs()
    teacher_module = torch.nn.Conv2d(4, 4, 1)
    teacher_feats = [teacher_module(f) for f in inputs.teacher_feats]  # engine forgot no_grad
    student, teacher = _outputs(inputs, inputs.student_feats)
    teacher.feats = teacher_feats
    distiller = Distiller(FGD(4, 2), 4, 4, 2, adapter="always")
    losses = _call(distiller, inputs, student, teacher)
    # the method sees both sides divided by the teacher's per-level RMS
    rms = [f.detach().pow(2).mean().sqrt() for f in teacher_feats]
    inputs.teacher_feats = [f.detach() / s for f, s in zip(teacher_feats, rms, strict=True)]
    inputs.student_feats = [f / s for f, s in zip(inputs.student_feats, rms, strict=True)]
    direct = distiller.method(inputs)
    assert {k: v.item() for k, v in losses.items()} == pytest.approx(
        {k: v.item() for k, v in direct.items()}
    )
    sum(losses.values()).backward()
    assert all(p.grad is None for p in teacher_module.parameters())
    assert distiller.adapters.convs[0].weight.grad is not None


def test_adapters_only_when_widths_differ_unless_forced():
    cfg = load_distill_config({"method": "fgd", "teacher": TEACHER}, "x")
    assert build_distiller(cfg, 4, 4, 2).adapters is None
    assert build_distiller(cfg, 3, 4, 2).adapters is not None
    forced = load_distill_config({"method": "fgd", "teacher": TEACHER, "adapter": "always"}, "x")
    assert build_distiller(forced, 4, 4, 2).adapters is not None
    with pytest.raises(ConfigError, match="distill.adapter"):
        load_distill_config({"method": "fgd", "teacher": TEACHER, "adapter": "never"}, "x")


def test_feature_norm_switch_keeps_the_raw_mode(make_inputs):
    inputs = make_inputs()
    scaled = [f * 10 for f in inputs.teacher_feats]
    student, teacher = _outputs(inputs, [f * 10 for f in inputs.student_feats])
    teacher.feats = scaled
    raw_cfg = load_distill_config(
        {"method": "mimic", "teacher": TEACHER, "feature_norm": "none"}, "x"
    )
    norm_cfg = load_distill_config({"method": "mimic", "teacher": TEACHER}, "x")
    raw = _call(build_distiller(raw_cfg, 4, 4, 2), inputs, student, teacher)["loss_mimic"]
    normalised = _call(build_distiller(norm_cfg, 4, 4, 2), inputs, student, teacher)
    mean_squares = [f.pow(2).mean() for f in scaled]
    expected = sum(
        ((s * 10 - t) ** 2).mean() / m
        for s, t, m in zip(inputs.student_feats, scaled, mean_squares, strict=True)
    )
    assert normalised["loss_mimic"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert raw.item() == pytest.approx(
        sum(
            ((s * 10 - t) ** 2).mean() for s, t in zip(inputs.student_feats, scaled, strict=True)
        ).item(),
        rel=1e-5,
    )
    with pytest.raises(ConfigError, match="distill.feature_norm"):
        load_distill_config({"method": "fgd", "teacher": TEACHER, "feature_norm": "l2"}, "x")


def test_det_grads_through_non_identity_adapters(make_inputs):
    inputs = make_inputs()
    gen = torch.Generator().manual_seed(3)
    raw = [
        torch.randn(2, 3, f.shape[2], f.shape[3], generator=gen).requires_grad_()
        for f in inputs.teacher_feats
    ]
    mixing = [torch.randn(3, 3, 1, 1, generator=gen) for _ in raw]
    det_loss = sum(
        torch.nn.functional.conv2d(f, m).pow(2).sum() for f, m in zip(raw, mixing, strict=True)
    )
    selector = {"objective": "aligned", "lam": 0.5}
    cfg = load_distill_config(
        {"method": "liaf", "teacher": TEACHER, "liaf": {"selector": selector}}, "x"
    )
    distiller = build_distiller(cfg, 3, 4, 2)
    student, teacher = _outputs(inputs, raw)
    built = distiller.build_inputs(
        student, teacher, inputs.targets, inputs.images_shape, inputs.strides, det_loss
    )
    masks = build_level_masks(built, gaussian=False)
    fast = alignment_scores(built, masks, temperature=0.5)
    # reference: r_i = <dL_det/dF_raw, dL_fg_i/dF_raw> by autograd through the adapters
    det_grads = torch.autograd.grad(det_loss, raw, retain_graph=True)
    per_instance = instance_losses(distiller.method.level_errors(built), masks, built.batch_size)
    expected = []
    for i in range(per_instance.numel()):
        grads = torch.autograd.grad(per_instance[i], raw, retain_graph=True)
        expected.append(sum((a * b).sum() for a, b in zip(det_grads, grads, strict=True)).item())
    assert fast.tolist() == pytest.approx(expected, rel=1e-4)
    losses = _call(distiller, inputs, student, teacher, det_loss)
    assert "loss_liaf_align" in losses
    with pytest.raises(ValueError, match="det_loss"):
        _call(distiller, inputs, student, teacher)


# the cross-head methods need real head modules: tests/distill/test_crosskd.py
@pytest.mark.parametrize("name", sorted(set(METHODS) - CROSS_HEAD_METHODS))
def test_every_method_builds_runs_and_backpropagates(make_inputs, name):
    inputs = make_inputs()
    cfg = load_distill_config({"method": name, "teacher": TEACHER}, "x")
    distiller = build_distiller(cfg, 4, 4, 2)
    student, teacher = _outputs(inputs, inputs.student_feats)
    # a teacher whose outputs carry its graph (as if the engine forgot no_grad)
    teacher_scale = torch.nn.Parameter(torch.tensor(1.5))
    teacher.feats = [teacher_scale * f for f in teacher.feats]
    teacher.head = HeadOutputs(
        [teacher_scale * t for t in teacher.head.cls_logits],
        [teacher_scale * t for t in teacher.head.box_dists],
    )
    det_loss = sum(f.pow(2).sum() for f in inputs.student_feats)
    losses = _call(distiller, inputs, student, teacher, det_loss)
    assert (losses == {}) == (name == "none")
    assert all(
        k.startswith("loss_") and v.dim() == 0 and torch.isfinite(v) for k, v in losses.items()
    )
    assert isinstance(build_method(cfg, 4, 2), type(distiller.method))
    if name == "none":
        return
    sum(losses.values()).backward()
    assert teacher_scale.grad is None
    student_tensors = [*inputs.student_feats, *student.head.cls_logits, *student.head.box_dists]
    reached = sum(t.grad.abs().sum().item() for t in student_tensors if t.grad is not None)
    assert reached > 0, f"{name}: no gradient reaches the student"


@pytest.mark.parametrize("objective", ["aligned", "meta"])
def test_learnt_objective_at_lam_zero_is_refused_naming_the_key(objective):
    raw = {"method": "liaf", "teacher": TEACHER, "liaf": {"selector": {"objective": objective}}}
    with pytest.raises(ConfigError) as err:
        load_distill_config(raw, "exp.yaml")
    message = str(err.value)
    assert message.startswith("exp.yaml: distill.liaf.selector: ")
    assert f"objective '{objective}' with lam 0" in message
    assert "Set distill.liaf.selector.lam above 0" in message
    raw["liaf"]["selector"]["lam"] = 0.5
    assert load_distill_config(raw, "exp.yaml").liaf.selector.objective == objective
    for other in ("joint", "adversarial"):  # at lam 0 they cost nothing: no selector is built
        raw["liaf"]["selector"] = {"objective": other}
        assert load_distill_config(raw, "exp.yaml").liaf.selector.lam == 0.0
