"""Image files read one way everywhere: 16-bit scaled, EXIF applied, bad pixels caught."""

import json
import sys
from pathlib import Path

import numpy as np
import yaml
from dataset_fixtures import kitti_line, make_kitti, write_dataset_yaml
from PIL import Image

from liafkd.cli.main import main
from liafkd.config import load_config
from liafkd.data.dataset import load_image
from liafkd.data.images import header_size, read_rgb
from liafkd.engine.build import load_index

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))


def test_16bit_png_is_scaled_to_8_bits_not_white(tmp_path):
    values = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)  # mode I;16
    with Image.open(path) as img:
        assert img.mode.startswith("I")
    pixels = load_image(str(path)).numpy()
    expected = np.rint(values / 257.0).astype(np.uint8)
    for channel in pixels:
        np.testing.assert_array_equal(channel, expected)
    assert pixels.min() == 0 and pixels.max() == 255


def exif_rotated_jpeg(path, orientation=6, size=(40, 20)):
    """Stored `size` (w, h), red top-left corner; the EXIF tag turns it when displayed."""
    img = Image.new("RGB", size, (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 8, 8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes(), quality=100)
    return path


def test_exif_orientation_is_applied_to_pixels_and_sizes(tmp_path):
    path = exif_rotated_jpeg(tmp_path / "phone.jpg")
    assert header_size(path) == (20, 40)  # displayed: turned by 90 degrees
    rgb = np.asarray(read_rgb(path))
    assert rgb.shape == (40, 20, 3)
    # orientation 6 displays the stored image turned 90 degrees clockwise: the stored
    # top-left corner is shown top-right
    assert rgb[2, -3, 0] > 200 and rgb[2, -3, 2] < 60
    assert rgb[2, 2, 2] > 200


def test_exif_image_trains_as_displayed_in_a_dataset(tmp_path):
    root = make_kitti(tmp_path / "k", {"000000": [kitti_line("Car", (2, 2, 15, 30))]})
    image = root / "training" / "image_2" / "000000.png"
    image.unlink()
    exif_rotated_jpeg(image.with_suffix(".jpg"))
    cfg = load_config(write_config(tmp_path, root))
    index = load_index(cfg.data.train, "data.train")
    record = index.records[0]
    assert (record.width, record.height) == (20, 40)
    assert tuple(load_image(record.file_name).shape) == (3, 40, 20)


def write_config(tmp_path, root, policy="drop"):
    ds = {"format": "kitti", "root": str(root), "classes": ["Car"], "policy": policy}
    raw = {"output_dir": str(tmp_path / "run"), "data": {"train": ds, "val": ds}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def truncate_pixels(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: max(200, len(data) // 2)])  # header intact, pixel data cut
    return path


def test_data_check_decodes_every_image_and_reports_a_truncated_jpeg(tmp_path, capsys):
    root = make_kitti(
        tmp_path / "k", {f"00000{i}": [kitti_line("Car", (2, 2, 30, 30))] for i in range(3)}
    )
    bad = root / "training" / "image_2" / "000001.png"
    bad.unlink()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (40, 120, 3), dtype=np.uint8)  # noise: a long file
    Image.fromarray(noise).save(bad.with_suffix(".jpg"), quality=95)
    truncate_pixels(bad.with_suffix(".jpg"))
    header_size(bad.with_suffix(".jpg"))  # the header still reads
    config = write_dataset_yaml(tmp_path / "ds.yaml", format="kitti", root=str(root))
    out = tmp_path / "summary.json"
    assert main(["data", "check", str(config), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["images"] == 2
    [problem] = summary["problems"]["unreadable_image"]
    assert problem["location"].endswith("000001.jpg") and problem["dropped"]
    assert "cannot read image" in problem["message"]
    strict = write_dataset_yaml(
        tmp_path / "s.yaml", format="kitti", root=str(root), policy="strict"
    )
    assert main(["data", "check", str(strict)]) == 1


def test_training_drops_an_unreadable_image_under_drop_and_stops_under_strict(
    tiny_config, tmp_path, capsys
):
    cfg = tiny_config("drop", max_steps=3)
    index = load_index(load_config(cfg).data.train, "data.train")
    broken = truncate_pixels(Path(index.records[0].file_name))
    assert main(["train", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert f"dropped an unreadable image (data.train.policy: drop): {broken}" in out
    summary = json.loads((tmp_path / "drop" / "summary.json").read_text())
    assert len(summary["dropped_unreadable_images"]) == 1
    assert str(broken) in summary["dropped_unreadable_images"][0]

    raw = yaml.safe_load(tiny_config("strict", max_steps=3).read_text())
    raw["data"]["train"]["policy"] = "strict"
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(raw))
    assert main(["train", str(strict)]) == 2
    err = capsys.readouterr().err
    assert str(broken) in err and "cannot read image" in err and "Traceback" not in err


def test_predict_on_a_folder_skips_a_bad_image_and_writes_the_rest(
    tiny_distill_runs, tmp_path, capsys
):
    raw = yaml.safe_load(tiny_distill_runs["teacher"].read_text())
    checkpoint = f"{raw['output_dir']}/final.pt"
    synth = Path(raw["data"]["val"]["root"])
    folder = tmp_path / "images"
    folder.mkdir()
    stems = (synth / "ImageSets" / "val.txt").read_text().split()[:3]
    for stem in stems:
        (folder / f"{stem}.png").write_bytes(
            (synth / "training" / "image_2" / f"{stem}.png").read_bytes()
        )
    truncate_pixels(folder / f"{stems[1]}.png")
    (folder / "zzz.png").write_bytes(b"not an image")
    out = tmp_path / "pred.json"
    assert main(["predict", checkpoint, str(folder), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{folder / stems[1]}.png" in err and "zzz.png" in err
    assert "skipped 2 unreadable image(s)" in err
    table = json.loads((tmp_path / "pred_images.json").read_text())
    assert sorted(Path(t["file_name"]).stem for t in table) == sorted([stems[0], stems[2]])
