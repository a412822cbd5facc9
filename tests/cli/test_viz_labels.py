"""viz names pictures by file, and plots VOC data's `difficult` where KITTI's occlusion
level is missing."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from liafkd.data.records import DatasetIndex, ImageRecord  # noqa: E402
from liafkd.viz import _occlusion_panel, plot_instance_images  # noqa: E402


def test_occlusion_panel_falls_back_to_difficult():
    rows = [{"difficult": i % 3 == 0, "weight": 1.0} for i in range(9)]
    fig, ax = plt.subplots()
    _occlusion_panel(ax, rows, np.linspace(0.5, 1.5, 9))
    assert ax.get_title() == "weight by `difficult`"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["no\n(n=6)", "yes\n(n=3)"]
    plt.close(fig)


def test_gt_pictures_are_titled_by_file_name(tmp_path, monkeypatch):
    path = tmp_path / "BloodImage_00042.jpg"
    Image.new("RGB", (64, 48)).save(path)
    record = ImageRecord(
        image_id=7,
        file_name=str(path),
        width=64,
        height=48,
        boxes_xyxy=np.array([[4, 4, 30, 30]], np.float32),
        labels=np.zeros(1, np.int64),
    )
    rows = [{"image_id": 7, "label": 0, "weight": 1.2, "size": 26.0, "box_orig": [4, 4, 30, 30]}]
    titles = []
    real = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "set_title",
        lambda self, text, *a, **k: titles.append(text) or real(self, text, *a, **k),
    )
    plot_instance_images({1: rows}, [1], DatasetIndex([record], ["cell"]), [7], tmp_path / "g.png")
    assert "BloodImage_00042.jpg (id 7), epoch 1" in titles
