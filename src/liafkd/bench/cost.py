"""What each method costs, measured in one process on one fixed training batch.

Variants: `none` alone (the student's own training step), the *floor* (`none` plus
the teacher's forward pass, run exactly as distillation runs it: `forward_train`
under no_grad; no method can be cheaper), and every method of the bench. Each is a
real `Trainer` built from the run's own experiment YAML, so a step is the training
step (forward, loss, backward, clipping, optimizer update).

- step time: median over `steps` timed steps after `warmup` untimed ones; the
  variants take turns in `rounds`, so that load from other processes falls on all
  of them alike; each round's median is kept too, so that the report can show how
  far a ratio moves from round to round. CUDA is synchronised around every step.
- peak memory: the tensors alive when a step starts with no gradients held
  (parameters, optimizer state, buffers, the teacher when the variant runs it, the
  batch) plus the highest rise above that during one step (activations, gradients,
  temporaries). CUDA: the rise is
  `max_memory_allocated` after `reset_peak_memory_stats`. CPU (no allocator
  statistics): the running sum of the allocations and frees that torch.profiler
  (`profile_memory=True`) records per operator, in time order; a temporary that an
  operator allocates and frees inside itself is netted out, so the CPU figure is a
  slight underestimate of the same quantity.
- distillation share: one step under torch.profiler with the distiller's forward
  in a `record_function` scope. The share is the scope's time plus the backward of
  every autograd node created inside it (matched by sequence number; also any
  backward that runs while the scope is open, e.g. the `aligned` selector's
  gradient), divided by the step (CPU: the step's wall time; CUDA: the kernel time
  of the whole step, using device times throughout). The teacher's forward is not in
  the share: it is in the floor.
- the student: parameters, FLOPs of one forward of one image (backbone, neck and
  head; torch.utils.flop_counter counts a multiply-add as 2 FLOPs), and inference
  latency (median of `inference_runs` `predict` calls on one image, post-processing
  included). The student is the same network for every method; the cost checks it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from liafkd.bench.config import BASELINE, RESERVED_ROW, CostConfig

FLOOR = RESERVED_ROW
KD_SCOPE = "liafkd::distill"
BACKWARD_EVENT = "autograd::engine::evaluate_function"
MIB = 1024 * 1024

Batch = tuple[Tensor, list[dict[str, Any]]]


class FloorModule(nn.Module):
    """The student's training step plus the teacher's forward: the cheapest possible
    distillation step. The teacher is frozen, in eval mode and run under no_grad, in
    the order DistillTrainModule runs it (student first)."""

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> FloorModule:
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        losses = self.student.forward_train(images, targets).losses
        with torch.no_grad():
            self.teacher.forward_train(images, targets)
        return losses


def build_trainers(configs: dict[str, Path], teacher_config: Path, teacher_checkpoint: Path):
    """One Trainer per method (from its experiment YAML) plus the floor, and the fixed
    batch they all train on."""
    from liafkd.config import load_config
    from liafkd.distill.config import TeacherConfig
    from liafkd.engine.build import build_student, load_indices
    from liafkd.engine.guardrails import load_teacher
    from liafkd.engine.runs import build_distill_module
    from liafkd.engine.trainer import Trainer, seed_everything

    base_cfg = load_config(configs[BASELINE])
    train_index, val_index = load_indices(base_cfg)
    classes = train_index.class_names
    trainers = {}
    for name, path in configs.items():
        cfg = load_config(path)
        seed_everything(cfg.train.seed)
        module = build_distill_module(cfg, str(path), classes)
        trainers[name] = Trainer(cfg, module, train_index, val_index)
    seed_everything(base_cfg.train.seed)
    student = build_student(base_cfg.model, len(classes))
    teacher_spec = TeacherConfig(config=str(teacher_config), checkpoint=str(teacher_checkpoint))
    teacher = load_teacher(teacher_spec, classes)
    trainers[FLOOR] = Trainer(base_cfg, FloorModule(student, teacher), train_index, val_index)
    return trainers, base_cfg, train_index


def fixed_batch(index, cfg, batch_size: int, device: torch.device) -> Batch:
    """The first training batch (augmented as in training, seed 0), on `device`."""
    from liafkd.data.dataset import build_loader
    from liafkd.engine.trainer import _to_device

    loader = build_loader(
        index, cfg.data.augment, batch_size=batch_size, train=True, num_workers=0, seed=0
    )
    images, targets, _sizes = next(iter(loader))
    return images.to(device), [_to_device(t, device) for t in targets]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(trainer, batch: Batch) -> float:
    synchronize(trainer.device)
    tic = time.perf_counter()
    trainer.train_step(*batch)
    synchronize(trainer.device)
    return time.perf_counter() - tic


def step_times(
    trainers: dict[str, Any], batch: Batch, cfg: CostConfig
) -> dict[str, list[list[float]]]:
    """Seconds per timed step of every variant, per round, the variants taking turns."""
    for trainer in trainers.values():
        trainer.module.train()
        for _ in range(cfg.warmup):
            trainer.train_step(*batch)
    per_round = -(-cfg.steps // cfg.rounds)
    times: dict[str, list[list[float]]] = {name: [] for name in trainers}
    for _ in range(cfg.rounds):
        for name, trainer in trainers.items():
            times[name].append([timed_step(trainer, batch) for _ in range(per_round)])
    return times


# --- memory --------------------------------------------------------------------------


def runs_teacher(module: nn.Module) -> bool:
    if isinstance(module, FloorModule):
        return True
    distiller = getattr(module, "distiller", None)
    return distiller is not None and bool(distiller.needs)


def resident_bytes(trainer, batch: Batch) -> int:
    """Bytes of the distinct tensors alive between steps that this variant uses."""
    module = trainer.module
    tensors: list[Tensor] = [*module.parameters(), *module.buffers()]
    tensors += [p.grad for p in module.parameters() if p.grad is not None]
    if runs_teacher(module):
        tensors += [*module.teacher.parameters(), *module.teacher.buffers()]
    for state in trainer.optimizer.state.values():
        tensors += [v for v in state.values() if isinstance(v, Tensor)]
    images, targets = batch
    tensors += [images] + [v for t in targets for v in t.values() if isinstance(v, Tensor)]
    storages = {}
    for t in tensors:
        storage = t.untyped_storage()
        storages[(storage.device, storage.data_ptr())] = storage.nbytes()
    return sum(storages.values())


def cuda_step_peak(trainer, batch: Batch) -> int:
    """Highest rise of allocated CUDA memory above the step's start."""
    device = trainer.device
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    trainer.train_step(*batch)
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - start


