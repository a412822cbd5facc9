"""The one annotation type every reader produces, and the problems readers report.

A reader never loads pixels: it returns `ImageRecord`s (file, size, boxes, labels,
per-instance attributes) plus `Problem`s. `DetectionDataset` loads the pixels later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Problem:
    """One thing wrong with a dataset, named precisely enough to fix it.

    kind: a short stable tag, e.g. "zero_area_box", "reversed_box",
    "box_outside_image", "unknown_class", "malformed_line", "unusable_labels",
    "missing_image", "ambiguous_image", "unreadable_image", "invalid_xml",
    "invalid_json", "no_objects", "size_mismatch".
    location: the file, with ":LINE" or "#object N" where one applies.
    dropped: True when the offending box (or image) was removed under the
    default `drop` policy; False for problems that are only reported.
    """

    kind: str
    location: str
    message: str
    dropped: bool = False

    def __str__(self) -> str:
        return f"{self.location}: [{self.kind}] {self.message}"


@dataclass
class ImageRecord:
    """Annotations of one image: boxes in absolute pixel xyxy, class indices into
    the dataset's class list, and the per-instance attributes the format has
    (e.g. "truncated", "occluded" for KITTI; "difficult" for VOC; "iscrowd" for
    COCO), each an array of length N. `ignore_boxes_xyxy` holds regions such as
    KITTI DontCare; `ignore_labels` holds neighbour-class boxes kept only for
    evaluation ignore rules (index into `DatasetIndex.ignore_class_names`)."""

    image_id: int
    file_name: str  # absolute path to the image file
    width: int
    height: int
    boxes_xyxy: np.ndarray  # float32 [N, 4]
    labels: np.ndarray  # int64 [N]
    attrs: dict[str, np.ndarray] = field(default_factory=dict)
    ignore_boxes_xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    ignore_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))

    @property
    def num_instances(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class DatasetIndex:
    """What a reader returns: the records, the class names, and every problem."""

    records: list[ImageRecord]
    class_names: list[str]
    problems: list[Problem] = field(default_factory=list)
    ignore_class_names: list[str] = field(default_factory=list)
