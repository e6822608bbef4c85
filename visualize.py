"""Pictures of motions: a 3D skeleton animation (GIF or MP4) and a still filmstrip (PNG).

    python visualize.py sample_composite_output.npy              # -> sample_composite_output.gif
    python visualize.py sample.npz --format mp4 --fps 20         # -> sample.mp4 (needs ffmpeg)
    python visualize.py sample.npy --filmstrip                   # -> sample_filmstrip.png

Inputs: a .npy of joints (T, 22, 3) in metres (y up) or HumanML3D features (T, 263); a batch
(N, T, 22, 3) / (N, T, 263) is drawn as N skeletons side by side; or the .npz bundle that
generate.py writes (motion, keyframes, keyframe_idx, optional features, prompt, fps), whose
keyframe frames are highlighted and whose keyframe poses are drawn faintly.

In a notebook: `anim = visualize_motion_file("sample.npz"); anim` (or `anim.to_jshtml()`).

The camera follows the smoothed root (equal scale on all axes, a window of at least 2.4 m),
so a long walk stays large in the picture while the checker ground scrolls under it. Every
frame reuses one figure and its artists (set_data_3d, no new artists), and needs one Agg draw of
~6 ms at 480x480; blitting does not apply because the view moves. A 120-frame GIF takes
~1.5 s on one CPU core, plus ~2.5 s of imports for the command.
"""
from __future__ import annotations

import os
import shutil
import sys
import textwrap
import warnings
import zipfile
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from matplotlib.animation import FuncAnimation
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Line3DCollection, Poly3DCollection
from PIL import Image
from scipy.ndimage import gaussian_filter1d


from runtime import check_out_path, write_atomic
from config import HelpFormatter, OneLineParser
from utils import KINEMATIC_CHAIN, NUM_JOINTS, as_joints, facing_rotation, qrot

FORMATS = ("gif", "mp4")
# Colours of KINEMATIC_CHAIN: right leg, left leg, spine + head, right arm, left arm.
CHAIN_COLOURS = ["#d62728", "#1f77b4", "#404040", "#ff7f0e", "#17becf"]
KEYFRAME_COLOUR = "#e6007e"
FIG_INCHES, FIG_DPI = 4.8, 100  # 480 x 480 pixels (a multiple of 16, as video codecs like)
GROUND_TILE = 0.5  # metres, checker tile size


@dataclass
class MotionData:
    """A motion ready to draw."""
    joints: np.ndarray  # (N, T, 22, 3) metres, y up
    keyframe_idx: Optional[np.ndarray] = None  # (K,) int frame indices, single motions only
    keyframes: Optional[np.ndarray] = None  # (K, 22, 3) metres
    prompt: Optional[str] = None
    fps: Optional[int] = None
    captions: Optional[list] = None  # (T,) strings: a timeline's current segment per frame


# ---------------------------------------------------------------------------------------
# Input checks and loading
# ---------------------------------------------------------------------------------------
def as_joint_batch(array, name: str = "motion") -> np.ndarray:
    """Joints (N, T, 22, 3) float32 from joints (T, 22, 3) / (N, T, 22, 3) or features
    (T, 263) / (N, T, 263). Raises ValueError naming the problem."""
    joints = as_joints(array, name)
    return (joints[None] if joints.ndim == 3 else joints).astype(np.float32)


