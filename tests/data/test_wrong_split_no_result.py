"""A wrong path or a wrong split never yields a result: a split name the dataset lacks,
a KITTI root without ImageSets/ asked for `val`, an empty dataset, result files that
match no label."""

import shutil
from pathlib import Path

import pytest
from dataset_fixtures import kitti_line, make_kitti, write_dataset_yaml, write_text

from liafkd.cli.main import main
from liafkd.config import DatasetConfig
from liafkd.data.formats import DatasetError, read_dataset

CAR = kitti_line("Car", (10, 5, 60, 30))


def _kitti(tmp_path: Path, split: str | None = "train") -> Path:
    root = make_kitti(tmp_path / "kitti", {"000000": [CAR], "000001": [CAR]}, split=split)
    if split is not None:
        write_text(root / "ImageSets" / "val.txt", "000001\n")
    return root


@pytest.mark.parametrize("split", ["validation", "Val", "test"])
def test_kitti_split_typo_is_refused_with_the_available_splits(tmp_path, split):
    root = _kitti(tmp_path)
    with pytest.raises(
        DatasetError, match=r"split file not found \(available: \['train', 'val'\]\)"
    ):
        read_dataset(DatasetConfig(format="kitti", root=str(root), split=split))


def test_kitti_without_imagesets_refuses_val_and_says_how(tmp_path):
    root = _kitti(tmp_path, split=None)
    train = read_dataset(DatasetConfig(format="kitti", root=str(root), split="train"))
    assert len(train.records) == 2  # train: every label file
    for split in ("val", "trainval"):
        with pytest.raises(DatasetError) as caught:
            read_dataset(DatasetConfig(format="kitti", root=str(root), split=split))
        message = str(caught.value)
        assert "ImageSets/ holds no split file" in message and f"ImageSets/{split}.txt" in message
        assert "ratio: 0.8" in message
    # a ratio split divides the labels instead: val and train share no image
    halves = [
        read_dataset(
            DatasetConfig(
                format="kitti", root=str(root), split={"ratio": 0.5, "seed": 0, "part": part}
            )
        )
        for part in ("train", "val")
    ]
    stems = [{Path(r.file_name).stem for r in half.records} for half in halves]
    assert stems[0] and stems[1] and not stems[0] & stems[1]


@pytest.mark.parametrize("case", ["no_files", "only_bad_images"])
def test_data_check_of_an_empty_dataset_exits_1(tmp_path, capsys, case):
    root = _kitti(tmp_path)
    if case == "no_files":
        for folder in ("label_2", "image_2"):
            shutil.rmtree(root / "training" / folder)
            (root / "training" / folder).mkdir()
        (root / "ImageSets" / "train.txt").write_text("")
    else:
        for image in (root / "training" / "image_2").iterdir():
            image.write_bytes(b"not an image")
    config = write_dataset_yaml(tmp_path / "ds.yaml", format="kitti", root=str(root))
    assert main(["data", "check", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"error: no usable image in {root} (split train)" in err


def _results(tmp_path: Path, stems: list[str]) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    for stem in stems:
        write_text(folder / f"{stem}.txt", CAR + " 0.9\n")
    return folder


@pytest.mark.parametrize(
    "stems, shown",
    [
        (["000000", "000001", "cam_b"], "cam_b.txt"),  # a name
        (["000000", "000001", "000002"], "000002.txt"),  # ids shifted by one
        (["0", "1"], "0.txt, 1.txt"),  # ids not zero-padded
    ],
)
def test_kitti_eval_refuses_result_files_that_match_no_label(tmp_path, capsys, stems, shown):
    root = _kitti(tmp_path)
    results = _results(tmp_path, stems)
    labels = str(root / "training" / "label_2")
    assert main(["kitti-eval", "--labels", labels, "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "match no label file" in err and f"(e.g. {shown})" in err


def test_kitti_eval_counts_results_outside_the_split(tmp_path, capsys):
    root = _kitti(tmp_path)
    results = _results(tmp_path, ["000000", "000001"])
    labels = str(root / "training" / "label_2")
    split = str(root / "ImageSets" / "val.txt")
    assert (
        main(["kitti-eval", "--labels", labels, "--results", str(results), "--split", split]) == 0
    )
    captured = capsys.readouterr()
    assert "1 images" in captured.out
    assert "note: 1 result file(s) are for labelled images outside --split" in captured.err
