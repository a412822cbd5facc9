from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liafkd.config import AugmentConfig
from liafkd.data.dataset import (
    DataLoadError,
    DetectionDataset,
    build_loader,
    collate_detection,
)
from liafkd.data.records import DatasetIndex, ImageRecord
from liafkd.data.transforms import build_transforms

SIZES = [(60, 100), (80, 120), (50, 90), (64, 64), (70, 110)]  # (h, w)


def _record(path: Path, image_id: int, height: int, width: int) -> ImageRecord:
    rng = np.random.default_rng(image_id)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return ImageRecord(
        image_id=image_id,
        file_name=str(path),
        width=width,
        height=height,
        boxes_xyxy=np.array([[2, 4, 30, 40], [40, 10, 50, 30]], np.float32),
        labels=np.array([0, 1], np.int64),
        attrs={"occluded": np.array([0, 2]), "truncated": np.array([0.0, 0.3], np.float32)},
        ignore_boxes_xyxy=np.array([[5, 45, 25, 50]], np.float32),
    )


@pytest.fixture
def index(tmp_path) -> DatasetIndex:
    records = [_record(tmp_path / f"{i}.png", i, h, w) for i, (h, w) in enumerate(SIZES)]
    return DatasetIndex(records=records, class_names=["a", "b"])


def _aug(**kw) -> AugmentConfig:
    return AugmentConfig(**{"image_size": (60, 100), "hflip": 0.0, **kw})


def test_item_has_transformed_boxes_scale_and_attrs(index):
    dataset = DetectionDataset(index, build_transforms(_aug(image_size=(30, 50)), train=False))
    sample = dataset[0]  # 60x100 -> 30x50, scale 0.5
    image, target = sample["image"], sample["target"]
    assert type(image) is torch.Tensor and image.dtype == torch.float32
    assert image.shape == (3, 30, 50)
    assert target["boxes"].dtype == torch.float32
    assert target["boxes"].tolist() == [[1, 2, 15, 20], [20, 5, 25, 15]]
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [0, 1]
    assert target["attrs"]["occluded"].tolist() == [0, 2]
    assert target["ignore_boxes"].tolist() == [[2.5, 22.5, 12.5, 25.0]]
    assert target["image_id"] == 0
    assert target["orig_size"] == (60, 100)
    assert target["scale"] == (0.5, 0.5)


def test_item_without_transforms_keeps_pixels(index):
    sample = DetectionDataset(index, None)[1]
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, 80, 120)
    assert sample["target"]["scale"] == (1.0, 1.0)


def test_collate_pads_to_multiple_of_divisor(index):
    dataset = DetectionDataset(index, build_transforms(_aug(image_size=(80, 120)), train=False))
    batch = [dataset[i] for i in range(len(dataset))]
    images, targets, sizes = collate_detection(batch, size_divisor=32)
    assert sizes == [tuple(s["image"].shape[-2:]) for s in batch]
    assert images.shape == (5, 3, 96, 128)  # largest 80x120 rounded up to 32
    assert [t["image_id"] for t in targets] == [0, 1, 2, 3, 4]
    for img, sample, (h, w) in zip(images, batch, sizes, strict=True):
        assert torch.equal(img[:, :h, :w], sample["image"])
        assert img[:, h:, :].abs().sum() == 0 and img[:, :, w:].abs().sum() == 0


def _batches(loader) -> list:
    return [
        (images, [t["image_id"] for t in targets], [t["boxes"] for t in targets])
        for images, targets, _ in loader
    ]


def _same(a, b) -> bool:
    return all(
        torch.equal(ia, ib)
        and ida == idb
        and all(torch.equal(x, y) for x, y in zip(ba, bb, strict=True))
        for (ia, ida, ba), (ib, idb, bb) in zip(a, b, strict=True)
    )


def test_loader_is_deterministic_by_seed_and_drops_nothing(index):
    aug = _aug(hflip=0.5, multiscale=[(48, 80), (60, 100)])
    first = _batches(build_loader(index, aug, 2, train=True, num_workers=0, seed=7))
    torch.manual_seed(123)  # the global RNG must not matter
    again = _batches(build_loader(index, aug, 2, train=True, num_workers=0, seed=7))
    other = _batches(build_loader(index, aug, 2, train=True, num_workers=0, seed=8))
    assert _same(first, again)
    assert not _same(first, other)
    assert len(first) == 3
    assert sorted(i for _, ids, _ in first for i in ids) == [0, 1, 2, 3, 4]


def test_loader_same_batches_with_a_worker(index):
    aug = _aug(hflip=0.5, multiscale=[(48, 80), (60, 100)])
    inline = build_loader(index, aug, 2, train=True, num_workers=0, seed=3)
    worker = build_loader(index, aug, 2, train=True, num_workers=1, seed=3)
    for _epoch in range(2):
        assert _same(_batches(inline), _batches(worker))


def test_cached_images_give_the_same_batches_and_are_decoded_once(index, monkeypatch):
    import liafkd.data.dataset as dataset_module

    aug = _aug(hflip=0.5, multiscale=[(48, 80), (60, 100)])
    plain = build_loader(index, aug, 2, train=True, num_workers=0, seed=3)
    cached = build_loader(index, aug, 2, train=True, num_workers=0, seed=3, cache_images=True)
    decoded = []
    load = dataset_module.load_image
    monkeypatch.setattr(dataset_module, "load_image", lambda p: decoded.append(p) or load(p))
    for _epoch in range(3):
        assert _same(_batches(plain), _batches(cached))
    assert len(decoded) == 3 * len(SIZES) + len(SIZES)  # plain: every epoch; cached: once
    assert len(cached.dataset.cache) == len(SIZES)


def test_epochs_differ(index):
    loader = build_loader(index, _aug(hflip=0.5), 5, train=True, num_workers=0, seed=0)
    assert not _same(_batches(loader), _batches(loader))


def test_eval_loader_keeps_order(index):
    loader = build_loader(index, _aug(), 2, train=False, num_workers=0, seed=0)
    assert [i for _, ids, _ in _batches(loader) for i in ids] == [0, 1, 2, 3, 4]


def test_worker_failure_names_the_file(index):
    broken = Path(index.records[2].file_name)
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    loader = build_loader(index, _aug(), 1, train=False, num_workers=1, seed=0)
    with pytest.raises(DataLoadError, match=broken.name):
        list(loader)


def test_missing_file_names_the_file(index):
    Path(index.records[0].file_name).unlink()
    with pytest.raises(DataLoadError, match="0.png"):
        DetectionDataset(index, None)[0]


def test_size_mismatch_names_the_file(index):
    index.records[1].width = 999
    with pytest.raises(DataLoadError, match=r"1\.png.*120x80.*999x80"):
        DetectionDataset(index, None)[1]


def test_attribute_length_mismatch_names_the_file(index):
    index.records[3].attrs["occluded"] = np.array([0])
    with pytest.raises(DataLoadError, match=r"3\.png.*occluded"):
        DetectionDataset(index, None)[3]


def test_image_without_boxes(index):
    record = index.records[0]
    record.boxes_xyxy = np.zeros((0, 4), np.float32)
    record.labels = np.zeros((0,), np.int64)
    record.attrs = {"occluded": np.zeros((0,), np.int64)}
    sample = DetectionDataset(index, build_transforms(_aug(hflip=1.0), train=True))[0]
    assert sample["target"]["boxes"].shape == (0, 4)
    assert sample["target"]["attrs"]["occluded"].shape == (0,)
