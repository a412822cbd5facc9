"""Training and evaluation under torchrun (2 CPU processes, gloo) against one process.

The equality of weights is exact only when the two runs compute the same gradients:
- BatchNorm: in train mode its statistics come from each process's own batch, so
  2 x B and 1 x 2B differ (SyncBatchNorm would fix that, but it needs CUDA). The runs
  here use `model.norm_eval: true` (running statistics, batch-independent); the head's
  GroupNorm is per image.
- Loss normalisation: GFL divides by the number of positives of the batch, and each
  process normalises by its own. DDP averages gradients, i.e. it steps on the mean of
  the per-process losses; the one-process reference therefore computes the loss of
  each half of its combined batch separately and averages them.
- Order: rank r trains on order[r::2]; the reference sampler lays out each combined
  batch as rank 0's batch followed by rank 1's, so both see the same samples with the
  same augmentation seeds.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from liafkd.cli.main import main
from liafkd.config import ConfigError, ModelConfig, load_config
from liafkd.engine import distributed
from liafkd.engine import trainer as trainer_mod
from liafkd.engine.build import build_student, load_index
from liafkd.engine.checkpoint import load_checkpoint
from liafkd.engine.distill_module import merge_weight_stats
from liafkd.engine.distributed import (
    DistContext,
    convert_sync_bn,
    device_for,
    env_context,
    eval_shard,
    wrap_for_training,
)
from liafkd.engine.evaluate import evaluate_checkpoint, evaluate_detector
from liafkd.engine.runs import train_detector
from liafkd.engine.sampler import ResumableSampler

WORLD = 2
BATCH = 2  # per process
CLASSES = ["Car", "Pedestrian", "Cyclist"]  # the synthetic set's


def torchrun(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 ARGS` on the CPU (gloo), free port."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        + [f"--nproc_per_node={WORLD}", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def edit_config(path: Path, **changes) -> Path:
    """Set dotted keys, e.g. `data__batch_size=2` sets data.batch_size."""
    raw = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[key] = value
    path.write_text(yaml.safe_dump(raw))
    return path


class CombinedBatches(ResumableSampler):
    """One process yielding what WORLD ranks with batch BATCH see: combined batch k is
    rank 0's k-th batch, then rank 1's, ..."""

    def __init__(self, num_samples, seed, shuffle=True, rank=0, world_size=1):
        super().__init__(num_samples, seed, shuffle)

    def per_rank(self) -> int:
        return -(-self.num_samples // WORLD) * WORLD

    def epoch_order(self):
        ranks = []
        for rank in range(WORLD):
            sampler = ResumableSampler(self.num_samples, self.seed, self.shuffle, rank, WORLD)
            sampler.set_epoch(self.epoch)
            ranks.append(sampler.epoch_order())
        return [
            pair
            for start in range(0, len(ranks[0]), BATCH)
            for part in ranks
            for pair in part[start : start + BATCH]
        ]


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_combined_batch(
    tiny_config, tmp_path, monkeypatch
):
    cfg = edit_config(tiny_config("ddp"), data__batch_size=BATCH, model__norm_eval=True)
    done = torchrun("-m", "liafkd", "train", str(cfg))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("done:") == 1  # rank 0 alone prints

    original = trainer_mod.DetectorTrainModule.forward

    def mean_of_halves(self, images, targets):
        n = len(targets) // WORLD
        parts = [original(self, images[i : i + n], targets[i : i + n]) for i in (0, n)]
        return {k: sum(p[k] for p in parts) / WORLD for k in parts[0]}

    monkeypatch.setattr(trainer_mod, "ResumableSampler", CombinedBatches)
    monkeypatch.setattr(trainer_mod.DetectorTrainModule, "forward", mean_of_halves)
    reference = tmp_path / "reference"
    train_detector(str(cfg), [f"data.batch_size={WORLD * BATCH}", f"output_dir={reference}"])

    ddp_out = tmp_path / "ddp"
    a = load_checkpoint(reference / "final.pt")["model"]
    b = load_checkpoint(ddp_out / "final.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-5, msg=key)

    records = [json.loads(line) for line in (ddp_out / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["type"] == "epoch" for r in records) == 2  # written once, not per rank
    assert sum(r["type"] == "train" for r in records) == 2 * 3  # 5 samples per rank, batch 2
    ckpt = load_checkpoint(ddp_out / "checkpoints" / "epoch_2.pt")
    assert ckpt["world_size"] == WORLD and len(ckpt["rng_per_rank"]) == WORLD

    # the distributed validation of the final weights equals one process's evaluation
    summary = json.loads((ddp_out / "summary.json").read_text())
    single, _ = evaluate_checkpoint(load_config(cfg), str(ddp_out / "final.pt"))
    assert summary["final"]["AP"] == single["AP"]
    assert summary["final"]["kitti"] == single["kitti"]


EVAL_SCRIPT = """
import json, sys
import torch
from liafkd.config import load_config
from liafkd.engine.build import build_student, load_index
from liafkd.engine.distributed import distributed_run, main_first
from liafkd.engine.evaluate import evaluate_detector

