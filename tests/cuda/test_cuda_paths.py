"""The CUDA paths: mixed precision, SyncBatchNorm, determinism where the README promises
it, and checkpoints moving between devices. Run with `pytest -m cuda`; every test skips
on a machine without CUDA (the GPU check, benchmarks/gpu_check.sh, runs them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cuda_helpers import first_batch, train_steps, trainer_from

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture
def cuda_trainer(tmp_path: Path, experiment_writer):
    tiny_experiment, write_yaml = experiment_writer

    def make(name: str, **train):
        raw = tiny_experiment(tmp_path, name, device="cuda", **train)
        return trainer_from(write_yaml(raw, tmp_path / f"{name}.yaml"))

    return make


def test_fp16_autocast_with_grad_scaler_updates_weights(cuda_trainer):
    trainer = cuda_trainer("fp16", amp="fp16")
    assert trainer.scaler.is_enabled()
    before = [p.detach().clone() for p in trainer.module.parameters()]
    values = train_steps(trainer, 8)  # the scaler may skip the first steps (inf grads)
    assert all(v is not None and torch.isfinite(torch.tensor(v["loss"])) for v in values)
    assert trainer.scaler.get_scale() > 0
    after = trainer.module.parameters()
    moved = sum(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert moved > len(before) // 2


def test_bf16_autocast_runs_the_head_in_bf16_and_trains(cuda_trainer):
    trainer = cuda_trainer("bf16", amp="bf16")
    assert not trainer.scaler.is_enabled()  # bf16 needs no loss scaling
    seen: list[torch.dtype] = []
    conv = next(m for m in trainer.module.student.head.modules() if isinstance(m, torch.nn.Conv2d))
    handle = conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    values = train_steps(trainer, 3)
    handle.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert all(v is not None for v in values)


def test_sync_batchnorm_conversion_trains_in_a_one_process_group(tmp_path, cuda_trainer):
    import torch.distributed as dist

    from liafkd.engine.distributed import convert_sync_bn

    store = f"file://{tmp_path / 'pg_store'}"
    dist.init_process_group("nccl", init_method=store, rank=0, world_size=1)
    try:
        trainer = cuda_trainer("syncbn")
        student = trainer.module.student
        plain_bn = [m for m in student.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert plain_bn, "the tiny GFL student has BatchNorm layers in its backbone"
        convert_sync_bn(trainer.module)
        synced = [m for m in student.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
        assert len(synced) == len(plain_bn)
        trainer.module.cuda()
        images, targets = first_batch(trainer)
        losses = trainer.module(images, targets)
        sum(losses.values()).backward()
        assert all(torch.isfinite(m.running_mean).all() for m in synced)
    finally:
        dist.destroy_process_group()


DETERMINISM_SCRIPT = """
import sys
import torch
from cuda_helpers import train_steps, trainer_from
torch.use_deterministic_algorithms(True)
trainer = trainer_from(sys.argv[1])
print(repr([v["loss"] for v in train_steps(trainer, 3)]))
print(repr(sum(p.double().sum().item() for p in trainer.module.parameters())))
"""


def test_deterministic_algorithms_make_two_cuda_runs_identical(tmp_path, experiment_writer):
    """The README's promise: with torch.use_deterministic_algorithms(True) (and
    CUBLAS_WORKSPACE_CONFIG set, as PyTorch requires) a seed fixes a GPU run too."""
    tiny_experiment, write_yaml = experiment_writer
    helpers = str(Path(__file__).resolve().parent)
    env = {
        **os.environ,
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "PYTHONPATH": os.pathsep.join(filter(None, [helpers, os.environ.get("PYTHONPATH")])),
    }
    outputs = []
    for run in ("a", "b"):
        raw = tiny_experiment(tmp_path / run, "det", device="cuda")
        config = write_yaml(raw, tmp_path / f"{run}.yaml")
        done = subprocess.run(
            [sys.executable, "-c", DETERMINISM_SCRIPT, str(config)],
            capture_output=True,
            text=True,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]


def test_checkpoint_saved_on_gpu_loads_and_predicts_on_cpu(tmp_path, cuda_trainer):
    from liafkd.engine.build import build_student
    from liafkd.engine.checkpoint import load_checkpoint

    trainer = cuda_trainer("ckpt")
    train_steps(trainer, 2)
    path = tmp_path / "gpu.pt"
    trainer.save(path, full=True)
    ckpt = load_checkpoint(path, map_location="cpu")
    assert all(t.device.type == "cpu" for t in ckpt["model"].values())
    cpu_student = build_student(trainer.cfg.model, len(trainer.train_index.class_names))
    cpu_student.load_state_dict(ckpt["model"])
    images, _targets = first_batch(trainer)
    gpu_student = trainer.module.student.eval()
    cpu_student.eval()
    with torch.no_grad():
        gpu_feats = gpu_student.backbone(images)
        cpu_feats = cpu_student.backbone(images.cpu())
    for g, c in zip(gpu_feats, cpu_feats, strict=True):
        err = (g.float().cpu() - c).norm() / c.norm().clamp_min(1e-12)
        assert err < 1e-3  # TF32 convolutions on the GPU: close, not bit-equal


def test_resume_on_gpu_restores_the_rng_of_a_checkpoint_loaded_to_the_gpu(
    tmp_path, experiment_writer
):
    """A checkpoint read with map_location=cuda brings its RNG states on the GPU; resume
    must hand the generators CPU bytes (found by the first GPU run: TypeError)."""
    from liafkd.engine.runs import train_detector

    tiny_experiment, write_yaml = experiment_writer
    raw = tiny_experiment(tmp_path, "resume", device="cuda")
    config = write_yaml(raw, tmp_path / "resume.yaml")
    train_detector(str(config), [])
    first_epoch = tmp_path / "resume" / "checkpoints" / "epoch_1.pt"
    summary = train_detector(str(config), [], resume=str(first_epoch))
    assert summary["steps"] > 0
