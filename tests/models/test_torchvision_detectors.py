"""torchvision RetinaNet / FCOS behind the GFL API: shapes, losses, instance states,
pretrained backbones, and distillation from a GFL teacher (fgd, liaf; ld refused)."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError
from torchvision.models import resnet18
from torchvision.ops import sigmoid_focal_loss

from liafkd.cli.main import main
from liafkd.config import ConfigError, ModelConfig
from liafkd.distill.capabilities import METHOD_REQUIREMENTS, check_detector_support
from liafkd.distill.config import MethodName
from liafkd.models.build import build_detector
from liafkd.models.gfl import GFL
from liafkd.models.torchvision_detectors import FCOSHeadOutputs

SIZES = [(12, 20), (6, 10), (3, 5), (2, 3), (1, 2)]  # P3-P7 of a 96 x 160 image
TINY = dict(depth=18, width=8, fpn_channels=16, head_channels=16, head_convs=1)
ANCHORS = {"retinanet": 9, "fcos": 1}


def tiny_cfg(kind: str, **overrides) -> ModelConfig:
    return ModelConfig(type=kind, **(TINY | overrides))


def target(boxes: list[list[float]], labels: list[int]) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.long),
    }


TARGETS = [
    target([[4.0, 6.0, 60.0, 50.0], [70.0, 10.0, 150.0, 90.0]], [0, 2]),
    target([[30.0, 20.0, 62.0, 60.0]], [1]),
]


@pytest.fixture(scope="module", params=["retinanet", "fcos"])
def detector(request):
    torch.manual_seed(0)
    return build_detector(tiny_cfg(request.param), num_classes=3)


def test_forward_train_shapes_and_instance_states(detector):
    kind, anchors = detector.cfg.type, detector.num_anchors
    out = detector.forward_train(torch.randn(2, 3, 96, 160), TARGETS)
    assert [tuple(f.shape) for f in out.feats] == [(2, 16, h, w) for h, w in SIZES]
    assert [tuple(t.shape) for t in out.head.cls_logits] == [
        (2, anchors * 3, h, w) for h, w in SIZES
    ]
    assert [tuple(t.shape) for t in out.head.box_dists] == [
        (2, anchors * 4, h, w) for h, w in SIZES
    ]
    expected = {"loss_cls", "loss_bbox"} | ({"loss_centerness"} if kind == "fcos" else set())
    assert set(out.losses) == expected
    assert all(torch.isfinite(v) and v > 0 for v in out.losses.values())

    num_locations = sum(h * w for h, w in SIZES)
    assert out.assign.gt_index.shape == (2, num_locations)
    assert out.assign.points.shape == (num_locations, 2)
    assert out.assign.level_sizes == SIZES
    # image 1's only instance is batch-wide instance 2
    assert set(out.assign.gt_index[0].unique().tolist()) == {-1, 0, 1}
    assert set(out.assign.gt_index[1].unique().tolist()) == {-1, 2}
    state = out.instances
    assert state.loss.shape == state.quality.shape == state.num_pos.shape == (3,)
    assert (state.num_pos > 0).all() and (state.loss > 0).all()
    assert ((state.quality > 0) & (state.quality < 1)).all()
    assert not state.loss.requires_grad


def test_points_and_strides_are_torchvision_anchor_centres(detector):
    out = detector.forward_train(torch.randn(1, 3, 96, 160), TARGETS[:1])
    assign = out.assign
    # P3 location (row 1, column 2) and the single-row P7's second location
    assert assign.points[1 * 20 + 2].tolist() == [16.0, 8.0]
    assert assign.points[-1].tolist() == [128.0, 0.0]
    assert assign.strides[0] == 8 and assign.strides[-1] == 128


def test_image_without_objects_has_cls_loss_and_zero_box_loss(detector):
    detector.zero_grad()
    out = detector.forward_train(torch.randn(1, 3, 96, 160), [target([], [])])
    assert out.losses["loss_cls"] > 0
    box_terms = [v for k, v in out.losses.items() if k != "loss_cls"]
    assert all(v.item() == 0.0 for v in box_terms)
    assert (out.assign.gt_index == -1).all()
    assert out.instances.loss.shape == (0,)
    sum(out.losses.values()).backward()
    assert detector.head.classification_head.cls_logits.weight.grad.abs().sum() > 0


def test_retinanet_instance_losses_are_torchvision_terms_per_anchor():
    """Sum over instances == torchvision's own focal loss over the positives only
    (negatives marked ignored) + its L1 box loss, both times num_foreground."""
    torch.manual_seed(1)
    detector = build_detector(tiny_cfg("retinanet"), num_classes=3)
    out = detector.forward_train(torch.randn(1, 3, 96, 160), TARGETS[:1])
    matched = detector.head.matched_idxs
    num_fg = int((matched[0] >= 0).sum())
    outputs = detector._torchvision_outputs(out.head)
    anchors = [detector.anchors(SIZES, torch.device("cpu"))]
    positives_only = [torch.where(m >= 0, m, torch.full_like(m, -2)) for m in matched]
    with torch.no_grad():
        cls = detector.head.classification_head.compute_loss(TARGETS[:1], outputs, positives_only)
        box = detector.head.regression_head.compute_loss(TARGETS[:1], outputs, anchors, matched)
    assert out.losses["loss_bbox"].item() == pytest.approx(box.item())
    assert out.instances.loss.sum().item() == pytest.approx((cls + box).item() * num_fg, rel=1e-5)
    assert out.instances.num_pos.sum() == num_fg


def test_fcos_instance_losses_are_torchvision_terms_per_location():
    torch.manual_seed(2)
    detector = build_detector(tiny_cfg("fcos"), num_classes=3)
    out = detector.forward_train(torch.randn(1, 3, 96, 160), TARGETS[:1])
    matched = detector.head.matched_idxs[0]
    positive = matched >= 0
    num_fg = int(positive.sum())
    logits = detector._torchvision_outputs(out.head)["cls_logits"][0, positive].detach()
    onehot = torch.nn.functional.one_hot(TARGETS[0]["labels"][matched[positive]], 3).float()
    focal = sigmoid_focal_loss(logits, onehot, reduction="sum")
    box_terms = out.losses["loss_bbox"] + out.losses["loss_centerness"]
    expected = focal + box_terms.detach() * num_fg
    assert out.instances.loss.sum().item() == pytest.approx(expected.item(), rel=1e-5)


def test_instance_quality_is_the_best_gt_class_score(detector):
    out = detector.forward_train(torch.randn(1, 3, 96, 160), TARGETS[1:])
    matched = detector.head.matched_idxs[0]
    logits = detector._torchvision_outputs(out.head)["cls_logits"][0].detach()
    scores = logits[matched >= 0, 1].sigmoid()
    if isinstance(out.head, FCOSHeadOutputs):
        ctr = torch.cat([t.flatten(1) for t in out.head.centerness], dim=1)[0].detach()
        scores = (scores * ctr[matched >= 0].sigmoid()).sqrt()
    assert out.instances.quality.item() == pytest.approx(scores.max().item())


def test_predict_clips_to_image_sizes_and_accepts_head_outputs(detector):
    detector.eval()
    images = torch.randn(2, 3, 96, 160)
    sizes = [(96, 160), (80, 128)]
    with torch.no_grad():
        direct = detector.predict(images, sizes)
        head = detector.forward_head(detector.extract_feats(images))
    from_head = detector.predict(head, sizes)
    detector.train()
    for dets, det_head, (h, w) in zip(direct, from_head, sizes, strict=True):
        assert set(dets) == {"boxes", "scores", "labels"}
        assert torch.equal(dets["boxes"], det_head["boxes"])
        assert len(dets["boxes"]) <= detector.cfg.max_dets
        if len(dets["boxes"]):
            assert dets["boxes"][:, 0::2].max() <= w and dets["boxes"][:, 1::2].max() <= h
            assert (dets["scores"] > detector.cfg.score_thr).all()
    with pytest.raises(ValueError, match="image_sizes"):
        detector.predict(head)


def test_state_dict_names_match_gfl_backbone_and_neck():
    torch.manual_seed(0)
    retina = build_detector(tiny_cfg("retinanet", head_convs=3), num_classes=3)
    gfl = GFL(ModelConfig(**TINY), num_classes=3)
    trunk = {k for k in gfl.state_dict() if k.startswith(("backbone.", "neck."))}
    assert trunk == {k for k in retina.state_dict() if k.startswith(("backbone.", "neck."))}
    towers = {k.split(".")[3] for k in retina.state_dict() if ".conv." in k}
    assert towers == {"0", "1", "2"}  # model.head_convs blocks per branch


@pytest.mark.parametrize("kind", ["retinanet", "fcos"])
def test_pretrained_torchvision_resnet_loads_with_nothing_missing(tmp_path, kind):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    detector = build_detector(tiny_cfg(kind, width=64, pretrained=str(path)), num_classes=2)
    assert detector.pretrained_report.missing == []
    assert detector.pretrained_report.unexpected == []


def test_head_width_must_equal_fpn_width():
    with pytest.raises(ValidationError, match="head_channels .16. must equal fpn_channels .32."):
        ModelConfig(type="retinanet", fpn_channels=32, head_channels=16)


# ------------------------------------------------------------- capabilities


def test_every_method_declares_its_detector_needs():
    assert set(METHOD_REQUIREMENTS) == set(MethodName.__args__)


@pytest.mark.parametrize("method", ["mimic", "fgd", "liaf", "aid", "pkd"])
def test_feature_methods_accept_mixed_pairs(method):
    check_detector_support(method, tiny_cfg("retinanet"), ModelConfig(**TINY), "exp.yaml")
    check_detector_support(method, tiny_cfg("fcos"), tiny_cfg("retinanet"), "exp.yaml")


@pytest.mark.parametrize("method", ["ld", "liaf+ld", "crosskd"])
def test_methods_needing_gfl_outputs_refuse_a_retinanet_student(method):
    with pytest.raises(ConfigError) as err:
        check_detector_support(method, tiny_cfg("retinanet"), ModelConfig(**TINY), "exp.yaml")
    text = str(err.value)
    assert f"distill.method '{method}'" in text and "box_distributions" in text
    assert "student (model.type retinanet)" in text and "fgd" in text


def test_ld_needs_equal_reg_max():
    with pytest.raises(ConfigError, match="same model.reg_max"):
        check_detector_support("ld", ModelConfig(**TINY, reg_max=8), ModelConfig(**TINY), "e")


# --------------------------------------------------------- distillation runs


def edit_config(path: Path, model: dict, **top) -> Path:
    """Rewrite a `tiny_config` file with another model block and extra top-level keys."""
    raw = yaml.safe_load(path.read_text())
    raw["model"] = model
    path.write_text(yaml.safe_dump(raw | top))
    return path


@pytest.fixture
def gfl_teacher(tiny_config, tmp_path) -> dict:
    """A tiny random GFL teacher (wider than the student) saved as a liafkd checkpoint."""
    model = TINY | {"width": 16, "fpn_channels": 24, "head_channels": 24}
    config = edit_config(tiny_config("teacher"), model)
    torch.manual_seed(0)
    checkpoint = tmp_path / "teacher.pt"
    torch.save({"model": GFL(ModelConfig(**model), 3).state_dict(), "meta": {}}, checkpoint)
    return {"config": str(config), "checkpoint": str(checkpoint)}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fgd", "liaf"])
def test_retinanet_student_distils_from_gfl_teacher(tiny_config, tmp_path, gfl_teacher, method):
    student = TINY | {"type": "retinanet"}
    # a random teacher detects nothing: skip the sanity check, keep the step-health one
    distill = {"method": method, "teacher": gfl_teacher, "checks": {"teacher_sanity": False}}
    config = edit_config(tiny_config(f"retina_{method}", max_steps=2), student, distill=distill)
    assert main(["distill", str(config)]) == 0
    records = [
        json.loads(line) for line in (tmp_path / f"retina_{method}" / "metrics.jsonl").open()
    ]
    steps = [r for r in records if r["type"] == "train"]
    assert len(steps) == 2
    assert {f"loss_{method}_fg", f"loss_{method}_bg", "loss_cls", "loss_bbox"} <= set(steps[0])
    final = torch.load(tmp_path / f"retina_{method}" / "final.pt", weights_only=True)
    assert any(k.startswith("head.classification_head.") for k in final["model"])


def test_ld_with_retinanet_student_is_refused_before_training(
    tiny_config, tmp_path, gfl_teacher, capsys
):
    student = TINY | {"type": "retinanet"}
    distill = {"method": "ld", "teacher": gfl_teacher}
    config = edit_config(tiny_config("retina_ld"), student, distill=distill)
    assert main(["distill", str(config)]) == 2
    err = capsys.readouterr().err
    assert "distill.method 'ld' needs box_distributions" in err
    assert "student (model.type retinanet)" in err
    assert not (tmp_path / "retina_ld" / "metrics.jsonl").exists()