cfg = load_config(sys.argv[1])
with distributed_run("cpu") as ctx:
    with main_first():
        index = load_index(cfg.data.val, "data.val")
    torch.manual_seed(0)
    detector = build_student(cfg.model, len(index.class_names))
    metrics, dets = evaluate_detector(
        detector, index, cfg.data.augment, torch.device("cpu"), batch_size=2, kitti=True
    )
    if ctx.is_main:
        with open(sys.argv[2], "w") as f:
            json.dump({"metrics": metrics, "detections": dets}, f)
"""


@pytest.mark.slow
def test_distributed_evaluation_equals_single_process(tiny_config, tmp_path):
    # 20 images: 5 val images in batches [0,1] [2,3] [4]; rank 0 gets two, rank 1 one
    cfg = edit_config(
        tiny_config("eval"),
        data__val__synth_images=20,
        data__train__synth_images=20,
        model__score_thr=0.0,
    )
    script = tmp_path / "eval_worker.py"
    script.write_text(EVAL_SCRIPT)
    out = tmp_path / "ddp_eval.json"
    done = torchrun(str(script), str(cfg), str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    ddp = json.loads(out.read_text())

    loaded = load_config(cfg)
    index = load_index(loaded.data.val, "data.val")
    assert len(index.records) == 5
    torch.manual_seed(0)
    detector = build_student(loaded.model, len(index.class_names))
    metrics, dets = evaluate_detector(
        detector, index, loaded.data.augment, torch.device("cpu"), batch_size=2, kitti=True
    )
    assert len(dets) > 0
    assert ddp["detections"] == json.loads(json.dumps(dets))
    assert ddp["metrics"] == json.loads(json.dumps(metrics))


FAULT_SCRIPT = """
import os, signal, sys
from liafkd.cli.main import main
from liafkd.engine import trainer

original_step = trainer.Trainer.train_step
original_forward = trainer.DetectorTrainModule.forward
steps = [0]  # training steps begun (the checks before training also run forward)


def train_step(self, images, targets):
    steps[0] += 1
    return original_step(self, images, targets)


def forward(self, images, targets):
    terms = original_forward(self, images, targets)
    if os.environ["RANK"] == "1" and steps[0] == 1:
        terms["loss_cls"] = terms["loss_cls"] * float("nan")
    if os.environ["RANK"] == "1" and steps[0] == 2:
        os.kill(os.getpid(), signal.SIGTERM)
    return terms


