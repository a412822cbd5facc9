"""The training loop shared by `liafkd train` and `liafkd distill`.

The loop trains a *train module*: an nn.Module whose forward(images, targets)
returns a dict of named loss terms, and whose `student` attribute is the
detector that is evaluated and saved. For plain training that is
`DetectorTrainModule`; for distillation the distiller (which keeps the teacher
out of its own parameters).
"""

from __future__ import annotations

import json
import math
import random
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from liafkd.config import ConfigError, ExperimentConfig
from liafkd.data.records import DatasetIndex
from liafkd.engine.checkpoint import (
    CheckpointError,
    epoch_checkpoints,
    load_checkpoint,
    load_state_dict_reporting,
    prune_checkpoints,
    rng_state,
    save_atomic,
    set_rng_state,
)
from liafkd.engine.distributed import (
    all_gather_objects,
    all_reduce_sum,
    barrier,
    context,
    resolve_device,
    wrap_for_training,
)
from liafkd.engine.evaluate import evaluate_detector, is_kitti_format
from liafkd.engine.rundir import RunDirError, is_finished
from liafkd.engine.sampler import ResumableSampler
from liafkd.engine.schedule import lr_factor
from liafkd.outputs import DiskFullError, is_disk_full, write_text_atomic
from liafkd.progress import progress


class DetectorTrainModule(nn.Module):
    """Plain training: the student's own detection losses."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        return self.student.forward_train(images, targets).losses


class NonFiniteLossError(RuntimeError):
    """Too many steps with a non-finite loss: train.max_nonfinite in a row (across
    epochs), or more than train.max_nonfinite_share of the run's steps."""


