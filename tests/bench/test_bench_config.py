from pathlib import Path

import pytest
import yaml

from liafkd.bench.config import load_bench, resolve_bench_path
from liafkd.bench.presets import PRESET_DIR, preset_names
from liafkd.bench.runner import plan_run, plan_teacher
from liafkd.cli.main import main
from liafkd.config import ConfigError

MODEL = {"depth": 18, "width": 8, "fpn_channels": 16, "head_convs": 1, "head_channels": 16}


def minimal(**changes) -> dict:
    raw = {
        "name": "b",
        "expected_wall_time": "1 min",
        "output_dir": "out",
        "work_dir": "work",
        "teacher": {"model": MODEL},
        "student": {"model": MODEL},
        "datasets": [
            {
                "name": "synth",
                "train": {"format": "synthetic", "root": "synth", "split": "train"},
                "val": {"format": "synthetic", "root": "synth", "split": "val"},
            }
        ],
        "methods": ["none", "liaf"],
        "seeds": [0],
    }
    raw.update(changes)
    return raw


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


LIVE = {
    "cpu-smoke",
    "cpu-synthetic-v2",
    "cpu-synthetic-v2-tune",
    "cpu-synthetic-v2-tune-coop",
    "cpu-synthetic-rank",
    "cpu-bccd-v2",
    "cpu-bccd-rank",
    "cpu-mechanism",
    "gpu-coco",
    "gpu-kitti",
}
ARCHIVE = PRESET_DIR / "archive"
ARCHIVED = sorted(p.stem for p in ARCHIVE.glob("*.yaml"))
REPO = PRESET_DIR.parents[1]


