"""The motion request: one JSON schema for the HTTP API's body and the page's saved session.

    {"segments": [{"text": "a person walks forward", "seconds": 4},
                  {"text": "a person waves with the right hand", "seconds": 3}],
     "seed": 0, "samples": 1, "cleanup": false, "format": "bvh",
     "pins": [{"frame": 40, "joints": [[x, y, z], ... 22 rows]}], "pin_space": "local",
     "path": [[0, 0.0, 0.0], [139, 0.5, 2.0]],
     "joint_targets": [{"joint": "right_wrist", "frame": 60, "position": [0.3, 1.5, 0.4], "axes": "xyz"}],
     "checkpoints": {"dir": "checkpoints", "sha256": {"vqvae": "...", "gpt": "...", "diffusion": "..."}}}

Instead of `segments`: `prompt` with `length` (frames at 20 fps) or `seconds`. `pins` are poses
(22 joints, metres, y up) at frames of the whole motion; `pin_space` "world" also pins where the
root stands and faces there. `path` rows are (frame, x, z) in metres: the root passes through
them. `joint_targets` are end-effector targets (effectors.JointPins): a joint (SMPL-22 name,
utils.JOINT_NAMES) at a frame of the whole motion reaches a world position (metres, the world of
world pins and the path), on the pinned `axes` ("xyz", or a subset such as "y" or "xz").
`samples` motions are made with seeds seed, seed + 1, ... `checkpoints` records which
models made a session (the page writes it; a request may carry it back).

`parse_request` checks a decoded body against this schema and the server's limits; every
problem is a RequestError with one line naming the field and the fix. Nothing in a request
ever names a file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Literal, Optional, get_args

from runtime import checkpoint_path
from effectors import AXES, JointPins, check_joint_pins
from utils import JOINT_NAMES, NUM_JOINTS

Format = Literal["npz", "bvh", "smpl", "json"]
FORMATS = get_args(Format)
MAX_BODY_BYTES = 1 << 20  # largest request body accepted (1 MiB)
MAX_SEGMENTS = 32  # segments in one request
MAX_SECONDS = 120.0  # longest motion one request may ask for
MAX_TEXT_CHARS = 300  # characters in one segment's text
MAX_PINS = 32  # pinned poses in one request (and joint targets in one request)
MAX_PATH_POINTS = 2400  # root path rows in one request
MAX_SAMPLES = 8  # motions (seeds) in one request
MAX_SEED = 2 ** 31 - 1
MAX_COORD = 1000.0  # metres: the largest |coordinate| of a pin or path point
TOP_FIELDS = ("segments", "prompt", "length", "seconds", "seed", "samples", "pins", "pin_space", "path",
              "joint_targets", "cleanup", "format", "checkpoints")
TARGET_FIELDS = ("joint", "frame", "position", "axes")


class RequestError(ValueError):
    """A request that breaks the schema or a limit; the message is one line."""


@dataclass
class MotionRequest:
    """A checked request. segments: [(text, seconds)]; pins: [(frame, joints (22, 3) as nested
    lists)] sorted by frame; path: [(frame, x, z)] sorted by frame; joint_targets: [JointTarget]
    sorted by frame; seed None: the server's."""
    segments: list[tuple[str, float]]
    seed: Optional[int] = None
    samples: int = 1
    pins: list[tuple[int, list]] = field(default_factory=list)
    pin_space: Literal["local", "world"] = "local"
    path: list[tuple[int, float, float]] = field(default_factory=list)
    joint_targets: list["JointTarget"] = field(default_factory=list)
    cleanup: bool = False
    format: Format = "json"
    checkpoints: Optional[dict] = None

    def num_frames(self, fps: int) -> int:
        """Frames of the whole motion (each segment is round(seconds * fps) frames)."""
        return sum(int(round(seconds * fps)) for _, seconds in self.segments)

    def to_json(self) -> dict:
        """The request as the JSON object parse_request reads (a saved session)."""
        data = {"segments": [{"text": text, "seconds": seconds} for text, seconds in self.segments],
                "samples": self.samples, "pins": [{"frame": f, "joints": j} for f, j in self.pins],
                "pin_space": self.pin_space, "path": [list(row) for row in self.path],
                "joint_targets": [t.to_json() for t in self.joint_targets], "cleanup": self.cleanup,
                "format": self.format}
        if self.seed is not None:
            data["seed"] = self.seed
        if self.checkpoints is not None:
            data["checkpoints"] = self.checkpoints
        return data

    def joint_pins(self) -> Optional[JointPins]:
        """The joint targets as effectors.JointPins (None without any)."""
        if not self.joint_targets:
            return None
        return JointPins([t.joint for t in self.joint_targets], [t.frame for t in self.joint_targets],
                         [t.position for t in self.joint_targets], [t.axes for t in self.joint_targets])