# config keys that may change on --resume without changing what is trained
RESUME_FREE_KEYS = (
    "name",
    "output_dir",
    "train.max_steps",
    "train.device",
    "train.log_interval",
    "train.checkpoint_steps",
    "train.checkpoint_interval",
    "train.val_interval",
    "train.max_nonfinite",
    "train.max_nonfinite_share",
    "data.num_workers",
)
# the share of skipped steps is judged once a run has tried this many batches (and at
# its end whatever the count)
NONFINITE_SHARE_MIN_BATCHES = 20


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT arrived; a checkpoint was written after the current step."""

    def __init__(self, signum: int, checkpoint: Path) -> None:
        super().__init__(f"stopped by signal {signum}; resume with --resume {checkpoint}")
        self.signum = signum
        self.checkpoint = checkpoint


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_optimizer(cfg: ExperimentConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    o = cfg.train.optim
    if o.type == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    batches_in_epoch: int = 0  # batches consumed of the epoch in progress
    best_metric: float = -1.0
    nonfinite_total: int = 0
    nonfinite_in_row: int = 0  # across epochs (and resumes)
    history: list[dict[str, Any]] = field(default_factory=list)
    # running sums of the epoch in progress, so a resumed epoch's record covers it all
    epoch_sums: dict[str, float] = field(default_factory=dict)
    epoch_count: int = 0
    epoch_seen: int = 0
    log_lines: int = 0  # lines of metrics.jsonl written so far
    dropped_images: list[str] = field(default_factory=list)  # unreadable, policy drop


class Trainer:
    def __init__(
        self,
        cfg: ExperimentConfig,
        train_module: nn.Module,
        train_index: DatasetIndex,
        val_index: DatasetIndex,
        extra_meta: dict[str, Any] | None = None,
    ) -> None:
        from liafkd.data.dataset import build_loader

        self.cfg = cfg
        self.dist = context()
        self.device = resolve_device(cfg.train.device)
        self.module = train_module.to(self.device)
        self.memory_format = (
            torch.channels_last if cfg.train.channels_last == "all" else torch.contiguous_format
        )
        self.module.to(memory_format=self.memory_format)
        if cfg.train.channels_last == "teacher" and hasattr(self.module, "teacher"):
            self.module.teacher.to(memory_format=torch.channels_last)
        self.train_index = train_index
        self.val_index = val_index
        self.out_dir = Path(cfg.output_dir)
        self.already_finished = False  # fit() found the run finished and wrote nothing
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.extra_meta = extra_meta or {}
        self.sampler = ResumableSampler(
            len(train_index.records),
            seed=cfg.train.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.loader = build_loader(
            train_index,
            cfg.data.augment,
            batch_size=cfg.data.batch_size,
            train=True,
            num_workers=cfg.data.num_workers,
            seed=cfg.train.seed,
            sampler=self.sampler,
            drop_unreadable=cfg.data.train.policy == "drop",
            cache_images=cfg.data.cache_images,
        )
        # DistributedDataParallel over the student and distiller (the teacher is outside
        # the module tree); the optimizer must see the parameters after SyncBN conversion
        self.step_module = wrap_for_training(
            self.module,
            self.device,
            sync_bn=cfg.train.sync_bn,
            find_unused_parameters=getattr(train_module, "ddp_find_unused_parameters", False),
        )
        trainable = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(cfg, trainable)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=cfg.train.amp == "fp16" and self.device.type == "cuda"
        )
        self.state = TrainState()
        self._stop_signal: int | None = None
        self._stop_agreed = False  # some process received SIGTERM/SIGINT: all stop
        self._epoch = 0  # 0-based epoch in progress
        self._last_nonfinite = ""  # where the last non-finite step was

    # --- persistence -------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {
            "class_names": list(self.train_index.class_names),
            "model_cfg": self.cfg.model.model_dump(mode="json"),
            "augment": self.cfg.data.augment.model_dump(mode="json"),  # for predict/export
            **self.extra_meta,
        }

    def student_state(self) -> dict[str, Tensor]:
        return self.module.student.state_dict()

    def distiller_state(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.module.state_dict().items() if not k.startswith("student.")}

    def save(self, path: Path, full: bool = True) -> None:
        """Every process calls this at the same point; rank 0 writes."""
        ckpt: dict[str, Any] = {"model": self.student_state(), "meta": self.meta()}
        if full:
            rngs = all_gather_objects(rng_state())
            ckpt.update(
                distiller=self.distiller_state(),
                optimizer=self.optimizer.state_dict(),
                scaler=self.scaler.state_dict(),
                epoch=self.state.epoch,
                step=self.state.step,
                batches_in_epoch=self.state.batches_in_epoch,
                best_metric=self.state.best_metric,
                nonfinite_total=self.state.nonfinite_total,
                nonfinite_in_row=self.state.nonfinite_in_row,
                history=json.dumps(self.state.history),
                epoch_sums=json.dumps(self.state.epoch_sums),
                epoch_count=self.state.epoch_count,
                epoch_seen=self.state.epoch_seen,
                log_lines=self.state.log_lines,
                dropped_images=json.dumps(self.state.dropped_images),
                config=json.dumps(self.cfg.model_dump(mode="json")),
                rng=rngs[0],
                world_size=self.dist.world_size,
            )
            if self.dist.enabled:
                ckpt["rng_per_rank"] = rngs
        if self.dist.is_main:
            save_atomic(ckpt, path)
        barrier()

    def latest_checkpoint(self) -> Path | None:
        found = epoch_checkpoints(self.ckpt_dir)
        return found[-1] if found else None

    def resume(self, path: Path, strict: bool = False) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        written_by = int(ckpt.get("world_size", 1))
        if int(ckpt["batches_in_epoch"]) and written_by != self.dist.world_size:
            raise CheckpointError(
                f"{path}: written mid-epoch by {written_by} process(es); resume it with the "
                f"same number (torchrun --nproc_per_node {written_by}) or from an epoch-end "
                "checkpoint"
            )
        self.check_resume_config(path, ckpt, strict)
        load_state_dict_reporting(self.module.student, ckpt["model"], f"--resume {path}")
        load_state_dict_reporting(
            self.module,
            {**ckpt["distiller"], **_prefixed(ckpt["model"])},
            f"--resume {path} (distiller)",
        )
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(
            epoch=int(ckpt["epoch"]),
            step=int(ckpt["step"]),
            batches_in_epoch=int(ckpt["batches_in_epoch"]),
            best_metric=float(ckpt["best_metric"]),
            nonfinite_total=int(ckpt["nonfinite_total"]),
            nonfinite_in_row=int(ckpt.get("nonfinite_in_row", 0)),
            history=json.loads(ckpt["history"]),
            epoch_sums=json.loads(ckpt.get("epoch_sums", "{}")),
            epoch_count=int(ckpt.get("epoch_count", 0)),
            epoch_seen=int(ckpt.get("epoch_seen", 0)),
            log_lines=int(ckpt.get("log_lines", -1)),
            dropped_images=json.loads(ckpt.get("dropped_images", "[]")),
        )
        per_rank = ckpt.get("rng_per_rank")
        if per_rank is not None and len(per_rank) == self.dist.world_size:
            set_rng_state(per_rank[self.dist.rank])
        else:
            set_rng_state(ckpt["rng"])
        print(f"resumed from {path} (epoch {self.state.epoch}, step {self.state.step})")

    def check_resume_config(self, path: Path, ckpt: dict[str, Any], strict: bool) -> None:
        """Refuse another class order or architecture (exit 2, the differing keys
        listed); print the other config changes (refuse them when `strict`)."""
        meta = ckpt.get("meta", {})
        classes = meta.get("class_names")
        if classes is not None and list(classes) != list(self.train_index.class_names):
            raise ConfigError(
                f"--resume {path}: trained on classes {list(classes)}, but the dataset has "
                f"{list(self.train_index.class_names)} (name and order must match); train "
                "into a new output_dir instead"
            )
        saved = json.loads(ckpt["config"]) if "config" in ckpt else None
        if saved is None and "model_cfg" in meta:
            saved = {"model": meta["model_cfg"]}
        if saved is None:
            return
        now = _flatten(self.cfg.model_dump(mode="json"))
        old = _flatten(saved)
        keys = set(old) | set(now) if "config" in ckpt else set(old)
        changed = [
            f"{k}: {old.get(k)!r} -> {now.get(k)!r}"
            for k in sorted(keys)
            if old.get(k) != now.get(k) and not k.startswith(RESUME_FREE_KEYS)
        ]
        arch = [c for c in changed if c.startswith("model.")]
        own = self.module.student.state_dict()
        state = ckpt["model"]
        differing = sorted(
            [f"missing {k}" for k in own if k not in state]
            + [f"unexpected {k}" for k in state if k not in own]
            + [
                f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                for k in own
                if k in state and tuple(state[k].shape) != tuple(own[k].shape)
            ]
        )
        if differing:
            shown = "; ".join(differing[:10]) + (
                f" ... (+{len(differing) - 10})" if len(differing) > 10 else ""
            )
            config = f" (config: {'; '.join(arch)})" if arch else ""
            raise CheckpointError(
                f"--resume {path}: another architecture{config}: {len(differing)} differing "
                f"weight(s): {shown}; train into a new output_dir instead"
            )
        if not changed:
            return
        if strict:
            raise ConfigError(
                f"--resume {path} --strict-resume: the config differs from the "
                f"checkpoint's: {'; '.join(changed)}"
            )
        print(f"resuming with a changed config (against {path}): {'; '.join(changed)}")

    def cut_log(self) -> None:
        """Cut metrics.jsonl back to the lines written up to the resumed checkpoint,
        atomically: the lines an interrupted run logged after it are dropped."""
        path = self.out_dir / "metrics.jsonl"
        if not self.dist.is_main or not path.is_file():
            return
        lines = path.read_text().splitlines(keepends=True)
        keep = self.state.log_lines
        if keep < 0:  # a checkpoint that predates the count: cut by step and epoch
            keep = _lines_up_to(lines, self.state.step, self.state.epoch)
            self.state.log_lines = keep
        if keep >= len(lines) and all(line.endswith("\n") for line in lines):
            return
        write_text_atomic(path, "".join(lines[:keep]))
        if len(lines) > keep:
            print(f"{path}: dropped {len(lines) - keep} line(s) logged after the checkpoint")

    # --- the loop ----------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "metrics.jsonl"
        with path.open("a") as f:
            size = f.tell()
            try:
                f.write(json.dumps(record) + "\n")
                f.flush()
            except OSError as e:
                if not is_disk_full(e):
                    raise
                f.truncate(size)  # no half line
                raise DiskFullError(
                    f"{path}: no space left on the device, nothing written; free some space "
                    "and resume the run (--resume) from its last checkpoint"
                ) from None
        self.state.log_lines += 1

    def set_lr(self) -> float:
        factor = lr_factor(self.state.step, len(self.loader), self.cfg.train.schedule)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        return self.optimizer.param_groups[0]["lr"]

    def autocast(self):
        amp = self.cfg.train.amp
        if amp == "none":
            return torch.autocast(self.device.type, enabled=False)
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def train_step(
        self, images: Tensor, targets: list[dict[str, Tensor]]
    ) -> dict[str, float] | None:
        """One optimizer step; returns the loss terms, or None when skipped."""
        lr = self.set_lr()
        images = images.contiguous(memory_format=self.memory_format)
        with self.autocast():
            terms = self.step_module(images, targets)
        loss = sum(terms.values())
        nonfinite, self._stop_agreed, mean_terms = self._agree(loss, terms)
        if nonfinite:
            self.state.nonfinite_in_row += 1
            self.state.nonfinite_total += 1
            self.optimizer.zero_grad(set_to_none=True)
            values = {k: float(v.detach()) for k, v in terms.items()}
            ids = [int(t["image_id"]) for t in targets]
            where = f"rank {self.dist.rank}, " if self.dist.enabled else ""
            self._last_nonfinite = (
                f"{where}epoch {self._epoch + 1}, batch {self.state.batches_in_epoch + 1}"
                f"/{self.batches_per_epoch()}: terms {values}, image ids {ids}"
            )
            if self.state.nonfinite_in_row >= self.cfg.train.max_nonfinite:
                raise NonFiniteLossError(
                    f"{self.state.nonfinite_in_row} steps in a row with a non-finite loss "
                    f"(train.max_nonfinite {self.cfg.train.max_nonfinite}); the last at "
                    f"{self._last_nonfinite}"
                )
            return None
        self.state.nonfinite_in_row = 0
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        clip = self.cfg.train.optim.grad_clip
        if clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g["params"]], clip
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.state.step += 1
        values = dict(mean_terms)
        values["loss"] = sum(mean_terms.values())
        values["lr"] = lr
        return values

    def _agree(self, loss: Tensor, terms: dict[str, Tensor]) -> tuple[bool, bool, dict[str, float]]:
        """(some process's loss is non-finite, some process was asked to stop, the loss
        terms averaged over the processes): every process skips or stops together, or
        DistributedDataParallel would wait forever for the others' gradients."""
        local = [float(not torch.isfinite(loss)), float(self._stop_signal is not None)]
        packed = torch.tensor(local + [float(v.detach()) for v in terms.values()])
        if self.dist.enabled:
            packed = all_reduce_sum(packed.to(self.device)).cpu()
        means = (packed[2:] / self.dist.world_size).tolist()
        return bool(packed[0] > 0), bool(packed[1] > 0), dict(zip(terms, means, strict=True))

    def mid_epoch_checkpoint(self, epoch: int) -> Path:
        path = self.ckpt_dir / f"epoch_{epoch + 1}_iter_{self.state.batches_in_epoch}.pt"
        self.save(path)
        self.prune()
        return path

    def prune(self) -> None:
        if self.dist.is_main:
            prune_checkpoints(self.ckpt_dir, keep=2)

    def train_epoch(self, epoch: int) -> tuple[dict[str, float], bool]:
        """Run (the rest of) epoch `epoch` (0-based): mean loss terms and timings, and
        whether the epoch finished (False when train.max_steps stopped it early)."""
        self.module.train()
        self.sampler.set_epoch(epoch)
        self.sampler.set_start(self.state.batches_in_epoch * self.cfg.data.batch_size)
        self._epoch = epoch
        if self.state.batches_in_epoch == 0:  # a new epoch (not a resumed one)
            self.state.epoch_sums, self.state.epoch_count, self.state.epoch_seen = {}, 0, 0
        sums: dict[str, float] = defaultdict(float, self.state.epoch_sums)
        self.state.epoch_sums = sums
        bar = progress(
            self.loader,
            desc=f"epoch {epoch + 1}/{self.cfg.train.schedule.epochs}",
            enabled=self.dist.is_main,
        )
        tic = time.perf_counter()
        seen = 0  # this invocation's images, for the speed
        ckpt_steps = self.cfg.train.checkpoint_steps
        for images, targets, _sizes in bar:
            if self.note_dropped(targets):  # every image of the batch was unreadable
                self.state.batches_in_epoch += 1
                continue
            images = images.to(self.device, non_blocking=True)
            targets = [_to_device(t, self.device) for t in targets]
            values = self.train_step(images, targets)
            self.state.batches_in_epoch += 1
            seen += images.shape[0]
            self.state.epoch_seen += images.shape[0]
            if values is not None:
                self.state.epoch_count += 1
                for k, v in values.items():
                    sums[k] += v
                img_s = seen / max(1e-9, time.perf_counter() - tic)
                bar.set_postfix(
                    loss=f"{values['loss']:.3f}", lr=f"{values['lr']:.2e}", img_s=f"{img_s:.1f}"
                )
                if self.state.step % self.cfg.train.log_interval == 0:
                    self.log(
                        {
                            "type": "train",
                            "epoch": epoch + 1,
                            "step": self.state.step,
                            "img_s": img_s,
                            **values,
                        }
                    )
            if self._stop_agreed:
                bar.close()
                signum = self._stop_signal or signal.SIGTERM  # a rank that got no signal
                raise TrainingInterrupted(signum, self.mid_epoch_checkpoint(epoch))
            if self.reached_max_steps():
                break
            if ckpt_steps and self.state.step % ckpt_steps == 0 and values is not None:
                self.mid_epoch_checkpoint(epoch)
        bar.close()
        finished = self.state.batches_in_epoch >= self.batches_per_epoch()
        if finished:
            self.state.batches_in_epoch = 0
        means = {k: v / max(1, self.state.epoch_count) for k, v in sums.items()}
        means["epoch_time_s"] = time.perf_counter() - tic
        means["img_s"] = seen / max(1e-9, means["epoch_time_s"])
        return means, finished

    def note_dropped(self, targets: list[dict[str, Any]]) -> bool:
        """Report the batch's unreadable images (policy drop), each once per run;
        True when nothing of the batch is left."""
        for message in getattr(targets, "dropped", ()):
            if message not in self.state.dropped_images:
                self.state.dropped_images.append(message)
                print(f"\ndropped an unreadable image (data.train.policy: drop): {message}")
        if len(targets):
            return False
        if self.dist.enabled:  # the other processes would wait for this one's gradients
            from liafkd.data.dataset import DataLoadError

            raise DataLoadError(
                f"every image of a batch is unreadable (rank {self.dist.rank}): "
                f"{'; '.join(targets.dropped)}"
            )
        return True

    def batches_per_epoch(self) -> int:
        return -(-self.sampler.per_rank() // self.cfg.data.batch_size)

    def reached_max_steps(self) -> bool:
        return bool(self.cfg.train.max_steps and self.state.step >= self.cfg.train.max_steps)

    def validate(self) -> dict[str, Any]:
        metrics, _ = evaluate_detector(
            self.module.student,
            self.val_index,
            self.cfg.data.augment,
            self.device,
            batch_size=self.cfg.data.batch_size,
            kitti=is_kitti_format(self.cfg.data.val),
            drop_unreadable=self.cfg.data.val.policy == "drop",
        )
        return metrics

    def _on_signal(self, signum: int, _frame: Any) -> None:
        print(f"\nsignal {signum}: finishing this step, then writing a checkpoint", flush=True)
        self._stop_signal = signum

    def check_nonfinite_share(self, at_end: bool) -> None:
        """Stop when more than train.max_nonfinite_share of the tried steps were skipped."""
        tried = self.state.step + self.state.nonfinite_total
        limit = self.cfg.train.max_nonfinite_share
        if not self.state.nonfinite_total or (tried < NONFINITE_SHARE_MIN_BATCHES and not at_end):
            return
        share = self.state.nonfinite_total / tried
        if share > limit:
            raise NonFiniteLossError(
                f"{self.state.nonfinite_total} of {tried} steps skipped for a non-finite loss "
                f"({100 * share:.0f}% > train.max_nonfinite_share {100 * limit:.0f}%); the "
                f"last at {self._last_nonfinite}"
            )

    def finished_summary(self) -> dict[str, Any] | None:
        """The stored summary when the resumed run had already finished its schedule."""
        done = self.state.epoch >= self.cfg.train.schedule.epochs or self.reached_max_steps()
        path = self.out_dir / "summary.json"
        if done and path.is_file():  # max_steps may end the run mid-epoch
            return json.loads(path.read_text())
        return None

    def fit(self, resume: Path | None = None, strict_resume: bool = False) -> dict[str, Any]:
        """Train to the end of the schedule. Raises TrainingInterrupted on SIGTERM/SIGINT
        after writing a checkpoint."""
        seed_everything(self.cfg.train.seed)
        if resume is not None:
            self.resume(resume, strict=strict_resume)
            finished = self.finished_summary()
            if finished is not None:
                print(
                    f"{self.out_dir}: the run had already finished (epoch {self.state.epoch}); "
                    "nothing written"
                )
                self.already_finished = True
                return finished
            if is_finished(self.out_dir):
                raise RunDirError(
                    f"{self.out_dir} holds a finished run, and --resume {resume} would train "
                    "it further (a longer schedule?) and replace its final.pt and summary.json. "
                    f"Continue it in a new run instead: --resume {resume} --set output_dir=NEW"
                )
            if self.ckpt_dir.resolve() != resume.resolve().parent:
                self.state.log_lines = 0  # another run's checkpoint: this folder's log is new
        self.cut_log()  # a fresh start (or a resume that found no checkpoint) logs anew
        handlers = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            return self._fit()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def _fit(self) -> dict[str, Any]:
        tic = time.perf_counter()
        sched = self.cfg.train.schedule
        last_val: dict[str, Any] = {}
        for epoch in range(self.state.epoch, sched.epochs):
            train_means, finished = self.train_epoch(epoch)
            self.check_nonfinite_share(at_end=False)
            if not finished:  # train.max_steps reached mid-epoch
                self.mid_epoch_checkpoint(epoch)
                last_val = self.validate()
                break
            self.state.epoch = epoch + 1
            record: dict[str, Any] = {"type": "epoch", "epoch": epoch + 1, **train_means}
            if hasattr(self.module, "end_epoch"):
                record["distill"] = self.module.end_epoch(epoch + 1, self.out_dir)
            done = epoch + 1 == sched.epochs or self.reached_max_steps()
            if (epoch + 1) % self.cfg.train.val_interval == 0 or done:
                last_val = self.validate()
                record["val"] = _scalar_metrics(last_val)
                if last_val["AP"] > self.state.best_metric:
                    self.state.best_metric = last_val["AP"]
                    self.save(self.out_dir / "best.pt", full=False)
            self.state.history.append(record)
            self.log(record)
            if self.dist.is_main:
                _print_epoch(record)
            if (epoch + 1) % self.cfg.train.checkpoint_interval == 0 or done:
                self.save(self.ckpt_dir / f"epoch_{epoch + 1}.pt")
                self.prune()
            if done:
                break
        self.check_nonfinite_share(at_end=True)
        self.save(self.out_dir / "final.pt", full=False)
        summary = {
            "final": _scalar_metrics(last_val) if last_val else {},
            "best_AP": self.state.best_metric,
            "steps": self.state.step,
            "nonfinite_steps": self.state.nonfinite_total,
            "dropped_unreadable_images": self.state.dropped_images,
            "wall_time_s": time.perf_counter() - tic,  # this invocation (a resume counts anew)
        }
        if self.dist.is_main:
            write_text_atomic(self.out_dir / "summary.json", json.dumps(summary, indent=2))
        return summary


def _flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and empty mappings stay values."""
    out: dict[str, Any] = {}
    for k, v in node.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _lines_up_to(lines: list[str], step: int, epoch: int) -> int:
    """How many leading lines of metrics.jsonl belong before the checkpoint at `step`
    (train lines) / `epoch` (epoch lines)."""
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            return i
        if record.get("type") == "train" and record.get("step", 0) > step:
            return i
        if record.get("type") == "epoch" and record.get("epoch", 0) > epoch:
            return i
    return len(lines)


def _prefixed(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"student.{k}": v for k, v in state.items()}


def _to_device(target: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in target.items()}


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """What is worth logging: finite scalars, plus the per-class and KITTI tables."""
    out = {k: v for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}
    for table in ("per_class", "kitti"):
        if table in metrics:
            out[table] = metrics[table]
    return out


def _print_epoch(record: dict[str, Any]) -> None:
    parts = [
        f"epoch {record['epoch']}",
        f"loss {record.get('loss', float('nan')):.4f}",
        f"{record['img_s']:.1f} img/s",
    ]
    if "val" in record:
        v = record["val"]
        # percent, as every table liafkd prints
        parts.append(f"val AP {100 * v.get('AP', 0):.2f} AP50 {100 * v.get('AP50', 0):.2f}")
    print(" | ".join(parts), flush=True)


def format_final(summary: dict[str, Any], output_dir: str) -> str:
    """One line for the end of a run: headline metrics and where everything is."""
    final = summary.get("final", {})
    parts = [
        f"{k} {100 * final[k]:.1f}" for k in ("AP", "AP50", "AP75") if final.get(k) is not None
    ]
    kitti = final.get("kitti") or {}
    if "moderate_mean" in kitti:
        parts.append(f"KITTI moderate {kitti['moderate_mean']:.1f}")
    return f"done: {', '.join(parts) or 'no validation'} -> {output_dir} (summary.json)"