def _check_keyframes(keyframe_idx, keyframes, num_frames: int, name: str):
    """Validated (keyframe_idx (K,) int64, keyframes (K, 22, 3) float32) or (None, None)."""
    if keyframe_idx is None:
        if keyframes is not None:
            raise ValueError(f"{name}: keyframes given without keyframe_idx; pass both")
        return None, None
    idx = np.asarray(keyframe_idx)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{name}: keyframe_idx must be a 1-D integer array, got {idx.dtype} {idx.shape}")
    if len(idx) and (idx.min() < 0 or idx.max() >= num_frames):
        raise ValueError(f"{name}: keyframe_idx must lie in [0, {num_frames - 1}], got "
                         f"{int(idx.min())}..{int(idx.max())}")
    if np.any(np.diff(idx) <= 0):
        raise ValueError(f"{name}: keyframe_idx must be strictly increasing")
    if keyframes is None:
        return idx.astype(np.int64), None
    kf = np.asarray(keyframes)
    if kf.shape != (len(idx), NUM_JOINTS, 3):
        raise ValueError(f"{name}: keyframes have shape {kf.shape}; expected ({len(idx)}, {NUM_JOINTS}, 3) "
                         "to match keyframe_idx")
    if not np.isfinite(kf).all():
        raise ValueError(f"{name}: keyframes contain NaN or inf values")
    return idx.astype(np.int64), kf.astype(np.float32)


