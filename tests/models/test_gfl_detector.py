import pytest
import torch
from torchvision.models import resnet18

from liafkd.config import ModelConfig
from liafkd.models.build import build_detector
from liafkd.models.gfl import GFL
from liafkd.models.outputs import HeadOutputs


def tiny_cfg(**overrides) -> ModelConfig:
    base = dict(
        depth=18, width=8, fpn_channels=16, head_channels=16, head_convs=2, frozen_stages=-1
    )
    return ModelConfig(**(base | overrides))


def target(boxes: list[list[float]], labels: list[int]) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.long),
    }


@pytest.fixture(scope="module")
def model() -> GFL:
    torch.manual_seed(0)
    return build_detector(tiny_cfg(), num_classes=3)


@pytest.mark.parametrize(("depth", "width"), [(18, 8), (50, 8)])
def test_output_shapes(depth, width):
    detector = build_detector(tiny_cfg(depth=depth, width=width), num_classes=3)
    images = torch.randn(2, 3, 96, 160)
    feats = detector.extract_feats(images)
    sizes = [(12, 20), (6, 10), (3, 5), (2, 3), (1, 2)]
    assert [tuple(f.shape) for f in feats] == [(2, 16, h, w) for h, w in sizes]
    head = detector.forward_head(feats)
    assert [tuple(t.shape) for t in head.cls_logits] == [(2, 3, h, w) for h, w in sizes]
    assert [tuple(t.shape) for t in head.box_dists] == [(2, 68, h, w) for h, w in sizes]


def test_forward_train_outputs_and_instance_state(model):
    model.train()
    images = torch.randn(2, 3, 64, 64)
    targets = [
        target([[8, 8, 40, 48], [30, 10, 60, 30]], [0, 2]),
        # the second box lies outside the image: no location can be assigned to it
        target([[10, 20, 50, 60], [200, 200, 220, 230]], [1, 1]),
    ]
    out = model.forward_train(images, targets)
    assert set(out.losses) == {"loss_cls", "loss_bbox", "loss_dfl"}
    assert all(torch.isfinite(v) and v > 0 for v in out.losses.values())
    num_locations = 64 + 16 + 4 + 1 + 1
    assert out.assign.points.shape == (num_locations, 2)
    assert out.assign.gt_index.shape == (2, num_locations)
    # batch-wide indexing: image 1's instances are 2 and 3
    assert set(out.assign.gt_index[0].unique().tolist()) <= {-1, 0, 1}
    assert set(out.assign.gt_index[1].unique().tolist()) == {-1, 2}

    state = out.instances
    assert state.loss.shape == state.quality.shape == state.num_pos.shape == (4,)
    expected_pos = torch.bincount(out.assign.gt_index[out.assign.gt_index >= 0], minlength=4)
    assert state.num_pos.tolist() == expected_pos.tolist()
    assert state.num_pos[3] == 0 and state.loss[3] == 0 and state.quality[3] == 0
    assert (state.loss[:3] > 0).all()
    scores = out.head.flat_cls().sigmoid()
    for instance, label in ((0, 0), (1, 2), (2, 1)):
        image = 0 if instance < 2 else 1
        mask = out.assign.gt_index[image] == instance
        assert state.quality[instance] == pytest.approx(scores[image, mask, label].max().item())
    assert not any(t.requires_grad for t in (state.loss, state.quality, state.num_pos))
    sum(out.losses.values()).backward()
    model.zero_grad()


def test_image_without_gt(model):
    model.train()
    out = model.forward_train(torch.randn(1, 3, 64, 64), [target([], [])])
    assert out.losses["loss_cls"] > 0
    assert out.losses["loss_bbox"].item() == 0.0 and out.losses["loss_dfl"].item() == 0.0
    assert (out.assign.gt_index == -1).all()
    assert out.instances.loss.shape == (0,)
    total = sum(out.losses.values())
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.zero_grad()


def test_frozen_teacher_under_no_grad(model):
    teacher = model.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            out = teacher.forward_train(torch.randn(1, 3, 64, 64), [target([[8, 8, 40, 48]], [1])])
        assert all(torch.isfinite(v) and not v.requires_grad for v in out.losses.values())
        assert out.instances.num_pos[0] > 0 and out.instances.loss[0] > 0
        assert not out.feats[0].requires_grad
    finally:
        for p in teacher.parameters():
            p.requires_grad_(True)


def test_predict_format_clipping_and_head_input(model):
    # every score kept and no suppression, so each image returns exactly max_dets boxes
    cfg = tiny_cfg(score_thr=0.0, max_dets=7, nms_iou=1.0)
    detector = build_detector(cfg, num_classes=3).eval()
    images = torch.randn(2, 3, 64, 96)
    sizes = [(64, 96), (50, 70)]
    detections = detector.predict(images, sizes)
    assert len(detections) == 2
    for det, (height, width) in zip(detections, sizes, strict=True):
        assert det["boxes"].shape == (7, 4) and det["scores"].shape == det["labels"].shape == (7,)
        assert det["labels"].dtype == torch.long
        assert (det["boxes"][:, 0::2] <= width).all() and (det["boxes"][:, 1::2] <= height).all()
        assert (det["boxes"] >= 0).all()
        assert (det["scores"][:-1] >= det["scores"][1:]).all()
    head = detector.forward_head(detector.extract_feats(images))
    again = detector.predict(head, sizes)
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(detections, again, strict=True))
    assert isinstance(head, HeadOutputs)
    with pytest.raises(ValueError, match="image_sizes"):
        detector.predict(head)


def test_forward_dispatches_on_mode(model):
    images = torch.randn(1, 3, 64, 64)
    model.train()
    losses = model(images, [target([[8, 8, 40, 48]], [0])])
    assert set(losses) == {"loss_cls", "loss_bbox", "loss_dfl"}
    with pytest.raises(ValueError, match="needs targets"):
        model(images)
    model.eval()
    assert isinstance(model(images), list)


def test_bad_targets_and_config_are_reported(model):
    images = torch.randn(1, 3, 64, 64)
    model.train()
    with pytest.raises(ValueError, match=r"targets\[0\]: labels must be in \[0, 3\)"):
        model(images, [target([[8, 8, 40, 48]], [3])])
    with pytest.raises(ValueError, match="1 targets for a batch of 2"):
        model(torch.randn(2, 3, 64, 64), [target([], [])])
    head = model.forward_head(model.extract_feats(images))
    with pytest.raises(ValueError, match="do not fit a 96x64 image"):
        model.compute_assign(head, (96, 64), [target([], [])])
    with pytest.raises(ValueError, match="model.strides"):
        GFL(tiny_cfg(strides=(8, 16, 32)), num_classes=3)
    with pytest.raises(ValueError, match="model.num_classes"):
        GFL(tiny_cfg(num_classes=5), num_classes=3)


def test_pretrained_backbone_from_config(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    detector = GFL(tiny_cfg(width=64, pretrained=str(path)), num_classes=2)
    assert detector.pretrained_report.missing == []
    assert detector.pretrained_report.unexpected == []
