"""The run folder (`output_dir`): never overwritten, never shared, never mixed.

Before `liafkd train` / `liafkd distill` builds anything, `open_run_dir`
  - refuses an `output_dir` that already holds a run (final.pt, summary.json,
    metrics.jsonl, best.pt or checkpoints) unless the command continues it
    (`--resume`) or clears it first (`--overwrite`, which deletes only the run's own
    files);
  - checks that the folder can be written (a read-only folder fails here, not after
    the first step);
  - takes an exclusive lock, `output_dir/.liafkd.lock`, holding the owner's pid, host
    and process start time: a second process on the same folder stops at once. A lock
    whose process is gone (same host) is stale: it is reported and taken over. Under
    torchrun only rank 0 takes the lock, and every rank stops when rank 0 is refused.
The lock is released when the run ends, whatever the outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from liafkd.config import ConfigError

LOCK_NAME = ".liafkd.lock"
# what train/distill write into output_dir: a folder holding one of these holds a run
RUN_FILES = ("final.pt", "best.pt", "summary.json", "metrics.jsonl")
RUN_DIRS = ("checkpoints", "instances", "eval", "tensorboard")


class RunDirError(ConfigError):
    """The output_dir cannot take this run (exit 2)."""


def run_files(folder: Path) -> list[str]:
    """The run files in `folder` (names, checkpoints/ etc. with a slash)."""
    found = [name for name in RUN_FILES if (folder / name).exists()]
    for name in RUN_DIRS:
        sub = folder / name
        if sub.is_dir() and any(sub.iterdir()):
            found.append(f"{name}/")
    return found


def clear_run(folder: Path) -> list[str]:
    """Delete the run's own files (never anything else in the folder)."""
    removed = run_files(folder)
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    for name in RUN_DIRS:
        if (folder / name).is_dir():
            shutil.rmtree(folder / name)
    return removed


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_holder_alive(holder: dict) -> bool | None:
    """True/False for a lock taken on this host; None when another host holds it."""
    if holder.get("host") != socket.gethostname():
        return None
    pid = int(holder.get("pid", -1))
    if pid <= 0 or not _pid_alive(pid):
        return False
    started = holder.get("start")
    return started is None or _process_start(pid) in (None, started)


def _describe(holder: dict) -> str:
    since = holder.get("since")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if since else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')}{when}"


def acquire_lock(folder: Path) -> Path:
    """Create `folder/.liafkd.lock` exclusively; RunDirError when a live process holds it."""
    path = folder / LOCK_NAME
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "start": _process_start(os.getpid()),
        "since": time.time(),
    }
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
            alive = lock_holder_alive(holder)
            if alive is None:
                raise RunDirError(
                    f"{folder}: in use by {_describe(holder)} ({path}); wait for it to "
                    f"finish, or delete {path} if that run is gone"
                ) from None
            if alive:
                raise RunDirError(
                    f"{folder}: another run is writing here ({_describe(holder)}); wait for "
                    "it to finish or choose another output_dir"
                ) from None
            print(f"stale lock {path} left by {_describe(holder)} (no longer running): taken over")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return path
    raise RunDirError(f"{folder}: could not take the lock {path}")


def release_lock(path: Path) -> None:
    """Remove the lock if this process still owns it."""
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"{folder}: cannot create output_dir ({e.strerror})") from None
    probe = folder / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RunDirError(
            f"{folder}: output_dir is not writable ({e.strerror}); choose another output_dir "
            "(--set output_dir=...)"
        ) from None


def prepare(folder: Path, resume: bool, overwrite: bool) -> Path:
    """Check, lock and (with overwrite) clear `folder`; returns the lock file."""
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other")
    check_writable(folder)
    lock = acquire_lock(folder)
    try:
        found = run_files(folder)
        if found and overwrite:
            clear_run(folder)
            print(f"--overwrite: deleted the previous run's {', '.join(found)} in {folder}")
        elif found and not resume:
            raise RunDirError(
                f"{folder} already holds a run ({', '.join(found)}); continue it with "
                "--resume, train into another output_dir (--set output_dir=...), or start "
                "over with --overwrite (deletes that run's files first)"
            )
    except BaseException:
        release_lock(lock)
        raise
    return lock


@contextlib.contextmanager
def open_run_dir(output_dir: str | Path, resume: bool, overwrite: bool = False) -> Iterator[None]:
    """Hold `output_dir` for one train/distill command (rank 0 decides under torchrun)."""
    from liafkd.engine.distributed import broadcast_object, context

    folder = Path(output_dir)
    ctx = context()
    lock: Path | None = None
    error: str | None = None
    if ctx.is_main:
        try:
            lock = prepare(folder, resume, overwrite)
        except RunDirError as e:
            error = str(e)
    if ctx.enabled:
        error = broadcast_object(error)
    if error is not None:
        raise RunDirError(error if ctx.is_main else f"rank 0 refused the run: {error}")
    try:
        yield
    finally:
        if lock is not None:
            release_lock(lock)
