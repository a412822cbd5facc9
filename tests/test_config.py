import pytest

from liafkd.config import ConfigError, load_config

BASE = """
name: t
data:
  train: {format: synthetic, root: data/synth, split: train}
  val: {format: synthetic, root: data/synth, split: val}
"""


def write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_relative_root_resolves_against_config_file(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.data.train.root == str((tmp_path / "data/synth").resolve())


def test_unknown_key_names_path_and_nearest_name(tmp_path):
    path = write(tmp_path, BASE + "train:\n  optim:\n    lrr: 0.1\n")
    with pytest.raises(
        ConfigError, match=r"train\.optim\.lrr: unknown key \(did you mean 'train\.optim\.lr'\?\)"
    ):
        load_config(path)


def test_wrong_type_names_key(tmp_path):
    path = write(tmp_path, BASE + "train:\n  seed: abc\n")
    with pytest.raises(ConfigError, match=r"train\.seed: Input should be a valid integer"):
        load_config(path)


def test_set_override_parses_yaml_values(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["train.seed=7", "model.depth=34", "train.amp=bf16"])
    assert (cfg.train.seed, cfg.model.depth, cfg.train.amp) == (7, 34, "bf16")


def test_unknown_top_level_key_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"zzz: unknown key \(valid keys here: name, output_dir"):
        load_config(write(tmp_path, BASE + "zzz: 1\n"))


def test_base_chain_merges_and_resolves_paths_per_file(tmp_path):
    (tmp_path / "recipes").mkdir()
    base = tmp_path / "recipes" / "base.yaml"
    base.write_text(BASE + "model:\n  depth: 34\n  width: 16\ntrain:\n  seed: 3\n")
    child = tmp_path / "child.yaml"
    child.write_text(
        "_base_: recipes/base.yaml\nname: child\nmodel:\n  width: 32\n"
        "distill:\n  method: mimic\n  teacher: {config: t.yaml, checkpoint: t.pt}\n"
    )
    cfg = load_config(child, ["train.seed=5"])
    assert (cfg.name, cfg.model.depth, cfg.model.width, cfg.train.seed) == ("child", 34, 32, 5)
    assert cfg.data.train.root == str((tmp_path / "recipes" / "data/synth").resolve())
    assert cfg.distill["teacher"]["checkpoint"] == str(tmp_path / "t.pt")


def test_base_cycle_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="`_base_` cycle"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "train.schedule.epochs=-3",
            r"train\.schedule\.epochs: Input should be greater than or equal to 1",
        ),
        (
            "train.schedule.epochs=0",
            r"train\.schedule\.epochs: Input should be greater than or equal to 1",
        ),
        ("data.batch_size=0", r"data\.batch_size: Input should be greater than or equal to 1"),
        ("train.optim.lr=0", r"train\.optim\.lr: Input should be greater than 0"),
        ("train.optim.lr=-0.1", r"train\.optim\.lr: Input should be greater than 0"),
        ("train.max_nonfinite_share=1.5", r"train\.max_nonfinite_share: Input should be less"),
        ("model.max_dets=0", r"model\.max_dets: Input should be greater than or equal to 1"),
        ("data.augment.image_size=[0,320]", r"data\.augment: Value error, image_size: sizes must"),
    ],
)
def test_out_of_range_values_are_refused_with_the_key_path(tmp_path, override, message):
    path = write(tmp_path, BASE)
    with pytest.raises(ConfigError, match=rf"cfg\.yaml: {message}"):
        load_config(path, [override])


def test_out_of_range_epochs_stop_train_with_exit_2(tiny_config, tmp_path, capsys):
    from liafkd.cli.main import main

    assert main(["train", str(tiny_config("run")), "--set", "train.schedule.epochs=0"]) == 2
    assert (
        "train.schedule.epochs: Input should be greater than or equal to 1"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "text, key",
    [
        ("  batch_size: true\n", r"data\.batch_size"),  # inside BASE's data block
        ("train:\n  optim:\n    lr: on\n", r"train\.optim\.lr"),
        ("train:\n  schedule:\n    steps: [8, yes]\n", r"train\.schedule\.steps"),
        ("  augment:\n    image_size: [true, 320]\n", r"data\.augment\.image_size"),
        ("train:\n  optim:\n    grad_clip: false\n", r"train\.optim\.grad_clip"),
    ],
)
def test_booleans_are_not_numbers(tmp_path, text, key):
    """YAML's true/on/yes would otherwise become 1 or 1.0."""
    with pytest.raises(ConfigError, match=rf"cfg\.yaml: {key}: Value error, expected a number"):
        load_config(write(tmp_path, BASE + text))


def test_booleans_stay_booleans_and_numbers_numbers(tmp_path):
    cfg = load_config(
        write(tmp_path, BASE),
        ["data.cache_images=true", "data.batch_size=4", "train.optim.lr=1e-3"],
    )
    assert (cfg.data.cache_images, cfg.data.batch_size, cfg.train.optim.lr) == (True, 4, 0.001)


@pytest.mark.parametrize("value", ["''", "'  '"])
def test_empty_output_dir_is_refused(tmp_path, value):
    with pytest.raises(
        ConfigError, match=r"cfg\.yaml: output_dir: Value error, must name a folder"
    ):
        load_config(write(tmp_path, BASE + f"output_dir: {value}\n"))