def _unreadable(path: str, exc: Exception) -> str:
    """One-line message for a file that np.load (without pickle) cannot read."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "pickle" in reason:
        reason = "unknown content; pickled objects are never loaded"
    return f"cannot read {path}: not a valid NumPy .npy/.npz file ({reason[:120]})"


def load_motion(path: str) -> MotionData:
    """Read a .npy motion or a generate.py .npz bundle. Bad files raise a one-line ValueError."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"input file not found: {path} (pass an existing .npy or .npz file)")
    if os.path.isdir(path):
        raise ValueError(f"input is a folder, not a file: {path} (pass a .npy or .npz file)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(_unreadable(path, exc)) from None
    if isinstance(loaded, np.ndarray):
        return MotionData(as_joint_batch(loaded, name=path))
    try:
        with loaded as bundle:
            keys = set(bundle.files)
            data = {k: bundle[k] for k in keys & {"motion", "features", "keyframes", "keyframe_idx",
                                                   "prompt", "fps", "segment_texts", "segment_start",
                                                   "segment_end"}}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(_unreadable(path, exc)) from None
    if "motion" in data:
        joints = as_joint_batch(data["motion"], name=f"{path}: 'motion'")
    elif "features" in data:
        joints = as_joint_batch(data["features"], name=f"{path}: 'features'")
    else:
        raise ValueError(f"{path} holds no 'motion' or 'features' array (found: {sorted(keys)}); "
                         "pass a bundle written by generate.py")
    keyframe_idx, keyframes = data.get("keyframe_idx"), data.get("keyframes")
    if keyframe_idx is not None and len(joints) > 1:
        raise ValueError(f"{path}: keyframes are supported for a single motion, got a batch of {len(joints)}")
    keyframe_idx, keyframes = _check_keyframes(keyframe_idx, keyframes, joints.shape[1], path)
    prompt = str(data["prompt"]) if "prompt" in data and data["prompt"].ndim == 0 else None
    fps = None
    if "fps" in data:
        fps_arr = data["fps"]
        if fps_arr.ndim != 0 or not np.issubdtype(fps_arr.dtype, np.number) or not fps_arr > 0:
            raise ValueError(f"{path}: 'fps' must be one positive number, got {fps_arr!r}")
        fps = int(round(float(fps_arr)))
    captions = _segment_captions(data, joints.shape[1], path)
    return MotionData(joints, keyframe_idx, keyframes, prompt or None, fps, captions)


def segment_captions(texts, starts, ends, num_frames: int) -> list[str]:
    """One caption per frame, '[i/S] text' of the segment the frame is in, from a timeline's
    segment texts (S,) and [start, end) frames (S,) that tile 0..num_frames. ValueError otherwise."""
    texts, starts, ends = list(texts), np.asarray(starts).tolist(), np.asarray(ends).tolist()
    if not (len(texts) == len(starts) == len(ends) > 0) or starts[0] != 0 or ends[-1] != num_frames \
            or starts[1:] != ends[:-1] or any(e <= s for s, e in zip(starts, ends)):
        raise ValueError(f"segments must tile the motion's {num_frames} frames in order: starts {starts[:6]}, "
                         f"ends {ends[:6]}")
    return [f"[{i + 1}/{len(texts)}] {text}" for i, (text, s, e) in enumerate(zip(texts, starts, ends))
            for _ in range(e - s)]


def _segment_captions(data: dict, num_frames: int, path: str) -> Optional[list]:
    """Per-frame captions of a timeline bundle (segment_texts, segment_start, segment_end), or
    None when the bundle has none."""
    if "segment_texts" not in data:
        return None
    if "segment_start" not in data or "segment_end" not in data or data["segment_texts"].ndim != 1:
        raise ValueError(f"{path}: segment_texts needs segment_start and segment_end (1-D, frames)")
    try:
        return segment_captions(data["segment_texts"].tolist(), data["segment_start"], data["segment_end"],
                                num_frames)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _check_fps(fps) -> int:
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or not 0 < fps <= 100:
        raise ValueError(f"fps must be an integer in 1..100, got {fps!r}")
    return int(fps)


def _ffmpeg_exe() -> Optional[str]:
    """Path of an ffmpeg binary (imageio-ffmpeg's bundled one first), or None."""
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


def _output_path(out_path: str, allowed: Sequence[str]) -> tuple[str, str]:
    """(absolute path, format) of an output file; checks the extension and the folder."""
    path = os.path.abspath(os.fspath(out_path))
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in allowed:
        raise ValueError(f"unknown output format '.{ext}' for {path}; use one of "
                         f"{', '.join('.' + a for a in allowed)}")
    path = check_out_path(path)
    if ext == "mp4" and _ffmpeg_exe() is None:
        raise ValueError("mp4 output needs ffmpeg (pip install imageio-ffmpeg); use --format gif instead")
    return path, ext


# ---------------------------------------------------------------------------------------
# The animated 3D scene
# ---------------------------------------------------------------------------------------
def _to_plot(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Data (x, y up, z) -> matplotlib (X, Y, Z up) = (x, -z, y): a proper rotation, so the
    person is not mirrored; matplotlib's default camera then looks at the front (+z)."""
    return xyz[..., 0], -xyz[..., 2], xyz[..., 1]


class _SkeletonScene:
    """One figure with a 3D axes whose camera follows the (smoothed) root: a scrolling checker
    ground, the root trajectory, faint keyframe poses, and the skeletons of the current frame."""

    def __init__(self, joints: np.ndarray, fps: int, title: Optional[str],
                 keyframe_idx: Optional[np.ndarray], keyframes: Optional[np.ndarray],
                 captions: Optional[Sequence[str]] = None):
        joints = joints.copy()  # (N, T, 22, 3)
        # Batches: place motion i to the right (+x) of motion i-1 with a 0.5 m gap.
        shift = 0.0
        for i in range(len(joints)):
            lo, hi = joints[i, ..., 0].min(), joints[i, ..., 0].max()
            if i:
                joints[i, ..., 0] += shift - lo
                hi = hi + shift - lo
            shift = hi + 0.5
        self.joints = joints
        self.num_frames = joints.shape[1]
        self.fps = fps
        self.keyframe_set = set() if keyframe_idx is None else set(int(k) for k in keyframe_idx)

        # Camera target: the mean root over the batch, smoothed so root jitter does not shake
        # the view; the window is large enough for every skeleton at every frame, >= 2.4 m.
        roots = joints[:, :, 0, [0, 2]]  # (N, T, 2)
        centre = gaussian_filter1d(roots.mean(0).astype(np.float64), sigma=4.0, axis=0, mode="nearest")
        reach = np.abs(joints[..., [0, 2]] - centre[None, :, None]).max()
        self.centre = centre  # (T, 2) x, z
        self.half = float(max(1.2, reach + 0.2))
        self.y_range = (min(0.0, float(joints[..., 1].min())), max(2.0, float(joints[..., 1].max()) + 0.1))

        self.fig = Figure(figsize=(FIG_INCHES, FIG_INCHES), dpi=FIG_DPI)
        FigureCanvasAgg(self.fig)
        # The axes reach above the figure's top edge: the empty sky of the box is cut off and
        # the person sits in the middle of the picture.
        ax = self.fig.add_axes((0.0, 0.1, 1.0, 1.0), projection="3d", computed_zorder=False)
        self.ax = ax
        ax.set_axis_off()
        ax.view_init(elev=15, azim=-60)
        ax.set_box_aspect((2 * self.half, 2 * self.half, self.y_range[1] - self.y_range[0]), zoom=1.5)

        self.ground = Poly3DCollection([], edgecolors="none")
        ax.add_collection3d(self.ground, autolim=False)
        # The whole root trajectory, dashed on the ground, clipped to the moving window.
        for motion in joints:
            rx, ry, _ = _to_plot(motion[:, 0])
            ax.plot(rx, ry, np.zeros_like(rx), color="#999999", lw=1, ls="--", axlim_clip=True)
        # Faint poses of the keyframes before and after the current frame (updated per frame).
        self.keyframe_idx, self.keyframes = keyframe_idx, keyframes
        self.ghosts = Line3DCollection([], colors=KEYFRAME_COLOUR, linewidths=1.2, alpha=0.35)
        ax.add_collection3d(self.ghosts, autolim=False)
        self.traces, self.chains, self.markers = [], [], []
        for _ in joints:
            self.traces.append(ax.plot([], [], [], color="#555555", lw=1.5, axlim_clip=True)[0])
            self.chains.append([ax.plot([], [], [], color=c, lw=2.5, solid_capstyle="round")[0]
                                for c in CHAIN_COLOURS])
            self.markers.append(ax.plot([], [], [], ls="none", marker="o", ms=4.5, color=KEYFRAME_COLOUR)[0])
        if title:
            ax.text2D(0.02, 0.89, "\n".join(textwrap.wrap(title, 48)[:3]), transform=ax.transAxes,
                      va="top", fontsize=9)
        # A caption per frame (a timeline's current segment), drawn under the title.
        self.captions = captions
        self.caption = ax.text2D(0.02, 0.89 - (0.05 * min(3, len(textwrap.wrap(title, 48))) if title else 0.0),
                                 "", transform=ax.transAxes, va="top", fontsize=10, fontweight="bold")
        self.label = ax.text2D(0.02, -0.08, "", transform=ax.transAxes, fontsize=8, va="bottom")

    def _ground_tiles(self, x0: float, x1: float, z0: float, z1: float) -> tuple[list, list]:
        """Checker tiles on y = 0, fixed in the world and cut to the window [x0, x1] x [z0, z1]."""
        xs = np.arange(np.floor(x0 / GROUND_TILE), np.ceil(x1 / GROUND_TILE))
        zs = np.arange(np.floor(z0 / GROUND_TILE), np.ceil(z1 / GROUND_TILE))
        tiles, colours = [], []
        for a in xs:
            for b in zs:
                xa0, xa1 = max(a * GROUND_TILE, x0), min((a + 1) * GROUND_TILE, x1)
                za0, za1 = max(b * GROUND_TILE, z0), min((b + 1) * GROUND_TILE, z1)
                tiles.append([(xa0, -za0, 0), (xa1, -za0, 0), (xa1, -za1, 0), (xa0, -za1, 0)])
                colours.append("#d4d4d4" if int(a + b) % 2 else "#f0f0f0")
        return tiles, colours

    def update(self, frame: int) -> list:
        """Draw state of `frame`: camera window, ground, traces, skeletons, label."""
        cx, cz = self.centre[frame]
        x0, x1, z0, z1 = cx - self.half, cx + self.half, cz - self.half, cz + self.half
        self.ax.set_xlim(x0, x1)
        self.ax.set_ylim(-z1, -z0)
        self.ax.set_zlim(*self.y_range)
        tiles, colours = self._ground_tiles(x0, x1, z0, z1)
        self.ground.set_verts(tiles)
        self.ground.set_facecolor(colours)
        is_key = frame in self.keyframe_set
        if self.keyframes is not None:
            after = int(np.searchsorted(self.keyframe_idx, frame, side="right"))
            near = self.keyframes[max(after - 1, 0):after + 1]  # previous (or current) and next
            inside = (np.abs(near[:, 0, 0] - cx) < self.half) & (np.abs(near[:, 0, 2] - cz) < self.half)
            near = near[inside]
            self.ghosts.set_segments([np.stack(_to_plot(pose[chain]), axis=-1)
                                      for pose in near for chain in KINEMATIC_CHAIN])
        for motion, trace, lines, marker in zip(self.joints, self.traces, self.chains, self.markers):
            tx, ty, _ = _to_plot(motion[:frame + 1, 0])
            trace.set_data_3d(tx, ty, np.zeros_like(tx))
            pose = motion[frame]
            for line, chain in zip(lines, KINEMATIC_CHAIN):
                line.set_data_3d(*_to_plot(pose[chain]))
                line.set_linewidth(3.5 if is_key else 2.5)
            marker.set_data_3d(*_to_plot(pose if is_key else pose[:0]))
        text = f"frame {frame + 1}/{self.num_frames}  {frame / self.fps:5.2f} s"
        if is_key:
            text += "   KEYFRAME"
        self.label.set_text(text)
        self.label.set_color(KEYFRAME_COLOUR if is_key else "black")
        if self.captions is not None:
            self.caption.set_text("\n".join(textwrap.wrap(self.captions[frame], 44)[:2]))
        return [self.ground, self.ghosts, *self.traces, *[ln for lines in self.chains for ln in lines],
                *self.markers, self.label, self.caption]

    def frames_rgb(self) -> Iterator[np.ndarray]:
        """Yield every frame as an (H, W, 3) uint8 image, reusing the figure and its artists
        (the camera moves, so each frame is a full Agg draw: ~6 ms at 480x480)."""
        canvas = self.fig.canvas
        for frame in range(self.num_frames):
            self.update(frame)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # missing glyphs in a prompt's emoji
                canvas.draw()
            yield np.asarray(canvas.buffer_rgba())[..., :3].copy()


class MotionAnimation(FuncAnimation):
    """A FuncAnimation that shows itself as an HTML/JS player in Jupyter (`display(anim)`)."""

    def _repr_html_(self) -> str:
        return self.to_jshtml()


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------
def _write_gif(frames: Iterator[np.ndarray], path: str, fps: int) -> None:
    """Save RGB frames as a looping GIF with one shared palette (no colour flicker)."""
    frames = list(frames)
    # Palette: the drawing colours exactly (a keyframe colour may appear in few frames), plus
    # the anti-aliasing shades of a mosaic of a few frames.
    named = [CHAIN_COLOURS, [KEYFRAME_COLOUR, "#000000", "#ffffff", "#555555", "#999999"]]
    exact = [tuple(int(h[i:i + 2], 16) for i in (1, 3, 5)) for group in named for h in group]
    sample = np.concatenate([frames[i] for i in np.linspace(0, len(frames) - 1, 4).astype(int)], axis=0)
    shades = Image.fromarray(sample).quantize(colors=128 - len(exact), method=Image.Quantize.MEDIANCUT)
    palette = Image.new("P", (1, 1))
    palette.putpalette([c for rgb in exact for c in rgb] + shades.getpalette()[:3 * (128 - len(exact))])
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:],
                   duration=round(1000 / fps), loop=0, optimize=False)


