import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import tv_tensors

from liafkd.config import AugmentConfig
from liafkd.data.transforms import build_transforms, fit_size, make_target, unscale_boxes

NO_NORM = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


def _sample(height: int, width: int, boxes, labels=None, attrs=None):
    image = tv_tensors.Image(torch.zeros(3, height, width, dtype=torch.uint8))
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.arange(len(boxes)) if labels is None else torch.tensor(labels)
    return image, make_target(boxes, labels, attrs or {}, (height, width))


def test_fit_size_keeps_ratio():
    assert fit_size(100, 200, 50, 80) == (40, 80)  # the long side limits
    assert fit_size(100, 200, 50, 400) == (50, 100)  # the short side limits
    assert fit_size(200, 100, 50, 80) == (80, 40)  # portrait
    assert fit_size(192, 320, 192, 320) == (192, 320)


def test_resize_scales_boxes_with_the_image():
    image, target = _sample(100, 200, [[10, 20, 50, 60]])
    aug = AugmentConfig(image_size=(50, 80), hflip=0.0, **NO_NORM)
    out_image, out = build_transforms(aug, train=False)(image, target)
    assert out_image.shape == (3, 40, 80)
    assert out["boxes"].tolist() == [[4.0, 8.0, 20.0, 24.0]]
    assert out["boxes"].canvas_size == (40, 80)


def test_flip_mirrors_boxes_and_pixels():
    image, target = _sample(100, 200, [[10, 20, 50, 60]])
    image[:, 20:60, 10:50] = 255  # paint the object
    aug = AugmentConfig(image_size=(50, 80), hflip=1.0, **NO_NORM)
    out_image, out = build_transforms(aug, train=True)(image, target)
    assert out["boxes"].tolist() == [[60.0, 8.0, 76.0, 24.0]]
    assert out_image[0, 10:22, 62:74].min() > 0.99  # painted pixels moved with the box
    assert out_image[0, 10:22, 6:18].max() < 0.01


def test_eval_never_flips():
    image, target = _sample(100, 200, [[10, 20, 50, 60]])
    aug = AugmentConfig(image_size=(100, 200), hflip=1.0, **NO_NORM)
    _, out = build_transforms(aug, train=False)(image, target)
    assert out["boxes"].tolist() == [[10.0, 20.0, 50.0, 60.0]]


def test_normalise_uses_mean_and_std():
    image, target = _sample(10, 10, [[1, 1, 5, 5]])
    image.fill_(255)
    aug = AugmentConfig(image_size=(10, 10), hflip=0.0, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    out_image, _ = build_transforms(aug, train=False)(image, target)
    assert out_image.dtype == torch.float32
    assert out_image[:, 0, 0].tolist() == pytest.approx([2.0, 1.0, 0.5])


def test_sanitize_keeps_labels_and_attrs_aligned():
    attrs = {
        "occluded": torch.tensor([0, 1, 2]),
        "truncated": torch.tensor([0.0, 0.5, 0.25]),
        "difficult": torch.tensor([False, True, False]),
    }
    boxes = [[10, 10, 60, 60], [100, 20, 102, 22], [120, 40, 180, 90]]  # middle: 0.8 px
    image, target = _sample(100, 200, boxes, labels=[3, 4, 5], attrs=attrs)
    aug = AugmentConfig(image_size=(50, 80), hflip=0.0, **NO_NORM)
    _, out = build_transforms(aug, train=False)(image, target)
    assert out["labels"].tolist() == [3, 5]
    assert out["attrs"]["occluded"].tolist() == [0, 2]
    assert out["attrs"]["truncated"].tolist() == [0.0, 0.25]
    assert out["attrs"]["difficult"].tolist() == [False, False]
    assert out["boxes"].shape == (2, 4)


def test_multiscale_picks_listed_sizes():
    aug = AugmentConfig(multiscale=[(50, 80), (100, 160)], hflip=0.0, **NO_NORM)
    transforms = build_transforms(aug, train=True)
    torch.manual_seed(0)
    seen = {
        tuple(transforms(*_sample(100, 200, [[10, 20, 50, 60]]))[0].shape[1:]) for _ in range(20)
    }
    assert seen == {(40, 80), (80, 160)}


def test_unscale_boxes_inverts_resize():
    boxes = torch.tensor([[4.0, 8.0, 20.0, 24.0]])
    assert unscale_boxes(boxes, (0.4, 0.4)).tolist() == [[10.0, 20.0, 50.0, 60.0]]
    assert unscale_boxes(boxes, (0.5, 0.25)).tolist() == [[16.0, 16.0, 80.0, 48.0]]


@st.composite
def _boxes_in(draw, height: int, width: int):
    n = draw(st.integers(0, 6))
    boxes = []
    for _ in range(n):
        x1 = draw(st.floats(0, width - 1))
        y1 = draw(st.floats(0, height - 1))
        x2 = draw(st.floats(x1 + 0.5, width))
        y2 = draw(st.floats(y1 + 0.5, height))
        boxes.append([x1, y1, x2, y2])
    return boxes


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    height=st.integers(8, 120),
    width=st.integers(8, 120),
    short=st.integers(8, 96),
    extra=st.integers(0, 64),
    flip=st.booleans(),
)
def test_boxes_stay_inside_the_resized_image(data, height, width, short, extra, flip):
    boxes = data.draw(_boxes_in(height, width))
    image, target = _sample(height, width, boxes, attrs={"occluded": torch.arange(len(boxes))})
    aug = AugmentConfig(image_size=(short, short + extra), hflip=1.0 if flip else 0.0, **NO_NORM)
    out_image, out = build_transforms(aug, train=True)(image, target)
    h, w = out_image.shape[-2:]
    assert (h, w) == fit_size(height, width, short, short + extra)
    b = out["boxes"]
    assert len(b) == len(out["labels"]) == len(out["attrs"]["occluded"])
    assert ((b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= w) & (b[:, 3] <= h)).all()
    assert ((b[:, 2] - b[:, 0] >= 1) & (b[:, 3] - b[:, 1] >= 1)).all()
    # surviving boxes keep their own label and attribute
    assert torch.equal(out["labels"], out["attrs"]["occluded"])
