"""Detection dataset over a `DatasetIndex`, its collate function and the loader builder.

One sample is {"image": float CHW tensor, "target": dict} with target keys
- "boxes": float32 [N, 4] xyxy in transformed pixels; "labels": int64 [N];
- "attrs": {name: tensor [N]} (e.g. KITTI "truncated", "occluded"), aligned with boxes;
- "ignore_boxes": float32 [M, 4], regions such as KITTI DontCare, transformed alike;
- "image_id": int; "orig_size": (h, w); "scale": (sy, sx) from original to transformed
  pixels (`liafkd.data.transforms.unscale_boxes` maps predictions back).

Augmentation randomness is seeded per sample by the loader's sampler, so a loader built
with the same seed yields the same batches whatever the number of workers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from liafkd.config import AugmentConfig
from liafkd.data.images import ImageReadError, read_rgb
from liafkd.data.records import DatasetIndex, ImageRecord
from liafkd.data.transforms import build_transforms, make_target

IGNORE_LABEL = -1  # marks ignore regions while they travel through the transforms


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run per-sample tensor work (and batch padding) on one thread: it is too small to
    gain from intra-op threads, and on a busy machine their barriers cost ~10 ms per op."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class DataLoadError(RuntimeError):
    """An image that could not be used; the message starts with the file's path."""


def load_image(path: str) -> tv_tensors.Image:
    """The image at `path` as uint8 RGB [3, H, W], as displayed (EXIF orientation
    applied, 16-bit scaled to 8 bits: `liafkd.data.images.read_rgb`)."""
    try:
        rgb = read_rgb(path)
    except ImageReadError as e:
        raise DataLoadError(str(e)) from None
    return tv_tensors.Image(F.pil_to_tensor(rgb))


def _sample_target(record: ImageRecord, canvas_size: tuple[int, int]) -> dict[str, Any]:
    """Boxes and ignore regions in one target (ignore rows labelled IGNORE_LABEL, their
    attributes zero), so flips, resizes and sanitizing treat both alike."""
    num_ignore = len(record.ignore_boxes_xyxy)
    boxes = np.concatenate(
        [record.boxes_xyxy.reshape(-1, 4), record.ignore_boxes_xyxy.reshape(-1, 4)]
    )
    labels = np.concatenate([record.labels, np.full(num_ignore, IGNORE_LABEL)])
    attrs = {}
    for name, values in record.attrs.items():
        values = np.asarray(values)
        if values.shape[:1] != record.labels.shape:
            raise DataLoadError(
                f"{record.file_name}: attribute '{name}' has {values.shape[:1]} values "
                f"for {record.num_instances} boxes"
            )
        attrs[name] = torch.as_tensor(np.concatenate([values, np.zeros(num_ignore, values.dtype)]))
    return make_target(torch.as_tensor(boxes), torch.as_tensor(labels), attrs, canvas_size)


def _split_target(target: dict[str, Any]) -> dict[str, Any]:
    keep = target["labels"] != IGNORE_LABEL
    boxes = target["boxes"].as_subclass(torch.Tensor)
    return {
        "boxes": boxes[keep],
        "labels": target["labels"][keep],
        "attrs": {name: values[keep] for name, values in target["attrs"].items()},
        "ignore_boxes": boxes[~keep],
    }


class DetectionDataset(Dataset):
    """Loads each record's image with PIL and applies `transforms` to image and boxes.

    An item is an index, or (index, seed): the seed fixes the augmentation's random
    draws for that sample (see `AugmentSeedSampler`). With `drop_unreadable` (the
    dataset's `policy: drop`) an image that cannot be decoded becomes {"dropped":
    message}, which `collate_detection` leaves out of the batch and reports. With
    `cache_images` each decoded image is kept (uint8, per process) for later epochs."""

    def __init__(
        self,
        index: DatasetIndex,
        transforms: Callable | None,
        drop_unreadable: bool = False,
        cache_images: bool = False,
    ) -> None:
        self.index = index
        self.transforms = transforms
        self.drop_unreadable = drop_unreadable
        self.cache: dict[int, tv_tensors.Image] | None = {} if cache_images else None

    def __len__(self) -> int:
        return len(self.index.records)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        with _one_thread():
            try:
                return self._load(item)
            except DataLoadError as e:
                if not self.drop_unreadable:
                    raise
                return {"dropped": str(e)}

    def _load(self, item: int | tuple[int, int]) -> dict[str, Any]:
        idx, seed = item if isinstance(item, tuple) else (item, None)
        record = self.index.records[idx]
        image = self._decoded(idx, record.file_name)
        orig_size = (int(image.shape[-2]), int(image.shape[-1]))
        if orig_size != (record.height, record.width):
            raise DataLoadError(
                f"{record.file_name}: image is {orig_size[1]}x{orig_size[0]} but its "
                f"annotations say {record.width}x{record.height}"
            )
        target = _sample_target(record, orig_size)
        if self.transforms is not None:
            image, target = self._transform(image, target, seed)
        size = (int(image.shape[-2]), int(image.shape[-1]))
        out = _split_target(target)
        out.update(
            image_id=int(record.image_id),
            orig_size=orig_size,
            scale=(size[0] / orig_size[0], size[1] / orig_size[1]),
        )
        return {"image": image.as_subclass(torch.Tensor), "target": out}

    def _decoded(self, idx: int, file_name: str) -> tv_tensors.Image:
        if self.cache is None:
            return load_image(file_name)
        if idx not in self.cache:
            self.cache[idx] = load_image(file_name)
        # the transforms return new tensors, but a copy keeps the cache safe from any
        # that would work in place (a 192x320 copy costs ~0.05 ms; decoding ~2 ms)
        return self.cache[idx].clone()

    def _transform(self, image, target, seed: int | None):
        if seed is None:
            return self.transforms(image, target)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.transforms(image, target)


