"""Run-time plumbing shared by the scripts: device choice, seeding, safe checkpoints and
torch.distributed set-up. No model or motion maths lives here."""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import random
import sys
import tempfile
import zipfile
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from config import CompositeConfig


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, unsafe or does not fit; one line says which and why."""


def select_device(cfg: CompositeConfig) -> torch.device:
    """cfg.device 'auto' -> CUDA when present (the local rank's GPU under torchrun), else CPU."""
    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is visible (use --device cpu or auto)")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def autocast_context(cfg: CompositeConfig, device: torch.device):
    """bf16 autocast on CUDA when cfg.amp, otherwise a no-op context."""
    if device.type == "cuda" and cfg.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def stats_hash(mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor) -> str:
    """Short hash of the feature statistics: equal for checkpoints trained on the same data."""
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    return hashlib.sha1(mean.tobytes() + std.tobytes()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------
# Checkpoints: only tensors and JSON-safe primitives, written atomically, read weights-only
# ---------------------------------------------------------------------------------------
def save_checkpoint(path: str, payload: dict) -> None:
    """Write `payload` to `path` atomically: temp file in the same folder, fsync, rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def write_atomic(path: str, write_fn) -> None:
    """Write a file via `write_fn(tmp_path)` to a temp file in the same folder, then rename.

    On any failure the temp file is removed and an existing file at `path` is left untouched.
    OSErrors become one-line ValueErrors.
    """
    folder, base = os.path.split(path)
    suffix = os.path.splitext(base)[1]
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{suffix}", dir=folder)
    except OSError as exc:
        raise ValueError(f"cannot write to folder {folder}: {exc.strerror} (choose another --out)") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        write_fn(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ValueError(f"cannot write {path}: {exc.strerror or exc} (check the disk and permissions)") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def checkpoint_path(cfg: CompositeConfig, stage: str) -> str:
    """Where a stage's checkpoint lives: cfg.checkpoint_dir/<stage>.pt (vqvae, gpt, diffusion,
    evaluator). The one place that builds these paths."""
    return os.path.join(cfg.checkpoint_dir, f"{stage}.pt")


REQUIRED_KEYS = ("model", "config", "step", "stage")


def load_checkpoint(path: str, stage: str | None = None) -> dict:
    """Read a checkpoint with torch.load(weights_only=True) and check it is one of ours.

    Raises CheckpointError (one line naming the file) for a missing, truncated, corrupt or
    foreign file, or one holding code; never executes anything from the file.
    """
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path} (run `python train.py` first)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError,
            ValueError, AttributeError, TypeError, KeyError, IndexError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in reason or "Unsupported global" in str(exc):
            reason = "it holds Python objects other than tensors and plain values (refused, not executed)"
        raise CheckpointError(f"cannot load checkpoint {path}: {reason[:160]} "
                              "(retrain it with `python train.py` or restore a good copy)") from None
    if not isinstance(payload, dict) or any(key not in payload for key in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is not a checkpoint of this project (missing model/config/step/stage)")
    if stage is not None and payload["stage"] != stage:
        raise CheckpointError(f"{path} holds the '{payload['stage']}' stage, expected '{stage}'")
    return payload


def vqvae_identity(vqvae_payload: dict) -> str:
    """Which VQ-VAE state a GPT was trained on: its run and step."""
    return f"{vqvae_payload.get('run_id', '')}@{vqvae_payload['step']}"


ARCHITECTURE_FIELDS = ("feature_dim", "num_joints", "keyframe_interval")


def architecture_mismatches(saved: dict, cfg: CompositeConfig, stage_prefixes: tuple[str, ...]) -> list[str]:
    """Names (with both values) of the fields that shape a stage's model and differ between a
    checkpoint's saved config and `cfg`."""
    current = cfg.to_dict()
    names = [k for k in current if k in ARCHITECTURE_FIELDS or k.startswith(stage_prefixes)]
    return [f"{k}={saved.get(k)!r} in checkpoint vs {current[k]!r} now" for k in names
            if saved.get(k) != current[k]]


# ---------------------------------------------------------------------------------------
# torch.distributed (torchrun)
# ---------------------------------------------------------------------------------------
@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun (NCCL on GPUs, gloo on CPU).

    On GPUs each process first binds to its node-local GPU (LOCAL_RANK), as NCCL requires.
    `shutdown_distributed` is the matching exit.
    """
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        # torch.distributed.nn.functional, which DistributedDataParallel imports on first use,
        # binds `group.WORLD` as the default argument of its ten collectives when it is
        # imported. Imported after the group exists, it holds the group past
        # destroy_process_group, so gloo's worker threads run on until the interpreter's
        # teardown, whose order then decides between a clean exit and std::terminate
        # ("terminate called without an active exception", SIGABRT). Imported first, those
        # defaults are None and destroy_process_group joins the threads.
        import torch.distributed.nn.functional  # noqa: F401
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def shutdown_distributed(info: DistInfo) -> None:
    """Leave the process group, its worker threads joined (see init_distributed), so that the
    interpreter exits with no gloo/NCCL thread still running. No-op when running alone."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def native_thread_names() -> list[str]:
    """Names of this process's OS threads (Linux: /proc/self/task/*/comm; [] elsewhere): the
    gloo backend's are 'gloo_tcp_loop' and 'pt_gloo_runloop'."""
    names = []
    for task in sorted(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else []:
        try:
            with open(f"/proc/self/task/{task}/comm") as fh:
                names.append(fh.read().strip())
        except OSError:  # the thread ended while listed
            pass
    return names


def rank_seed(seed: int, rank: int) -> int:
    """The seed of one rank's own randomness (dropout and the like): distinct per rank, and
    never the seed the model was initialised with, nor another stage's."""
    return seed + 10_000 * (rank + 1)


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's `obj` on every rank (pickled through the process group); `obj` itself when
    running alone. What rank 0 read from its disk thus reaches ranks on other machines."""
    if not info.enabled:
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def load_checkpoint_on_main(info: DistInfo, path: str, stage: str | None = None,
                            missing_ok: bool = False) -> dict | None:
    """`load_checkpoint` on rank 0, its payload sent to every rank, so that no other rank needs
    the file (no shared file system). A CheckpointError on rank 0 is raised on every rank;
    with missing_ok, a file rank 0 does not have gives None everywhere."""
    result: dict | str | None = None
    if info.is_main and not (missing_ok and not os.path.exists(path)):
        try:
            result = load_checkpoint(path, stage)
        except CheckpointError as exc:
            result = str(exc)
    result = broadcast_object(info, result)
    if isinstance(result, str):
        raise CheckpointError(result)
    return result


def main_first(info: DistInfo, make: Callable[[], Any]) -> Any:
    """make() on rank 0, then on each machine's local rank 0, then on the remaining ranks, with
    a barrier after each round: what make() writes to disk (a built data set, a cache) is then
    written once per file system, shared or not, and only read by the others."""
    result = None
    for turn in (info.is_main, info.local_rank == 0 and not info.is_main, info.local_rank != 0):
        if turn:
            result = make()
        if info.enabled:
            dist.barrier()
    return result


def print_main(info: DistInfo, *args: Any, **kwargs: Any) -> None:
    """print() on rank 0 only."""
    if info.is_main:
        print(*args, **kwargs)
        sys.stdout.flush()


def check_out_path(path: str) -> str:
    """Absolute output path whose folder exists and is writable, else ValueError; the one
    check every command that writes a user-named file makes before any work."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ValueError(f"output folder does not exist: {folder} (create it or choose another --out)")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"output folder is not writable: {folder} (choose another --out)")
    if os.path.isdir(path):
        raise ValueError(f"output path is a folder: {path} (give a file name)")
    return path


def _single_thread_worker() -> None:
    torch.set_num_threads(1)


def run_tasks(fn: Callable, tasks: list, workers: int, desc: str, progress: bool = True,
              unit: str = "item", chunksize: int = 8) -> list:
    """[fn(task) for task in tasks], in order, in this process or in a pool of `workers`
    processes (fork where available), with a tqdm bar on stderr. Each worker, and this process
    while it runs the tasks itself, uses one torch thread (small tensors: threads only add
    overhead). fn must be a module-level function so that a pool can send it."""
    bar = None
    if progress and tasks:
        from tqdm import tqdm
        bar = tqdm(total=len(tasks), desc=desc, unit=unit, file=sys.stderr)
    results = []
    if workers > 1 and len(tasks) > 1:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with context.Pool(workers, initializer=_single_thread_worker) as pool:
            for result in pool.imap(fn, tasks, chunksize=chunksize):
                results.append(result)
                if bar:
                    bar.update()
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for task in tasks:
                results.append(fn(task))
                if bar:
                    bar.update()
        finally:
            torch.set_num_threads(threads)
    if bar:
        bar.close()
    return results