@dataclass
class JointTarget:
    """One end-effector target: joint (a utils.JOINT_NAMES name) at frame reaches position
    [x, y, z] (world metres) on the world coordinates named by axes."""
    joint: str
    frame: int
    position: list[float]
    axes: str = "xyz"

    def to_json(self) -> dict:
        return {"joint": self.joint, "frame": self.frame, "position": list(self.position), "axes": self.axes}


# ---------------------------------------------------------------------------------------
# Decoding and checking
# ---------------------------------------------------------------------------------------
def reject_constant(name: str):
    raise RequestError(f"the body holds {name}; every number must be finite")


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise RequestError(f"the number {text[:20]} is out of range; every number must be finite")
    return value


def decode_body(body: bytes) -> dict:
    """The JSON object in a request body; RequestError for anything else (NaN and Infinity included)."""
    if len(body) > MAX_BODY_BYTES:
        raise RequestError(f"the body has {len(body)} bytes; the most accepted is {MAX_BODY_BYTES}")
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=reject_constant, parse_float=finite_float)
    except UnicodeDecodeError:
        raise RequestError("the body is not UTF-8 text; send a JSON object") from None
    except json.JSONDecodeError as exc:
        raise RequestError(f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise RequestError("the body nests too deeply; send a flat JSON object") from None
    if not isinstance(data, dict):
        raise RequestError(f"the body must be a JSON object, got {type(data).__name__}")
    return data


def expect(value, kinds, name: str, what: str):
    """value if it is one of kinds (bool never counts as a number), else RequestError."""
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise RequestError(f"{name} must be {what}, got {type(value).__name__} {json.dumps(value)[:40]}")
    return value


def number(value, name: str, low: float, high: float) -> float:
    value = float(expect(value, (int, float), name, "a number"))
    if not math.isfinite(value) or not low <= value <= high:
        raise RequestError(f"{name} must lie in [{low:g}, {high:g}], got {value:g}")
    return value


def whole(value, name: str, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    value = expect(value, (int,), name, "a whole number")
    if not low <= value <= high:
        raise RequestError(f"{name} must lie in [{low}, {high}], got {value}")
    return value


def text_of(value, name: str) -> str:
    text = expect(value, (str,), name, "a string").strip()
    if not text:
        raise RequestError(f"{name} is empty; describe a motion, e.g. 'a person walks forward'")
    if len(text) > MAX_TEXT_CHARS:
        raise RequestError(f"{name} has {len(text)} characters; the most accepted is {MAX_TEXT_CHARS}")
    return text


def only_fields(data: dict, allowed, where: str) -> None:
    unknown = [key for key in data if key not in allowed]
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r} in {where}; known fields: {', '.join(allowed)}")


def parse_segments(data: dict, fps: int, interval: int) -> list[tuple[str, float]]:
    """[(text, seconds)] from `segments`, or from `prompt` with `length` (frames) or `seconds`."""
    if "segments" in data:
        clash = [key for key in ("prompt", "length", "seconds") if key in data]
        if clash:
            raise RequestError(f"pass segments or prompt, not both; drop {clash[0]!r}")
        items = expect(data["segments"], (list,), "segments", "a list of {text, seconds}")
        if not items:
            raise RequestError("segments is empty; add at least one {\"text\": ..., \"seconds\": ...}")
        if len(items) > MAX_SEGMENTS:
            raise RequestError(f"{len(items)} segments; the most accepted is {MAX_SEGMENTS}")
        segments = []
        for i, item in enumerate(items):
            expect(item, (dict,), f"segments[{i}]", "an object {text, seconds}")
            only_fields(item, ("text", "seconds"), f"segments[{i}]")
            if "text" not in item or "seconds" not in item:
                raise RequestError(f"segments[{i}] needs both text and seconds")
            segments.append((text_of(item["text"], f"segments[{i}].text"),
                             number(item["seconds"], f"segments[{i}].seconds", 0.0, MAX_SECONDS)))
    else:
        if "prompt" not in data:
            raise RequestError("the request needs segments ([{text, seconds}]) or a prompt")
        if "length" in data and "seconds" in data:
            raise RequestError("pass length (frames) or seconds, not both")
        if "length" in data:
            seconds = whole(data["length"], "length", 0, int(MAX_SECONDS * fps)) / fps
        else:
            seconds = number(data.get("seconds", 6.0), "seconds", 0.0, MAX_SECONDS)
        segments = [(text_of(data["prompt"], "prompt"), seconds)]
    frames = [int(round(seconds * fps)) for _, seconds in segments]
    for i, n in enumerate(frames):
        if n <= interval:
            raise RequestError(f"segment {i} lasts {n} frames; each needs more than {interval} ({interval / fps:g} s)")
    if sum(frames) > MAX_SECONDS * fps:
        raise RequestError(f"the motion lasts {sum(frames) / fps:g} s; the most accepted is {MAX_SECONDS:g} s")
    return segments


def parse_pins(items, num_frames: int) -> list[tuple[int, list]]:
    expect(items, (list,), "pins", "a list of {frame, joints}")
    if len(items) > MAX_PINS:
        raise RequestError(f"{len(items)} pins; the most accepted is {MAX_PINS}")
    pins = {}
    for i, item in enumerate(items):
        expect(item, (dict,), f"pins[{i}]", "an object {frame, joints}")
        only_fields(item, ("frame", "joints"), f"pins[{i}]")
        if "frame" not in item or "joints" not in item:
            raise RequestError(f"pins[{i}] needs both frame and joints")
        frame = whole(item["frame"], f"pins[{i}].frame", 0, num_frames - 1)
        rows = expect(item["joints"], (list,), f"pins[{i}].joints", f"{NUM_JOINTS} rows of [x, y, z]")
        if len(rows) != NUM_JOINTS or not all(isinstance(r, list) and len(r) == 3 for r in rows):
            raise RequestError(f"pins[{i}].joints must be {NUM_JOINTS} rows of [x, y, z] metres")
        joints = [[number(v, f"pins[{i}].joints", -MAX_COORD, MAX_COORD) for v in row] for row in rows]
        if frame in pins:
            raise RequestError(f"two pins at frame {frame}; keep one pose per frame")
        pins[frame] = joints
    return sorted(pins.items())


def parse_path(items, num_frames: int) -> list[tuple[int, float, float]]:
    expect(items, (list,), "path", "a list of [frame, x, z] rows")
    if len(items) > MAX_PATH_POINTS:
        raise RequestError(f"{len(items)} path points; the most accepted is {MAX_PATH_POINTS}")
    rows = []
    for i, row in enumerate(items):
        if not isinstance(row, list) or len(row) != 3:
            raise RequestError(f"path[{i}] must be a [frame, x, z] row")
        rows.append((whole(row[0], f"path[{i}] frame", 0, num_frames - 1),
                     number(row[1], f"path[{i}] x", -MAX_COORD, MAX_COORD),
                     number(row[2], f"path[{i}] z", -MAX_COORD, MAX_COORD)))
    rows.sort(key=lambda r: r[0])
    if any(a[0] == b[0] for a, b in zip(rows, rows[1:])):
        raise RequestError("two path points share a frame; keep one point per frame")
    return rows


def parse_joint_targets(items, num_frames: int) -> list[JointTarget]:
    expect(items, (list,), "joint_targets", "a list of {joint, frame, position, axes}")
    if len(items) > MAX_PINS:
        raise RequestError(f"{len(items)} joint targets; the most accepted is {MAX_PINS}")
    targets = []
    for i, item in enumerate(items):
        name = f"joint_targets[{i}]"
        expect(item, (dict,), name, "an object {joint, frame, position, axes}")
        only_fields(item, TARGET_FIELDS, name)
        if not {"joint", "frame", "position"} <= set(item):
            raise RequestError(f"{name} needs joint, frame and position (axes is optional, default 'xyz')")
        joint = expect(item["joint"], (str,), f"{name}.joint", "a joint name such as 'right_wrist'")
        if joint not in JOINT_NAMES:
            raise RequestError(f"{name}.joint {joint[:40]!r} is unknown; use one of: {', '.join(JOINT_NAMES)}")
        frame = whole(item["frame"], f"{name}.frame", 0, num_frames - 1)
        row = expect(item["position"], (list,), f"{name}.position", "[x, y, z] metres")
        if len(row) != 3:
            raise RequestError(f"{name}.position must be [x, y, z] metres, got {len(row)} numbers")
        position = [number(v, f"{name}.position", -MAX_COORD, MAX_COORD) for v in row]
        axes = expect(item.get("axes", AXES), (str,), f"{name}.axes", "a string such as 'xyz', 'y' or 'xz'")
        if not axes or set(axes) - set(AXES) or len(set(axes)) != len(axes):
            raise RequestError(f"{name}.axes must be a subset of 'xyz' such as 'xyz', 'y' or 'xz', got {axes[:10]!r}")
        targets.append(JointTarget(joint, frame, position, axes))
    targets.sort(key=lambda t: t.frame)
    if targets:  # the rules across targets (one per joint and frame, a pelvis's x and z together): effectors'
        try:
            check_joint_pins(MotionRequest([], joint_targets=targets).joint_pins(), num_frames)
        except ValueError as exc:
            raise RequestError(f"joint_targets: {exc}") from None
    return targets


def parse_checkpoints(value) -> dict:
    expect(value, (dict,), "checkpoints", "an object {dir, sha256}")
    only_fields(value, ("dir", "sha256"), "checkpoints")
    text = json.dumps(value)
    if len(text) > 2000:
        raise RequestError("checkpoints is too long; it records {dir, sha256: {stage: hex}}")
    return value


def parse_request(data: dict, fps: int = 20, interval: int = 5) -> MotionRequest:
    """A MotionRequest from a decoded JSON object; RequestError naming the first problem."""
    expect(data, (dict,), "the body", "a JSON object")
    only_fields(data, TOP_FIELDS, "the request")
    segments = parse_segments(data, fps, interval)
    request = MotionRequest(segments)
    num_frames = request.num_frames(fps)
    if "seed" in data:
        request.seed = whole(data["seed"], "seed", 0, MAX_SEED)
    request.samples = whole(data.get("samples", 1), "samples", 1, MAX_SAMPLES)
    request.pins = parse_pins(data.get("pins", []), num_frames)
    request.pin_space = data.get("pin_space", "local")
    if request.pin_space not in ("local", "world"):
        raise RequestError(f"pin_space must be 'local' or 'world', got {json.dumps(request.pin_space)[:40]}")
    request.path = parse_path(data.get("path", []), num_frames)
    request.joint_targets = parse_joint_targets(data.get("joint_targets", []), num_frames)
    request.cleanup = expect(data.get("cleanup", False), (bool,), "cleanup", "true or false")
    request.format = data.get("format", "json")
    if request.format not in FORMATS:
        raise RequestError(f"format must be one of {', '.join(FORMATS)}, got {json.dumps(request.format)[:40]}")
    if "checkpoints" in data:
        request.checkpoints = parse_checkpoints(data["checkpoints"])
    return request


# ---------------------------------------------------------------------------------------
# Chained prompts and checkpoint identity
# ---------------------------------------------------------------------------------------
THEN = re.compile(r"(?:\s*[,;]\s*|\s+)(?:and\s+)?then\b[\s,]*|\s*;\s*", re.IGNORECASE)
SUBJECT = re.compile(r"^(a person|the person|someone|a man|a woman|he|she|they)\s", re.IGNORECASE)


def split_then(prompt: str) -> list[str]:
    """The actions of a prompt chained with 'then' ('... and then ...', '..., then ...', ';'),
    one per element, each a full sentence with the first action's subject:
    'a person walks forward and then waves' -> ['a person walks forward', 'a person waves'].
    A prompt without a chain comes back as a one-element list (stripped of end punctuation)."""
    parts = [p.strip(" ,.;") for p in THEN.split(" " + prompt.strip())]
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        return parts or [prompt.strip()]
    subject = SUBJECT.match(parts[0] + " ")
    if subject:
        parts = parts[:1] + [p if SUBJECT.match(p + " ") else f"{subject.group(1)} {p}" for p in parts[1:]]
    return parts


def checkpoint_identity(cfg) -> dict:
    """{dir, sha256: {stage: first 16 hex digits}} of cfg's checkpoint files that are present."""
    digests = {}
    for stage in ("vqvae", "gpt", "diffusion"):
        path = checkpoint_path(cfg, stage)
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                digests[stage] = hashlib.sha256(fh.read()).hexdigest()[:16]
    return {"dir": cfg.checkpoint_dir, "sha256": digests}