class Targets(list):
    """A batch's targets; `dropped` lists the messages of the images left out of it
    (unreadable under `policy: drop`)."""

    def __init__(self, items: Sequence[dict[str, Any]] = (), dropped: Sequence[str] = ()) -> None:
        super().__init__(items)
        self.dropped = list(dropped)


def collate_detection(
    batch: Sequence[dict[str, Any]], size_divisor: int = 32
) -> tuple[torch.Tensor, Targets, list[tuple[int, int]]]:
    """Stack images into [B, 3, H, W], H and W the largest sizes rounded up to a
    multiple of `size_divisor`, padding bottom and right with 0 (the normalised mean).
    Samples dropped by the dataset are left out and named in `targets.dropped`."""
    dropped = [sample["dropped"] for sample in batch if "dropped" in sample]
    batch = [sample for sample in batch if "dropped" not in sample]
    if not batch:
        return torch.zeros((0, 3, size_divisor, size_divisor)), Targets((), dropped), []
    images = [sample["image"] for sample in batch]
    sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
    height = math.ceil(max(h for h, _ in sizes) / size_divisor) * size_divisor
    width = math.ceil(max(w for _, w in sizes) / size_divisor) * size_divisor
    with _one_thread():
        padded = images[0].new_zeros((len(images), images[0].shape[0], height, width))
        for out, img, (h, w) in zip(padded, images, sizes, strict=True):
            out[:, :h, :w] = img
    return padded, Targets([sample["target"] for sample in batch], dropped), sizes


class AugmentSeedSampler(Sampler):
    """Wraps an index sampler and pairs each index with a seed drawn from `generator`,
    so every sample's augmentation follows from the loader's seed alone."""

    def __init__(self, sampler: Sampler, generator: torch.Generator) -> None:
        self.sampler = sampler
        self.generator = generator

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(self.sampler)
        seeds = torch.randint(2**62, (len(indices),), generator=self.generator).tolist()
        return iter(zip((int(i) for i in indices), seeds, strict=True))


def seed_worker(worker_id: int) -> None:
    """Seed numpy and `random` in a worker from the seed torch gave it."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    index: DatasetIndex,
    aug: AugmentConfig,
    batch_size: int,
    train: bool,
    num_workers: int,
    seed: int,
    sampler: Sampler | None = None,
    drop_unreadable: bool = False,
    cache_images: bool = False,
) -> DataLoader:
    """Batches of `collate_detection`. Training shuffles (unless `sampler` is given)
    and augments; the order and the augmentation follow from `seed`. No sample is
    dropped, except an unreadable image with `drop_unreadable` (named in the batch's
    `targets.dropped`)."""
    dataset = DetectionDataset(index, build_transforms(aug, train), drop_unreadable, cache_images)
    # the order and augmentation seeds get their own stream: the DataLoader draws worker
    # seeds from its generator only when it starts workers, which differs per epoch
    # between persistent and fresh workers
    order = torch.Generator()
    order.manual_seed(seed)
    if sampler is None:
        sampler = RandomSampler(dataset, generator=order) if train else SequentialSampler(dataset)
    if not getattr(sampler, "yields_seeds", False):  # (index, seed) pairs already
        sampler = AugmentSeedSampler(sampler, order)
    workers = torch.Generator()
    workers.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=partial(collate_detection, size_divisor=aug.size_divisor),
        worker_init_fn=seed_worker,
        generator=workers,
        drop_last=False,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