trainer.Trainer.train_step = train_step
trainer.DetectorTrainModule.forward = forward
sys.exit(main(["train", sys.argv[1]]))
"""


@pytest.mark.slow
def test_one_rank_nonfinite_or_signalled_stops_every_rank_together(tiny_config, tmp_path, capsys):
    """Rank 1 alone gets a NaN loss in step 1 and SIGTERM in step 2: both ranks skip
    step 1 (else rank 0 would wait forever in the gradient all-reduce), both stop after
    step 2, and rank 0 writes the checkpoint."""
    cfg = edit_config(tiny_config("fault"), data__batch_size=BATCH, model__norm_eval=True)
    script = tmp_path / "fault_worker.py"
    script.write_text(FAULT_SCRIPT)
    done = torchrun(str(script), str(cfg))
    assert done.returncode != 0
    assert "resume with --resume" in done.stderr, done.stdout + done.stderr
    ckpt_path = tmp_path / "fault" / "checkpoints" / "epoch_1_iter_2.pt"
    ckpt = load_checkpoint(ckpt_path)
    assert (ckpt["step"], ckpt["nonfinite_total"], ckpt["world_size"]) == (1, 1, WORLD)

    # a mid-epoch checkpoint resumes only with as many processes as wrote it
    assert main(["train", str(cfg), "--resume", str(ckpt_path)]) == 2
    assert "nproc_per_node 2" in capsys.readouterr().err


@pytest.mark.slow
def test_distillation_under_torchrun_gathers_every_rank_instances(tiny_config, tmp_path):
    """LIAF (adapters and selector inside DDP, the teacher outside it on each rank) for
    one epoch: the instance dump written by rank 0 holds the instances of both ranks."""
    teacher_yaml = edit_config(tiny_config("teacher"), model__norm_eval=True)
    torch.manual_seed(1)  # a teacher unlike the student (seed 0), so the KD terms are not 0
    teacher = build_student(load_config(teacher_yaml).model, 3).state_dict()
    torch.save({"model": teacher, "meta": {"class_names": CLASSES}}, tmp_path / "teacher.pt")
    cfg = edit_config(
        tiny_config("liaf"),
        data__batch_size=BATCH,
        model__norm_eval=True,
        train__schedule__epochs=1,
        distill={
            "method": "liaf",
            "teacher": {"config": str(teacher_yaml), "checkpoint": str(tmp_path / "teacher.pt")},
            "checks": {"min_teacher_ap50": 0.0},
            "liaf": {"selector": {"lam": 0.5}},  # lam 0 (the default) has no selector
        },
    )
    done = torchrun("-m", "liafkd", "distill", str(cfg))
    assert done.returncode == 0, done.stdout + done.stderr

    rows = (tmp_path / "liaf" / "instances" / "epoch_1.jsonl").read_text().splitlines()
    dumped = {json.loads(row)["image_id"] for row in rows}
    train = load_index(load_config(cfg).data.train, "data.train")
    assert dumped == {r.image_id for r in train.records if r.num_instances}
    ckpt = load_checkpoint(tmp_path / "liaf" / "checkpoints" / "epoch_1.pt")
    assert any("selector" in key for key in ckpt["distiller"])
    assert not any(key.startswith("teacher") for key in ckpt["distiller"])


# ------------------------------------------------------------------ in-process units


@pytest.mark.parametrize("num_samples", [1, 5, 8, 9])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_eval_shards_are_disjoint_whole_batches(num_samples, world_size):
    batch = 2
    batches = [list(range(i, min(i + batch, num_samples))) for i in range(0, num_samples, batch)]
    seen = []
    for rank in range(world_size):
        shard = eval_shard(num_samples, batch, DistContext(rank, world_size))
        chunks = [shard[i : i + batch] for i in range(0, len(shard), batch)]
        assert chunks == batches[rank::world_size]  # the same batches as one process
        seen += shard
    assert sorted(seen) == list(range(num_samples))


def test_env_context_and_device_follow_torchrun(monkeypatch):
    assert env_context() == DistContext() or "RANK" in os.environ
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = env_context()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main) == (3, 4, 1, False)
    assert device_for("cuda", ctx) == torch.device("cuda", 1)
    assert device_for("cuda:0", ctx) == torch.device("cuda", 0)
    assert device_for("cpu", ctx) == torch.device("cpu")


def test_sync_bn_converts_only_batchnorms_that_train():
    frozen = build_student(ModelConfig(depth=18, width=8, fpn_channels=16, frozen_stages=1), 3)
    convert_sync_bn(frozen)
    backbone = frozen.backbone
    assert type(backbone.bn1) is nn.BatchNorm2d  # frozen stem
    assert all(type(m) is not nn.SyncBatchNorm for m in backbone.layer1.modules())
    assert any(type(m) is nn.SyncBatchNorm for m in backbone.layer2.modules())

    norm_eval = build_student(ModelConfig(depth=18, width=8, fpn_channels=16, norm_eval=True), 3)
    convert_sync_bn(norm_eval)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in norm_eval.modules())


def test_sync_bn_on_cpu_is_a_config_error(monkeypatch):
    monkeypatch.setattr(distributed, "context", lambda: DistContext(0, 2))
    with pytest.raises(ConfigError, match="sync_bn.*needs CUDA"):
        wrap_for_training(nn.BatchNorm2d(2), torch.device("cpu"), True, False)


def test_single_process_training_module_is_not_wrapped():
    module = nn.Linear(2, 2)
    assert wrap_for_training(module, torch.device("cpu"), True, False) is module


def test_merged_weight_stats_equal_stats_of_all_instances():
    parts = [torch.tensor([0.5, 1.0, 2.0]), torch.tensor([1.5, 0.25])]

    def summary(w):
        return {
            "weight_mean": float(w.mean()),
            "weight_std": float(w.std(unbiased=False)),
            "weight_min": float(w.min()),
            "weight_max": float(w.max()),
            "weight_entropy": 1.0 if len(w) == 3 else 0.5,
            "num_instances": float(w.numel()),
        }

    merged = merge_weight_stats([summary(p) for p in parts] + [{}])
    expected = summary(torch.cat(parts))
    for key in ("weight_mean", "weight_std", "weight_min", "weight_max", "num_instances"):
        assert merged[key] == pytest.approx(expected[key])
    assert merged["weight_entropy"] == pytest.approx(0.75)