def profiled_allocation_peak(events) -> int:
    """Highest running sum of the profiler's allocation records, in time order."""
    running = peak = 0
    for event in sorted(events, key=lambda e: e.time_range.start):
        if event.name == "[memory]":
            running += event.cpu_memory_usage
        else:
            running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return peak


# --- distillation share ----------------------------------------------------------------


@contextmanager
def distill_scope(module: nn.Module) -> Iterator[None]:
    """While open, every call of `module.distiller` runs inside a profiler scope."""
    distiller = getattr(module, "distiller", None)
    if distiller is None:
        yield
        return
    open_scopes = []

    def enter(_module, _args):
        scope = record_function(KD_SCOPE)
        scope.__enter__()
        open_scopes.append(scope)

    def leave(_module, _args, _output):
        open_scopes.pop().__exit__(None, None, None)

    handles = [distiller.register_forward_pre_hook(enter), distiller.register_forward_hook(leave)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _descendants(event) -> Iterator[Any]:
    yield event
    for child in event.cpu_children:
        yield from _descendants(child)


def distill_time(events, on_cuda: bool) -> float:
    """Microseconds spent in the distiller's forward and in the backward of what it
    built (device time on CUDA)."""
    scopes = [e for e in events if e.name == KD_SCOPE]
    inside: set[int] = set()
    sequence_numbers: set[int] = set()
    for scope in scopes:
        for event in _descendants(scope):
            inside.add(id(event))
            if event.sequence_nr >= 0 and not event.name.startswith(BACKWARD_EVENT):
                sequence_numbers.add(event.sequence_nr)
    windows = [(s.time_range.start, s.time_range.end) for s in scopes]

    def spent(event) -> float:
        return event.device_time_total if on_cuda else event.cpu_time_total

    total = sum(spent(s) for s in scopes)
    for event in events:
        if not event.name.startswith(BACKWARD_EVENT) or id(event) in inside:
            continue
        during = any(lo <= event.time_range.start <= hi for lo, hi in windows)
        if event.sequence_nr in sequence_numbers or during:
            total += spent(event)
    return total


def profile_step(trainer, batch: Batch) -> tuple[float | None, int | None]:
    """One profiled step: (distillation share of the step or None without a
    distiller, CPU allocation peak above the step's start or None on CUDA)."""
    on_cuda = trainer.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with (
        distill_scope(trainer.module),
        profile(activities=activities, profile_memory=not on_cuda) as prof,
    ):
        wall = timed_step(trainer, batch)
    events = prof.events()
    share = None
    if getattr(trainer.module, "distiller", None) is not None and trainer.module.distiller.needs:
        if on_cuda:
            step = sum(e.self_device_time_total for e in events)
        else:
            step = wall * 1e6
        share = distill_time(events, on_cuda) / step if step > 0 else None
    peak = None if on_cuda else profiled_allocation_peak(events)
    return share, peak


# --- the student -------------------------------------------------------------------------


@torch.no_grad()
def student_figures(student: nn.Module, images: Tensor, runs: int) -> dict[str, Any]:
    """Parameters, FLOPs of one forward of one image, and predict latency (ms)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = student.training
    student.eval()
    one = images[:1]
    counter = FlopCounterMode(display=False)
    with counter:
        student.forward_head(student.extract_feats(one))
    for _ in range(2):
        student.predict(one)
    latencies = []
    for _ in range(runs):
        synchronize(one.device)
        tic = time.perf_counter()
        student.predict(one)
        synchronize(one.device)
        latencies.append(time.perf_counter() - tic)
    student.train(was_training)
    return {
        "params": sum(p.numel() for p in student.parameters()),
        "flops": int(counter.get_total_flops()),
        "latency_ms": 1e3 * statistics.median(latencies),
        "image_shape": list(one.shape[-2:]),
    }


def architecture_signature(student: nn.Module) -> tuple:
    return tuple((name, tuple(p.shape)) for name, p in student.state_dict().items())


# --- the measurement ---------------------------------------------------------------------


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def measure_cost(
    configs: dict[str, Path], teacher_config: Path, teacher_checkpoint: Path, cfg: CostConfig
) -> dict[str, Any]:
    """Cost of every method in `configs` (row name -> experiment YAML, `none` among
    them), of the floor, and the student's figures. Times in ms, memory in MiB."""
    trainers, base_cfg, train_index = build_trainers(configs, teacher_config, teacher_checkpoint)
    device = trainers[BASELINE].device
    batch_size = cfg.batch_size or base_cfg.data.batch_size
    batch = fixed_batch(train_index, base_cfg, batch_size, device)
    times = step_times(trainers, batch, cfg)
    variants = {}
    for name, trainer in trainers.items():
        # no gradients held at the start: the profiler cannot see frees of blocks
        # allocated before it started, and the step's rise then includes the gradients
        trainer.optimizer.zero_grad(set_to_none=True)
        resident = resident_bytes(trainer, batch)
        share, cpu_rise = profile_step(trainer, batch)
        if device.type == "cuda":
            trainer.optimizer.zero_grad(set_to_none=True)
            rise = cuda_step_peak(trainer, batch)
        else:
            rise = cpu_rise
        every_step = [t for round_times in times[name] for t in round_times]
        step_ms = 1e3 * statistics.median(every_step)
        variants[name] = {
            "method": _method_of(trainer),
            "step_ms": step_ms,
            "step_ms_spread": [1e3 * min(every_step), 1e3 * max(every_step)],
            "step_ms_rounds": [1e3 * statistics.median(r) for r in times[name]],
            "peak_mib": (resident + rise) / MIB,
            "distill_share": share,
            "distill_ms": None if share is None else share * step_ms,
        }
    signatures = {architecture_signature(t.module.student) for t in trainers.values()}
    student = student_figures(trainers[BASELINE].module.student, batch[0], cfg.inference_runs)
    student["identical_across_methods"] = len(signatures) == 1
    return {
        "device": device_name(device),
        "batch_size": batch_size,
        "image_shape": list(batch[0].shape[-2:]),
        "warmup": cfg.warmup,
        "steps": sum(len(r) for r in times[BASELINE]),
        "rounds": cfg.rounds,
        "order": list(trainers),
        "variants": variants,
        "student": student,
        "memory_method": "cuda allocator peak" if device.type == "cuda" else "cpu profiler",
    }


def _method_of(trainer) -> str:
    if isinstance(trainer.module, FloorModule):
        return FLOOR
    return str(trainer.cfg.distill["method"]) if trainer.cfg.distill else BASELINE
