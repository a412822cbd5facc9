import pytest
import torch
from torch import nn
from torchvision.models import resnet18, resnet50

from liafkd.models.backbone import ResNetBackbone
from liafkd.models.gfl_head import GFLHead, group_norm_groups
from liafkd.models.neck import FPN


@pytest.mark.parametrize(("depth", "reference"), [(18, resnet18), (50, resnet50)])
def test_width_64_matches_torchvision_state_dict(depth, reference):
    ours = ResNetBackbone(depth, width=64).state_dict()
    theirs = {k: v for k, v in reference(weights=None).state_dict().items() if "fc." not in k}
    assert ours.keys() == theirs.keys()
    assert all(ours[k].shape == theirs[k].shape for k in ours)


def test_load_pretrained_torchvision_weights(tmp_path):
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone = ResNetBackbone(18, width=64, frozen_stages=1)
    report = backbone.load_pretrained(path)
    assert report.missing == [] and report.unexpected == []
    assert torch.equal(backbone.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)


def test_load_pretrained_reports_missing_and_rejects_wrong_width(tmp_path):
    state = resnet18(weights=None).state_dict()
    del state["layer4.1.bn2.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    report = ResNetBackbone(18, width=64).load_pretrained(path)
    assert report.missing == ["layer4.1.bn2.bias"] and report.unexpected == ["extra.weight"]
    with pytest.raises(ValueError, match="width 64"):
        ResNetBackbone(18, width=16).load_pretrained(path)
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        ResNetBackbone(18, width=16).load_pretrained(tmp_path / "nothere.pth")


@pytest.mark.parametrize(("depth", "channels"), [(18, [32, 64, 128]), (50, [128, 256, 512])])
def test_backbone_output_shapes(depth, channels):
    backbone = ResNetBackbone(depth, width=16)
    feats = backbone(torch.randn(1, 3, 64, 96))
    assert backbone.out_channels == channels
    assert [tuple(f.shape) for f in feats] == [
        (1, channels[0], 8, 12),
        (1, channels[1], 4, 6),
        (1, channels[2], 2, 3),
    ]


def test_frozen_stages_and_norm_eval():
    backbone = ResNetBackbone(18, width=8, frozen_stages=1).train()
    frozen = [backbone.conv1, backbone.bn1, backbone.layer1]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in backbone.layer2.parameters())
    assert not backbone.bn1.training and not backbone.layer1[0].bn1.training
    assert backbone.layer2[0].bn1.training
    assert all(p.requires_grad for p in ResNetBackbone(18, width=8).parameters())
    all_eval = ResNetBackbone(18, width=8, norm_eval=True).train()
    assert not any(m.training for m in all_eval.modules() if isinstance(m, nn.BatchNorm2d))


def test_fpn_levels_p3_to_p7():
    fpn = FPN([16, 32, 64], out_channels=24)
    feats = [torch.randn(2, 16, 16, 20), torch.randn(2, 32, 8, 10), torch.randn(2, 64, 4, 5)]
    sizes = [tuple(p.shape) for p in fpn(feats)]
    assert sizes == [(2, 24, 16, 20), (2, 24, 8, 10), (2, 24, 4, 5), (2, 24, 2, 3), (2, 24, 1, 2)]


def test_group_norm_groups():
    assert [group_norm_groups(c) for c in (256, 128, 64, 32, 16, 24, 3)] == [32, 32, 16, 8, 4, 6, 1]


def make_head(**overrides) -> GFLHead:
    kwargs = dict(
        num_classes=3, in_channels=16, feat_channels=16, num_convs=2, reg_max=4, num_levels=2
    )
    return GFLHead(**(kwargs | overrides))


def test_head_shapes_and_prior():
    head = make_head()
    feats = [torch.randn(2, 16, 8, 8), torch.randn(2, 16, 4, 4)]
    out = head(feats)
    assert [tuple(t.shape) for t in out.cls_logits] == [(2, 3, 8, 8), (2, 3, 4, 4)]
    assert [tuple(t.shape) for t in out.box_dists] == [(2, 20, 8, 8), (2, 20, 4, 4)]
    # prior probability 0.01 at initialisation (weights are small)
    assert (out.flat_cls().sigmoid() - 0.01).abs().max() < 0.005


@pytest.mark.parametrize("k", [0, 1, 2])
def test_head_cut_and_resume_equals_forward(k):
    head = make_head().eval()
    feats = [torch.randn(1, 16, 6, 6), torch.randn(1, 16, 3, 3)]
    full = head(feats)
    resumed = head.forward_from(*head.branch_feats(feats, k), k)
    pairs = zip(
        full.cls_logits + full.box_dists, resumed.cls_logits + resumed.box_dists, strict=True
    )
    assert all(torch.allclose(a, b) for a, b in pairs)


def test_teacher_head_runs_on_student_head_features():
    student, teacher = make_head(), make_head()
    feats = [torch.randn(1, 16, 6, 6, requires_grad=True), torch.randn(1, 16, 3, 3)]
    for p in teacher.parameters():
        p.requires_grad_(False)
    cross = teacher.forward_from(*student.branch_feats(feats, 1), 1)
    cross.flat_cls().sum().backward()
    assert feats[0].grad is not None and feats[0].grad.abs().sum() > 0
    with pytest.raises(ValueError, match="cut index"):
        teacher.forward_from(feats, feats, 3)