def test_the_presets_are_the_live_ones_and_help_names_no_archived_one(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # no line breaks inside a name
    assert LIVE <= set(preset_names())
    assert "cpu-bccd" in ARCHIVED and "cpu-synthetic-v2-w12" in ARCHIVED
    assert not set(ARCHIVED) & set(preset_names())
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    listed = capsys.readouterr().out
    assert all(name in listed for name in LIVE) and "cpu-synthetic-v2-w12" not in listed
    assert "cpu-bccd-calibrated" not in listed


@pytest.mark.parametrize("name", ARCHIVED)
def test_archived_presets_run_by_path_into_the_archive(name):
    """Their relative paths were moved one folder down with them: datasets, data roots and
    given teachers resolve to the same places as before the move."""
    bench = load_bench(ARCHIVE / f"{name}.yaml")
    assert bench.cfg.name == name
    assert bench.cfg.output_dir == f"benchmarks/archive/{name}"
    assert (REPO / bench.cfg.output_dir / "results.jsonl").is_file()
    for train, val in bench.datasets.values():
        for split in (train, val):
            if split.format == "synthetic":
                assert Path(split.root).parent == REPO / "data"
    for teacher in bench.teachers.values():
        if teacher.is_trained:
            assert Path(teacher.config).is_relative_to(REPO / "runs" / "bench")


@pytest.mark.parametrize("preset", preset_names())
def test_presets_load_and_state_their_wall_time(preset):
    bench = load_bench(resolve_bench_path(preset))
    assert bench.cfg.name == preset
    assert (
        "min" in bench.cfg.expected_wall_time
        or " h" in bench.cfg.expected_wall_time
        or ("days" in bench.cfg.expected_wall_time)
    )
    assert bench.cfg.output_dir == f"benchmarks/{preset}"
    assert len(bench.cfg.seeds) >= 2


def test_preset_file_and_unknown_name(tmp_path):
    assert resolve_bench_path("cpu-smoke") == PRESET_DIR / "cpu-smoke.yaml"
    with pytest.raises(ConfigError, match="nope: bench config not found.*cpu-smoke"):
        resolve_bench_path("nope")


def test_methods_as_names_and_as_ablation_rows(tmp_path):
    ablation = {
        "name": "liaf-adv",
        "method": "liaf",
        "options": {"liaf": {"selector": {"objective": "adversarial"}}},
    }
    bench = load_bench(
        write(
            tmp_path,
            minimal(
                methods=["none", ablation],
                distill_options={"checks": {"enabled": False}, "liaf": {"alpha_fg": 0.002}},
            ),
        )
    )
    row = bench.cfg.method("liaf-adv")
    block = bench.distill_block(row)
    assert block["method"] == "liaf"
    assert block["liaf"] == {"alpha_fg": 0.002, "selector": {"objective": "adversarial"}}
    assert block["checks"] == {"enabled": False}
    assert bench.datasets["synth"][0].root == str(tmp_path / "synth")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"methods": ["liaf"]}, "must include `none`"),
        ({"methods": ["none", "liaf", "liaf"]}, "name 'liaf' appears twice"),
        ({"methods": ["none", {"name": "floor", "method": "mimic"}]}, "`floor` is reserved"),
        ({"methods": ["none", "magic"]}, r"methods\.1\.method"),
        ({"seeds": [0, 0]}, "seed 0 appears twice"),
        ({"seeds": []}, "seeds"),
        ({"seed": [0]}, r"seed: unknown key \(did you mean 'seeds'\?\)"),
        ({"teacher": {"model": MODEL, "checkpoint": "t.pt"}}, "needs both `config` and"),
        ({"teacher": {"train": {}}}, "either a recipe"),
        ({"comparisons": [["liaf", "fgd"]]}, r"comparisons\.0: 'fgd' not among the methods"),
        ({"comparisons": [["liaf"]]}, r"comparisons\.0"),
        ({"validity": ["fgd"]}, "validity: 'fgd' is not a method row other than `none`"),
        ({"validity": ["none"]}, "validity: 'none' is not a method row"),
    ],
)
def test_bad_bench_configs_name_the_key(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        load_bench(write(tmp_path, minimal(**changes)))


def test_method_options_are_validated_as_distill_blocks(tmp_path):
    row = {"name": "x", "method": "liaf", "options": {"liaf": {"selector": {"lamb": 0.3}}}}
    with pytest.raises(ConfigError) as err:
        load_bench(write(tmp_path, minimal(methods=["none", row])))
    assert "methods[1] (x)" in str(err.value)
    assert (
        "distill.liaf.selector.lamb: unknown key (did you mean 'distill.liaf.selector.lam'?)"
        in (str(err.value))
    )


def test_a_missing_dataset_file_is_named(tmp_path):
    entry = {"name": "d", "train": "nowhere.yaml", "val": "nowhere.yaml"}
    with pytest.raises(ConfigError, match=r"datasets\.d\.train: dataset config .*nowhere.yaml"):
        load_bench(write(tmp_path, minimal(datasets=[entry])))


def test_run_keys_follow_what_the_run_depends_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bench = load_bench(write(tmp_path, minimal(seeds=[0, 1])))
    teacher = plan_teacher(bench, "synth")
    none, liaf = bench.cfg.methods
    key = plan_run(bench, "synth", teacher, liaf, 0).key
    assert key == plan_run(bench, "synth", teacher, liaf, 0).key  # stable
    assert key != plan_run(bench, "synth", teacher, liaf, 1).key  # seed
    assert key != plan_run(bench, "synth", teacher, none, 0).key  # method
    changed = load_bench(write(tmp_path, minimal(student={"model": {**MODEL, "width": 16}})))
    assert key != plan_run(changed, "synth", plan_teacher(changed, "synth"), liaf, 0).key
    # a checkout that moves keeps its keys (dataset roots are hashed relative to the file)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    path = moved / "bench.yaml"
    path.write_text((tmp_path / "bench.yaml").read_text().replace("width: 16", "width: 8"))
    relocated = load_bench(path)
    assert key == plan_run(relocated, "synth", plan_teacher(relocated, "synth"), liaf, 0).key