def _write_mp4(frames: Iterator[np.ndarray], path: str, fps: int) -> None:
    """Encode RGB frames to H.264 MP4 with ffmpeg (via imageio-ffmpeg)."""
    import imageio_ffmpeg
    first = next(frames)
    writer = imageio_ffmpeg.write_frames(path, size=(first.shape[1], first.shape[0]), fps=fps,
                                         codec="libx264", pix_fmt_out="yuv420p", quality=7,
                                         macro_block_size=16, ffmpeg_log_level="error")
    writer.send(None)
    writer.send(np.ascontiguousarray(first))
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def save_animation(joints, out_path: str, fps: int = 20, title: Optional[str] = None,
                   keyframe_idx=None, keyframes=None, captions: Optional[Sequence[str]] = None) -> str:
    """Render a motion to `out_path` (.gif or .mp4, by extension); returns the absolute path.

    joints: (T, 22, 3) metres (y up), (T, 263) features, or a batch (N, ...) drawn side by
    side. keyframe_idx (K,) ints and keyframes (K, 22, 3): highlighted frames and faint poses.
    captions: T strings, one drawn on each frame (e.g. a timeline's current segment text).
    The write is atomic; on bad input a ValueError is raised and nothing is written.
    """
    batch = as_joint_batch(joints)
    fps = _check_fps(fps)
    if captions is not None:
        if isinstance(captions, str) or len(captions) != batch.shape[1] \
                or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"captions must be {batch.shape[1]} strings, one per frame")
        captions = list(captions)
    if keyframe_idx is not None and len(batch) > 1:
        raise ValueError(f"keyframes are supported for a single motion, got a batch of {len(batch)}")
    keyframe_idx, keyframes = _check_keyframes(keyframe_idx, keyframes, batch.shape[1], "save_animation")
    path, fmt = _output_path(out_path, FORMATS)
    scene = _SkeletonScene(batch, fps, title, keyframe_idx, keyframes, captions)
    writer = _write_gif if fmt == "gif" else _write_mp4
    write_atomic(path, lambda tmp: writer(scene.frames_rgb(), tmp, fps))
    return path


