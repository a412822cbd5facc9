"""Evaluation gives the same detections whatever the batch size, on mixed image sizes
(zero padding to a batch's largest image must not reach GroupNorm statistics)."""

import numpy as np
import torch
from PIL import Image

from liafkd.config import AugmentConfig, ModelConfig
from liafkd.data.records import DatasetIndex, ImageRecord
from liafkd.engine.build import build_student
from liafkd.engine.evaluate import predict_dataset

SIZES = [(96, 160), (160, 96), (64, 64), (128, 128), (72, 200), (96, 96)]  # (h, w)


def mixed_index(tmp_path) -> DatasetIndex:
    rng = np.random.default_rng(0)
    records = []
    for i, (h, w) in enumerate(SIZES):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        records.append(
            ImageRecord(
                image_id=i + 1,
                file_name=str(path),
                width=w,
                height=h,
                boxes_xyxy=np.zeros((0, 4), np.float32),
                labels=np.zeros(0, np.int64),
            )
        )
    return DatasetIndex(records, ["a", "b"])


def test_detections_do_not_depend_on_the_batch_size_on_mixed_sizes(tmp_path):
    torch.manual_seed(0)
    model = ModelConfig(
        depth=18,
        width=8,
        fpn_channels=16,
        head_convs=2,
        head_channels=16,
        score_thr=0.0,
        max_dets=20,
    )
    detector = build_student(model, 2).eval()
    index = mixed_index(tmp_path)
    aug = AugmentConfig(image_size=(160, 200))  # keeps ratios: sizes stay mixed
    device = torch.device("cpu")
    alone = predict_dataset(detector, index, aug, device, batch_size=1, progress=False)
    for batch_size in (4, 6):
        batched = predict_dataset(detector, index, aug, device, batch_size, progress=False)
        assert batched.keys() == alone.keys()
        for image_id, det in alone.items():
            other = batched[image_id]
            assert len(det["scores"]) == len(other["scores"]) > 0, image_id
            torch.testing.assert_close(other["scores"], det["scores"], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(other["boxes"], det["boxes"], rtol=1e-4, atol=1e-3)
            assert torch.equal(other["labels"], det["labels"])
