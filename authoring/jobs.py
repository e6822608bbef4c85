"""Generation off the caller's thread, one request at a time per model.

    service = MotionService(composite, out_dir="results/app")
    job = service.submit(request)          # returns at once; QueueFull when too many wait
    motions = job.future.result()          # [TimelineResult], one per sample (seed, seed + 1, ...)
    body, mime, name = encode_motions(motions, "bvh", service.out_dir, fps=20)

One worker thread owns the model: requests from the page and the HTTP API queue behind each
other, so two never run at once and none is lost. `Job.status` says where a job is (queued at
position n, running sample i of N, done, failed) for the page's progress display.
"""
from __future__ import annotations

import io
import json
import os
import queue
import shutil
import tempfile
import threading
import time
import zipfile
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from typing import Optional

import numpy as np

from authoring.session import MotionRequest
from generate import save_outputs
from pipeline import Composite, KeyframePins, SamplingOptions
from timeline import TimelineResult, generate_timeline
from utils import JOINT_NAMES

MAX_QUEUE = 64  # requests waiting for the model at once; more are refused (HTTP 503)
# answer format -> (save_outputs formats, the files of it that are sent); "bundle" and "gif" are the page's
FILE_FORMATS = {"npz": (["npy"], [".npz"]), "bvh": (["bvh"], [".bvh"]), "smpl": (["smpl"], ["_smpl.npz"]),
                "bundle": (["npy"], [".npy", ".npz"]), "gif": (["gif"], [".gif"]), "mp4": (["mp4"], [".mp4"])}


class QueueFull(RuntimeError):
    """Too many requests are waiting for the model."""


def has_cleanup() -> bool:
    """Whether this pipeline offers foot cleanup (SamplingOptions.cleanup_feet)."""
    return any(f.name == "cleanup_feet" for f in fields(SamplingOptions))


def sampling_options(request: MotionRequest, seed: int) -> SamplingOptions:
    """The SamplingOptions of one sample of a request."""
    if request.cleanup and not has_cleanup():
        raise ValueError("foot cleanup is not available in this version of the pipeline; set cleanup to false")
    return SamplingOptions(seed=seed, **({"cleanup_feet": request.cleanup} if has_cleanup() else {}))


def generate_request(composite: Composite, request: MotionRequest, progress=None) -> list[TimelineResult]:
    """The motions of a checked request, one per sample; progress(i, n) before each."""
    pins = None
    if request.pins:
        pins = KeyframePins(np.array([j for _, j in request.pins], np.float64),  # (P, 22, 3)
                            np.array([f for f, _ in request.pins], np.int64), request.pin_space)
    trajectory = np.array(request.path, np.float64) if request.path else None  # (P, 3) rows (frame, x, z)
    seed = composite.cfg.seed if request.seed is None else request.seed
    motions = []
    for i in range(request.samples):
        if progress is not None:
            progress(i, request.samples)
        motions.append(generate_timeline(composite, request.segments, sampling_options(request, seed + i),
                                         trajectory=trajectory, pins=pins, joint_pins=request.joint_pins()))
    return motions


# ---------------------------------------------------------------------------------------
# Encoding the answer
# ---------------------------------------------------------------------------------------
def json_errors(errors: Optional[dict]) -> dict:
    """A motion's control_errors as JSON values (numbers rounded to 0.1 mm; {} without any)."""
    def value(v):
        if isinstance(v, (list, tuple, np.ndarray)):
            return [value(x) for x in v]
        return bool(v) if isinstance(v, (bool, np.bool_)) else round(float(v), 4)
    return {key: value(v) for key, v in (errors or {}).items()}


def motion_json(motions: list[TimelineResult], fps: int) -> dict:
    """JSON of motions: joints [sample][frame][joint][xyz] metres (y up), segments, keyframe frames,
    control_errors (root path/pin and joint-target errors in metres, control.py and effectors.py)."""
    first = motions[0]
    return {"fps": fps, "frames": int(len(first.joints)), "joint_names": JOINT_NAMES,
            "segments": [{"text": s.text, "start": s.start, "end": s.end} for s in first.segments],
            "samples": [{"joints": np.round(m.joints, 5).tolist(), "keyframe_idx": m.keyframe_idx.tolist(),
                         "control_errors": json_errors(m.control_errors)} for m in motions]}