def save_filmstrip(joints, out_path: str, num_poses: int = 8, title: Optional[str] = None,
                   keyframe_idx=None, fps: int = 20) -> str:
    """A still PNG of `num_poses` poses evenly spaced in time, seen from the side, in a row.

    joints: (T, 22, 3) metres or (T, 263) features (the first motion of a batch is used).
    The motion is turned so its first frame faces +z (to the right in the picture); each pose is
    centred on its root. Keyframe poses (when keyframe_idx is given) are labelled in colour.
    """
    motion = as_joint_batch(joints)[0].astype(np.float64)  # (T, 22, 3)
    fps = _check_fps(fps)
    if isinstance(num_poses, bool) or not isinstance(num_poses, (int, np.integer)) or num_poses < 1:
        raise ValueError(f"num_poses must be a positive integer, got {num_poses!r}")
    keyframe_idx, _ = _check_keyframes(keyframe_idx, None, len(motion), "save_filmstrip")
    path, _ = _output_path(out_path, ("png",))

    # Turn the motion about y so that frame 0 faces +z.
    pos = torch.from_numpy(motion)
    turn = facing_rotation(pos[0])  # (4,)
    if torch.isfinite(turn).all():  # a degenerate pose (hips and shoulders together) is drawn as it is
        motion = qrot(turn.expand(pos.shape[:-1] + (4,)), pos).numpy()

    frames = np.unique(np.linspace(0, len(motion) - 1, min(num_poses, len(motion))).round().astype(int))
    poses = motion[frames] - motion[frames, :1] * np.array([1.0, 0.0, 1.0])  # root-centred in xz
    width = max(1.0, float(poses[..., 2].max() - poses[..., 2].min()) + 0.25)
    fig = Figure(figsize=(1.15 * len(frames) + 0.3, 2.9), dpi=FIG_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.01, 0.1, 0.98, 0.78 if title else 0.88))
    ax.set_aspect("equal")
    ax.set_axis_off()
    keys = set() if keyframe_idx is None else set(int(k) for k in keyframe_idx)
    # Side view from the person's right (-x): horizontal = z (forward), vertical = y. The far
    # (left) limbs are drawn first, then the spine, then the near (right) limbs.
    draw_order = [1, 4, 2, 0, 3]
    for slot, (frame, pose) in enumerate(zip(frames, poses)):
        h = pose[:, 2] + slot * width
        for order, c in enumerate(draw_order):
            chain = KINEMATIC_CHAIN[c]
            ax.plot(h[chain], pose[chain, 1], color=CHAIN_COLOURS[c], lw=2.2, zorder=2 + order,
                    solid_capstyle="round")
        is_key = int(frame) in keys
        ax.text(slot * width, -0.12, f"{frame / fps:.2f} s" + (" key" if is_key else ""),
                ha="center", va="top", fontsize=8, color=KEYFRAME_COLOUR if is_key else "black")
    ax.axhline(0.0, color="#999999", lw=1, zorder=1)
    ax.set_xlim(-width / 2, (len(frames) - 0.5) * width)
    ax.set_ylim(-0.3, max(1.0, float(poses[..., 1].max()) + 0.1))
    if title:
        fig.suptitle("\n".join(textwrap.wrap(title, 90)[:2]), fontsize=9)

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # missing glyphs in a prompt's emoji
            fig.savefig(tmp, format="png")
    write_atomic(path, write)
    return path


