"""A generated dataset lives in a folder liafkd owns (its marker lists the files it
wrote): it is never regenerated over a user's files, never by a read-only `data check`,
and regenerating leaves no stale image behind."""

import json

import pytest
import yaml

from liafkd.cli.main import main
from liafkd.config import ConfigError, DatasetConfig
from liafkd.data.synthetic import META_FILE, ensure_synthetic, generate_synthetic

SIZE = (64, 96)


def config(root, images=3, seed=0):
    return DatasetConfig(
        format="synthetic", root=str(root), synth_images=images, synth_seed=seed, synth_size=SIZE
    )


def synth(out, images, *extra):
    args = ["data", "synth", "--out", str(out), "--images", str(images)]
    return main([*args, "--height", str(SIZE[0]), "--width", str(SIZE[1]), *extra])


def images_in(root):
    return sorted(p.name for p in (root / "training" / "image_2").iterdir())


def tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_marker_lists_every_file_written(tmp_path):
    generate_synthetic(tmp_path / "s", 2, seed=0, size=SIZE)
    listed = json.loads((tmp_path / "s" / META_FILE).read_text())["files"]
    assert sorted(listed) == sorted(tree(tmp_path / "s"))


def test_a_set_with_user_files_is_never_regenerated(tmp_path):
    root = tmp_path / "s"
    ensure_synthetic(config(root, images=3))
    (root / "NOTES.md").write_text("my notes")
    (root / "my_results").mkdir()
    (root / "my_results" / "ap.txt").write_text("0.5")
    before = tree(root)
    with pytest.raises(ConfigError) as refused:
        ensure_synthetic(config(root, images=4))  # another size: would regenerate
    message = str(refused.value)
    assert "NOTES.md" in message and "my_results/ap.txt" in message and "move those" in message
    assert tree(root) == before
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no staging folder left


def test_a_set_holding_only_its_own_files_is_regenerated_without_stale_images(tmp_path):
    root = tmp_path / "s"
    ensure_synthetic(config(root, images=5))
    ensure_synthetic(config(root, images=2, seed=1))
    assert images_in(root) == ["000000.png", "000001.png"]
    assert json.loads((root / META_FILE).read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_data_synth_into_an_older_larger_set_leaves_no_stale_images(tmp_path, capsys):
    out = tmp_path / "s"
    assert synth(out, 5) == 0
    assert synth(out, 2, "--seed", "3") == 0
    assert images_in(out) == ["000000.png", "000001.png"]
    assert len(list((out / "training" / "label_2").iterdir())) == 2
    # the same set again: nothing regenerated; a grid inside the set joins its marker
    capsys.readouterr()
    assert synth(out, 2, "--seed", "3", "--grid", str(out / "grid.png")) == 0
    assert "nothing generated" in capsys.readouterr().out
    assert "grid.png" in json.loads((out / META_FILE).read_text())["files"]
    assert synth(out, 1) == 0  # the grid is liafkd's: no refusal, and it is gone
    assert not (out / "grid.png").exists() and images_in(out) == ["000000.png"]


def test_data_synth_refuses_a_folder_of_other_files(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "NOTES.md").write_text("keep")
    assert synth(out, 2) == 2
    assert "not a synthetic set liafkd wrote" in capsys.readouterr().err
    assert tree(out) == {"NOTES.md": b"keep"}
    (tmp_path / "afile").write_text("")
    assert synth(tmp_path / "afile", 2) == 2
    assert "is a file" in capsys.readouterr().err


def test_a_set_written_before_the_marker_listed_its_files(tmp_path):
    """Older sets: their files are recognised by the generator's names."""
    root = tmp_path / "s"
    generate_synthetic(root, 3, seed=0, size=SIZE)
    meta = json.loads((root / META_FILE).read_text())
    del meta["files"]
    (root / META_FILE).write_text(json.dumps(meta))
    (root / "training" / "image_2" / "000007.png").write_bytes(b"stale, from a larger set")
    (root / "NOTES.md").write_text("mine")
    with pytest.raises(ConfigError, match="NOTES.md"):
        ensure_synthetic(config(root, images=2))
    (root / "NOTES.md").unlink()
    ensure_synthetic(config(root, images=2))
    assert images_in(root) == ["000000.png", "000001.png"]


def test_data_check_never_generates(tmp_path, capsys):
    root = tmp_path / "s"
    cfg_path = tmp_path / "ds.yaml"
    raw = {"format": "synthetic", "root": str(root), "synth_images": 3, "synth_size": list(SIZE)}
    cfg_path.write_text(yaml.safe_dump(raw))
    assert main(["data", "check", str(cfg_path)]) == 2
    err = capsys.readouterr().err
    assert "is not there" in err and f"liafkd data synth --out {root} --images 3" in err
    assert not root.exists()
    ensure_synthetic(config(root, images=4))
    before = tree(root)
    assert main(["data", "check", str(cfg_path)]) == 2
    assert "holds 4 images" in capsys.readouterr().err
    assert tree(root) == before
    ensure_synthetic(config(root, images=3))
    assert main(["data", "check", str(cfg_path)]) == 0