def encode_motions(motions: list[TimelineResult], fmt: str, out_dir: str, fps: int) -> tuple[bytes, str, str]:
    """(body, MIME type, file name) of motions in fmt (npz, bvh, smpl, json; the page's bundle
    (.npy + .npz), gif, mp4); more than one file comes as a .zip (motion_<sample>.<ext> for several
    samples). Files are written by generate.save_outputs into a fresh folder inside out_dir and
    removed once read."""
    if fmt == "json":
        return json.dumps(motion_json(motions, fps)).encode(), "application/json", "motion.json"
    work = tempfile.mkdtemp(prefix="request_", dir=out_dir)
    try:
        files = []
        for i, motion in enumerate(motions):
            stem = os.path.join(work, "motion" if len(motions) == 1 else f"motion_{i}")
            formats, suffixes = FILE_FORMATS[fmt]
            save_outputs(stem, formats, motion, fps)
            files += [stem + suffix for suffix in suffixes]
        if len(files) == 1:
            with open(files[0], "rb") as fh:
                return fh.read(), MIME[fmt], os.path.basename(files[0])
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for path in files:
                archive.write(path, os.path.basename(path))
        return buffer.getvalue(), "application/zip", "motions.zip"
    finally:
        shutil.rmtree(work, ignore_errors=True)


MIME = {"npz": "application/octet-stream", "smpl": "application/octet-stream", "bvh": "text/plain; charset=utf-8",
        "gif": "image/gif", "mp4": "video/mp4"}


# ---------------------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------------------
@dataclass
class Job:
    """One queued request. status: 'queued', 'running', 'done' or 'failed'; sample/samples:
    which sample is being made; future: the motions or the exception."""
    request: MotionRequest
    future: Future = field(default_factory=Future)
    status: str = "queued"
    sample: int = 0
    samples: int = 1
    submitted: float = field(default_factory=time.perf_counter)
    seconds: Optional[float] = None  # generation time once done


class MotionService:
    """The loaded model (or the reason there is none) and the one worker thread that uses it."""

    def __init__(self, composite: Optional[Composite], out_dir: str, fps: int = 20, interval: int = 5,
                 missing: str = "", checkpoints: Optional[dict] = None):
        self.composite, self.out_dir, self.missing = composite, os.path.abspath(out_dir), missing
        self.fps = composite.cfg.fps if composite else fps
        self.interval = composite.keyframe_interval if composite else interval
        self.checkpoints = checkpoints or {}
        os.makedirs(self.out_dir, exist_ok=True)
        self.queue: queue.Queue = queue.Queue(maxsize=MAX_QUEUE)
        self.waiting: list[Job] = []
        self.lock = threading.Lock()
        self.completed = 0
        self.worker = threading.Thread(target=self.work, name="motion-worker", daemon=True)
        self.worker.start()

    def submit(self, request: MotionRequest) -> Job:
        """Queue a request; QueueFull when MAX_QUEUE already wait. RuntimeError without a model."""
        if self.composite is None:
            raise RuntimeError(self.missing)
        job = Job(request, samples=request.samples)
        with self.lock:
            try:
                self.queue.put_nowait(job)
            except queue.Full:
                raise QueueFull(f"{MAX_QUEUE} requests are already waiting; try again shortly") from None
            self.waiting.append(job)
        return job

    def position(self, job: Job) -> int:
        """How many jobs run or wait ahead of job (0: it is running or done)."""
        with self.lock:
            return self.waiting.index(job) if job in self.waiting else 0

    def work(self) -> None:
        while True:
            job = self.queue.get()
            job.status = "running"

            def progress(i, n, job=job):
                job.sample, job.samples = i, n

            start = time.perf_counter()
            try:
                motions = generate_request(self.composite, job.request, progress)
            except Exception as exc:  # noqa: BLE001  the caller reads it from the future
                job.status = "failed"
                job.future.set_exception(exc)
            else:
                job.seconds = time.perf_counter() - start
                job.status = "done"
                job.future.set_result(motions)
            finally:
                with self.lock:
                    self.waiting.remove(job)
                    self.completed += 1