def visualize_motion_file(path: str, title: Optional[str] = None, fps: Optional[int] = None) -> FuncAnimation:
    """A FuncAnimation of a motion file (.npy joints/features or .npz bundle) for notebooks.

    `display(anim)` or `anim.to_jshtml()` shows it; `anim.save("x.gif")` also works. The title
    defaults to the bundle's prompt or the file name; fps to the bundle's fps or 20.
    """
    data = load_motion(path)
    fps = _check_fps(fps if fps is not None else (data.fps or 20))
    default_title = None if data.captions else data.prompt or os.path.basename(path)  # captions name each segment
    scene = _SkeletonScene(data.joints, fps, title or default_title, data.keyframe_idx, data.keyframes, data.captions)
    return MotionAnimation(scene.fig, scene.update, frames=scene.num_frames, interval=1000 / fps,
                           blit=False, repeat=True)


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------
def make_cli_parser() -> OneLineParser:
    parser = OneLineParser(prog="visualize.py", formatter_class=HelpFormatter,
                           description="Render a motion file as a 3D skeleton animation (GIF/MP4) or a "
                                       "filmstrip PNG, saved beside the input.")
    parser.add_argument("file", help=".npy joints (T,22,3) / features (T,263), or a generate.py .npz bundle")
    parser.add_argument("--out", default=None, help="output path (default: beside the input, "
                        "FILE.gif / FILE.mp4, or FILE_filmstrip.png with --filmstrip)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="animation format (default: from --out's extension, else gif)")
    parser.add_argument("--filmstrip", action="store_true", help="write a still PNG row of poses instead")
    parser.add_argument("--fps", type=int, default=None, help="frames per second (default: the bundle's, else 20)")
    parser.add_argument("--title", default=None, help="title (default: the bundle's prompt, else the file name)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input)."""
    parser = make_cli_parser()
    args = parser.parse_args(argv)
    try:
        if args.filmstrip and args.format:
            raise ValueError("--format applies to animations; --filmstrip always writes a PNG")
        data = load_motion(args.file)
        fps = _check_fps(args.fps if args.fps is not None else (data.fps or 20))
        title = args.title or data.prompt or os.path.basename(args.file)
        stem = os.path.splitext(args.file)[0]
        if args.filmstrip:
            out = save_filmstrip(data.joints, args.out or f"{stem}_filmstrip.png", title=title,
                                 keyframe_idx=data.keyframe_idx, fps=fps)
        else:
            fmt = args.format
            if args.out:
                ext = os.path.splitext(args.out)[1].lower().lstrip(".")
                if fmt and ext != fmt:
                    raise ValueError(f"--out {args.out} does not end in .{fmt} as --format {fmt} asks")
            out = save_animation(data.joints, args.out or f"{stem}.{fmt or 'gif'}", fps=fps,
                                 title=args.title if data.captions else title,
                                 keyframe_idx=data.keyframe_idx, keyframes=data.keyframes, captions=data.captions)
    except ValueError as exc:
        parser.exit(2, f"visualize.py: error: {exc}\n")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
