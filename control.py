"""Control of where the body goes: world-space root goals and the root correction that meets them.

HumanML3D features store the root as velocities: per frame t, the angular velocity about y
(feature 0, the increment of a half-angle a: the root rotation world -> facing is the quaternion
(cos a, 0, sin a, 0)), the xz velocity in the facing frame (features 1, 2) and the height (3).
Integrating them gives the root's state at every frame: heading a[t] and position p[t] (x, z),
starting at a[0] = 0, p[0] = 0 (`utils.recover_root_rot_pos`). Goals in the world are goals on
that integral, so they cannot be imputed on the features directly; `correct_root` turns the
velocities into states, moves the states onto the goals with the smoothest correction (a clamped
cubic spline through the errors, zero where the motion is fixed, constant after the last goal)
and turns them back into velocities. It runs on every x0 prediction inside the diffusion's
sampling loop, on the GPT's keyframes before it, and once on the final motion, so the goals are
met exactly (up to float rounding) and the network has denoised towards them.

World space: the generated motion's frame 0 stands at the start transform (`RootControl.start_xz`,
`start_heading`): a world-space pin or trajectory row at frame 0 sets it, else the origin facing
+z. `to_world` places a motion (recovered facing +z at the origin) there.

    control = RootControl.build(length, pins=KeyframePins(joints, idx, space="world"), trajectory=path)
    control_errors(result_joints, control, raw_joints)   # delivered, raw_* and correction_* errors
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from scipy.ndimage import gaussian_filter1d

from utils import NUM_JOINTS, delivered_joints, facing_rotation

FACING_MIN_SPEED = 0.3  # m/s: slower path stretches (or body motion) set no facing
FACING_SMOOTH_FRAMES = 5.0  # sigma of the smoothing of path-facing heading corrections
PATH_NEIGHBOUR_GAP = 10  # frames: trajectory rows further apart than this give no direction


# ---------------------------------------------------------------------------------------
# Root states <-> root velocities
# ---------------------------------------------------------------------------------------
def wrap_half(angle):
    """Half-angles wrapped to [-pi/2, pi/2) (a half-angle a and a + pi are the same rotation)."""
    return (np.asarray(angle) + math.pi / 2) % math.pi - math.pi / 2


def rotate_xz(xz: np.ndarray, angle) -> np.ndarray:
    """Rotate xz vectors (..., 2) about +y by `angle` (...) radians (the angle measured from +z
    towards +x grows by `angle`)."""
    c, s = np.cos(angle), np.sin(angle)
    x, z = xz[..., 0], xz[..., 1]
    return np.stack([x * c + z * s, -x * s + z * c], axis=-1)


def integrate_root(root: np.ndarray, heading0: float = 0.0, xz0=(0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Root states from root features root (T, >=3) = (angular velocity, x vel, z vel, ...).

    Returns heading (T+1,) half-angles and positions (T+1, 2) xz: the state at every frame
    0..T-1 (equal to `utils.recover_root_rot_pos`'s for heading0 = 0, xz0 = 0) and, last, the
    state after the final frame (where a following motion continues).
    """
    root = np.asarray(root, dtype=np.float64)
    heading = heading0 + np.concatenate([[0.0], np.cumsum(root[:, 0])])  # (T+1,)
    steps = rotate_xz(root[:, 1:3], -2.0 * heading[1:])  # facing -> world of each step
    xz = np.asarray(xz0, dtype=np.float64) + np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    return heading, xz


def root_velocities(heading: np.ndarray, xz: np.ndarray) -> np.ndarray:
    """Inverse of `integrate_root` (for heading0 = heading[0], xz0 = xz[0]): root states (T+1,),
    (T+1, 2) -> features (T, 3) (angular velocity, x vel, z vel in the facing frame)."""
    ang = np.diff(heading)
    vel = rotate_xz(np.diff(xz, axis=0), 2.0 * heading[1:])
    return np.concatenate([ang[:, None], vel], axis=1)


def smooth_correction(num_states: int, anchor: int, frames: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """The smoothest correction (num_states, ...) that is 0 up to state `anchor` and equals
    errors (N, ...) at frames (N,) (sorted, > anchor): a clamped cubic spline (zero slope at
    both ends), constant after the last frame."""
    out = np.zeros((num_states,) + errors.shape[1:])
    if len(frames) == 0:
        return out
    knots = np.concatenate([[anchor], frames]).astype(np.float64)
    values = np.concatenate([np.zeros((1,) + errors.shape[1:]), errors], axis=0)
    spline = CubicSpline(knots, values, bc_type="clamped", axis=0)
    span = np.arange(anchor, int(frames[-1]) + 1)
    out[span] = spline(span)
    out[int(frames[-1]) + 1:] = errors[-1]
    return out


# ---------------------------------------------------------------------------------------
# Goals
# ---------------------------------------------------------------------------------------
@dataclass
class RootTargets:
    """Root goals in one motion's own frame (frame 0 at the origin, heading 0).

    pos_frames (N,) / pos_xz (N, 2): positions; head_frames (M,) / head (M,): headings as the
    features' half-angles; follow_path: also turn the body so that it moves along the position
    goals wherever they move faster than FACING_MIN_SPEED (explicit headings win).
    """
    pos_frames: np.ndarray
    pos_xz: np.ndarray
    head_frames: np.ndarray
    head: np.ndarray
    follow_path: bool = True
    fps: int = 20

    def __bool__(self) -> bool:
        return bool(len(self.pos_frames) or len(self.head_frames))


def path_directions(frames: np.ndarray, xz: np.ndarray, fps: int) -> tuple[np.ndarray, np.ndarray]:
    """Direction of travel (angle from +z towards +x) along position goals, and where it is
    defined: (angles (N,), valid (N,) bool). A goal has a direction when a neighbouring goal is
    at most PATH_NEIGHBOUR_GAP frames away and the path moves faster than FACING_MIN_SPEED."""
    n = len(frames)
    angles, valid = np.zeros(n), np.zeros(n, dtype=bool)
    if n < 2:
        return angles, valid
    prev_i = np.clip(np.arange(n) - 1, 0, n - 1)
    next_i = np.clip(np.arange(n) + 1, 0, n - 1)
    ok_prev = (frames - frames[prev_i] <= PATH_NEIGHBOUR_GAP) & (prev_i < np.arange(n))
    ok_next = (frames[next_i] - frames <= PATH_NEIGHBOUR_GAP) & (next_i > np.arange(n))
    lo = np.where(ok_prev, prev_i, np.arange(n))
    hi = np.where(ok_next, next_i, np.arange(n))
    gap = (frames[hi] - frames[lo]).astype(np.float64)
    delta = xz[hi] - xz[lo]
    speed = np.linalg.norm(delta, axis=-1) / np.maximum(gap, 1.0) * fps
    valid = (gap > 0) & (speed > FACING_MIN_SPEED)
    angles = np.arctan2(delta[:, 0], delta[:, 1])
    return angles, valid


def _path_heading_goals(targets: RootTargets, root: np.ndarray, heading: np.ndarray, anchor: int,
                        interval: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Heading goals (frames, half-angles) that turn the body along its path: where the path
    moves, the heading that maps the motion's own (smoothed) direction of travel in its facing
    frame onto the path's direction (straight ahead when the motion itself stands still)."""
    angles, valid = path_directions(targets.pos_frames, targets.pos_xz, targets.fps)
    frames = targets.pos_frames[valid]
    keep = frames > anchor
    frames, angles = frames[keep], angles[valid][keep]
    if len(frames) == 0:
        return frames, angles
    local = gaussian_filter1d(root[:, 1:3], 2.0, axis=0, mode="nearest")  # facing-frame velocity
    rows = np.clip(frames - 1, 0, len(root) - 1)
    own_speed = np.linalg.norm(local[rows], axis=-1) * targets.fps
    own = np.where(own_speed > FACING_MIN_SPEED, np.arctan2(local[rows, 0], local[rows, 1]), 0.0)
    # world angle of travel = own angle - 2 a  =>  a = (own - path) / 2
    delta = wrap_half((own - angles) / 2.0 - heading[frames])
    delta = np.unwrap(delta * 2.0) / 2.0  # no jumps of pi between neighbours before smoothing
    delta = gaussian_filter1d(delta, FACING_SMOOTH_FRAMES, mode="nearest")
    pick = np.unique(np.concatenate([np.arange(0, len(frames), interval), [len(frames) - 1]]))
    return frames[pick], wrap_half(heading[frames[pick]] + delta[pick])


def correct_root(root: np.ndarray, targets: RootTargets, free_from: int = 0) -> np.ndarray:
    """Root features root (T, >=3) changed in their first 3 channels (angular and xz velocity)
    so that the integrated root meets `targets`: exactly at every goal frame after `free_from`
    (goals at earlier frames are ignored), unchanged states up to frame free_from (the rows
    before it are kept; use it when they are pinned), the smoothest change in between.
    Returns a float64 copy (T, C)."""
    root = np.array(root, dtype=np.float64)
    T = len(root)
    heading, xz = integrate_root(root)
    head_frames, head_goal = targets.head_frames, targets.head
    keep = (head_frames > free_from) & (head_frames <= T)
    head_frames, head_goal = head_frames[keep], head_goal[keep]
    if targets.follow_path and len(targets.pos_frames):
        path_frames, path_goal = _path_heading_goals(targets, root, heading, free_from)
        if len(head_frames):  # explicit headings win over the path's within a few frames
            near = np.abs(path_frames[:, None] - head_frames[None]).min(axis=1) < 5
            path_frames, path_goal = path_frames[~near], path_goal[~near]
        order = np.argsort(np.concatenate([head_frames, path_frames]), kind="stable")
        head_frames = np.concatenate([head_frames, path_frames])[order]
        head_goal = np.concatenate([head_goal, path_goal])[order]
    if len(head_frames):
        errors = wrap_half(head_goal - heading[head_frames])
        heading = heading + smooth_correction(T + 1, free_from, head_frames, errors)
        _, xz = integrate_root(np.concatenate([np.diff(heading)[:, None], root[:, 1:3]], axis=1))
    pos_frames, pos_goal = targets.pos_frames, targets.pos_xz
    keep = (pos_frames > free_from) & (pos_frames <= T)
    if keep.any():
        errors = pos_goal[keep] - xz[pos_frames[keep]]
        xz = xz + smooth_correction(T + 1, free_from, pos_frames[keep], errors)
    root[:, :3] = root_velocities(heading, xz)
    return root


def root_hook(targets: RootTargets, mean: np.ndarray, std: np.ndarray, free_from: int = 0,
              row: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A `GaussianDiffusion.sample` x0 hook: corrects row `row`'s root channels of a normalised
    x0 (B, T, 263) (statistics mean/std (263,)) with `correct_root` and returns the new x0."""
    mean3, std3 = np.asarray(mean[:3], np.float64), np.asarray(std[:3], np.float64)

    def hook(x0: torch.Tensor) -> torch.Tensor:
        root = x0[row, :, :3].double().cpu().numpy() * std3 + mean3
        fixed = (correct_root(root, targets, free_from) - mean3) / std3
        x0 = x0.clone()
        x0[row, :, :3] = torch.from_numpy(fixed).to(x0)
        return x0
    return hook


# ---------------------------------------------------------------------------------------
# Goals in the world
# ---------------------------------------------------------------------------------------
def pose_heading(joints: np.ndarray) -> np.ndarray:
    """The features' heading half-angle (P,) of poses (P, 22, 3): the facing rotation that
    `utils.pose_features` uses (hips_swapped), as the angle a of (cos a, 0, sin a, 0)."""
    q = facing_rotation(torch.from_numpy(np.asarray(joints, np.float64)), hips_swapped=True).numpy()
    return wrap_half(np.arctan2(q[:, 2], q[:, 0]))


def to_world(joints, heading: float, xz) -> np.ndarray:
    """Joints (..., 22, 3) of a motion recovered at the origin facing +z, placed at the start
    transform (heading half-angle, xz): turned by -2*heading about y, then moved by xz."""
    joints = np.asarray(joints)
    out = joints.astype(np.float64, copy=True)
    out[..., [0, 2]] = rotate_xz(joints[..., [0, 2]].astype(np.float64), -2.0 * heading) + np.asarray(xz)
    return out.astype(joints.dtype)


def from_world(joints, heading: float, xz) -> np.ndarray:
    """Inverse of `to_world`: joints (..., 22, 3) in the world, moved back to a motion's own frame
    (frame 0 at the origin facing +z) from the start transform (heading half-angle, xz)."""
    joints = np.asarray(joints)
    out = joints.astype(np.float64, copy=True)
    out[..., [0, 2]] = rotate_xz(joints[..., [0, 2]].astype(np.float64) - np.asarray(xz), 2.0 * heading)
    return out.astype(joints.dtype)


def check_trajectory(trajectory, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames (N,) int64, xz (N, 2)) of a root path: (length, 2) xz per frame, or (P, 3) rows
    (frame, x, z) with sorted whole frame numbers in [0, length). One-line ValueError otherwise."""
    if isinstance(trajectory, torch.Tensor):
        trajectory = trajectory.detach().cpu().numpy()
    try:
        arr = np.asarray(trajectory, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3) or len(arr) == 0:
        raise ValueError(f"trajectory must be ({length}, 2) xz per frame or (P, 3) rows (frame, x, z), "
                         f"got shape {getattr(arr, 'shape', None)}")
    if not np.isfinite(arr).all():
        raise ValueError("trajectory contains NaN or infinite values; pass finite metres")
    if arr.shape[1] == 2:
        if len(arr) != length:
            raise ValueError(f"a (T, 2) trajectory needs one row per frame: {length} rows for a "
                             f"{length}-frame motion, got {len(arr)} (or pass (P, 3) rows (frame, x, z))")
        return np.arange(length, dtype=np.int64), arr
    frames = arr[:, 0]
    if not np.all(frames == np.round(frames)):
        raise ValueError("trajectory rows (frame, x, z) need whole frame numbers in their first column")
    frames = frames.astype(np.int64)
    if frames.min() < 0 or frames.max() >= length:
        raise ValueError(f"trajectory frames must lie in [0, {length - 1}], got {frames.min()}..{frames.max()}")
    if np.any(np.diff(frames) <= 0):
        raise ValueError("trajectory frames must be sorted and without repeats")
    return frames, arr[:, 1:]


@dataclass
class RootControl:
    """Root goals of a whole motion in world space, and where its frame 0 stands.

    pin_frames / pin_xz / pin_heading: world-space keyframe pins (position and facing);
    traj_frames / traj_xz: a path to follow; start_heading (half-angle) / start_xz: the start
    transform; follow_path: turn the body along the path.
    """
    length: int
    pin_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pin_xz: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    pin_heading: np.ndarray = field(default_factory=lambda: np.zeros(0))
    traj_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    traj_xz: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    start_heading: float = 0.0
    start_xz: np.ndarray = field(default_factory=lambda: np.zeros(2))
    follow_path: bool = True
    fps: int = 20

    @classmethod
    def build(cls, length: int, pins=None, trajectory=None, follow_path: bool = True,
              fps: int = 20) -> Optional["RootControl"]:
        """Goals from world-space KeyframePins (joints) and/or a trajectory; None when neither
        gives one. The pins' frames and shapes must already be checked."""
        control = cls(length, follow_path=follow_path, fps=fps)
        if pins is not None and getattr(pins, "space", "local") == "world":
            joints = np.asarray(pins.keyframes, np.float64)
            if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
                raise ValueError(f"world-space pins must be joints ({len(joints)}, {NUM_JOINTS}, 3) in metres, "
                                 f"got {joints.shape}")
            control.pin_frames = np.asarray(pins.keyframe_idx, np.int64)
            control.pin_xz = joints[:, 0, [0, 2]]
            control.pin_heading = pose_heading(joints)
            if not np.isfinite(control.pin_heading).all():
                raise ValueError("a world-space pin has no facing (its hips and shoulders coincide); "
                                 "pass a real pose")
        if trajectory is not None:
            frames, xz = check_trajectory(trajectory, length)
            keep = ~np.isin(frames, control.pin_frames)  # a pin wins over the path at its frame
            control.traj_frames, control.traj_xz = frames[keep], xz[keep]
        if not len(control.pin_frames) and not len(control.traj_frames):
            return None
        control._set_start()
        return control

    def _set_start(self) -> None:
        frames, xz = self.goal_positions()
        if len(frames) and frames[0] == 0:
            self.start_xz = xz[0].copy()
        if len(self.pin_frames) and self.pin_frames[0] == 0:
            self.start_heading = float(self.pin_heading[0])
        elif self.follow_path:  # start facing along the path where it starts moving
            angles, valid = path_directions(frames, xz, self.fps)
            if len(frames) and frames[0] == 0 and valid[0]:
                self.start_heading = float(wrap_half(-angles[0] / 2.0))

    def goal_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """All position goals, pins and path, sorted by frame: (frames (N,), xz (N, 2))."""
        frames = np.concatenate([self.pin_frames, self.traj_frames])
        order = np.argsort(frames, kind="stable")
        return frames[order], np.concatenate([self.pin_xz, self.traj_xz])[order]

    def local(self, offset: int = 0, end: Optional[int] = None, heading: Optional[float] = None,
              xz=None) -> RootTargets:
        """The goals of frames [offset, end) in the own frame of a motion piece that starts at
        global frame `offset` in state (heading half-angle, xz) (default: the start transform)."""
        end = self.length if end is None else end
        heading = self.start_heading if heading is None else heading
        xz = self.start_xz if xz is None else np.asarray(xz, np.float64)
        frames, goal_xz = self.goal_positions()
        inside = (frames >= offset) & (frames < end)
        local_xz = rotate_xz(goal_xz[inside] - xz, 2.0 * heading)
        pins = (self.pin_frames >= offset) & (self.pin_frames < end)
        return RootTargets(frames[inside] - offset, local_xz, self.pin_frames[pins] - offset,
                           wrap_half(self.pin_heading[pins] - heading), self.follow_path, self.fps)

    def place(self, joints) -> np.ndarray:
        """Joints (..., 22, 3) recovered at the origin facing +z, moved to the start transform."""
        return to_world(joints, self.start_heading, self.start_xz)


def goal_errors(joints, control: RootControl, prefix: str = "") -> dict:
    """How well joints (T, 22, 3) (world space) meet the goals of `control`, in metres / degrees:
    pin_root_error_max / _mean (root xz distance at world-pinned frames), pin_facing_error_max
    (degrees), trajectory_error_mean / _max (root xz distance at the path's frames), each key
    prefixed with `prefix`. Keys of goals that were not given are absent."""
    joints = np.asarray(joints, np.float64)
    out: dict = {}
    if len(control.pin_frames):
        dist = np.linalg.norm(joints[control.pin_frames, 0][:, [0, 2]] - control.pin_xz, axis=-1)
        out.update(pin_root_error_max=float(dist.max()), pin_root_error_mean=float(dist.mean()))
        facing = wrap_half(pose_heading(joints[control.pin_frames]) - control.pin_heading)
        out["pin_facing_error_max"] = float(np.degrees(np.abs(2.0 * facing)).max())
    if len(control.traj_frames):
        dist = np.linalg.norm(joints[control.traj_frames, 0][:, [0, 2]] - control.traj_xz, axis=-1)
        out.update(trajectory_error_mean=float(dist.mean()), trajectory_error_max=float(dist.max()))
    return {prefix + key: value for key, value in out.items()}


def control_errors(joints, control: Optional[RootControl], raw_joints=None) -> dict:
    """Control, raw and delivered, in metres / degrees ({} without goals):

    - delivered (keys without prefix, see goal_errors): the motion joints (T, 22, 3) as handed
      to the user, after the final root correction (and the foot cleanup, when on);
    - raw_*: the same errors of raw_joints (T, 22, 3), the motion whose root is integrated from
      the in-betweener's own last x0 prediction before the root hook rewrote it (the GPT's
      keyframes, steered towards the goals, kept): what the models achieve on their own;
    - correction_max / correction_mean: the per-frame root xz distance between raw_joints and
      joints, i.e. how far the final rewrite of the root moved the body (planted feet drag by
      as much unless the foot cleanup holds them).
    raw_* and correction_* are absent when raw_joints is None."""
    if control is None:
        return {}
    out = goal_errors(joints, control)
    if raw_joints is not None:
        raw_joints = np.asarray(raw_joints, np.float64)
        out.update(goal_errors(raw_joints, control, prefix="raw_"))
        moved = np.linalg.norm(raw_joints[:, 0][:, [0, 2]] - np.asarray(joints, np.float64)[:, 0][:, [0, 2]], axis=-1)
        out.update(correction_max=float(moved.max()), correction_mean=float(moved.mean()))
    return out


ROOT_CHANNELS = 3  # features 0:3, the root velocities: what the root hook rewrites
POSE_CHANNELS = 67  # features 0:67, root and root-relative joint positions: what joint pins edit


def raw_motion_joints(features: torch.Tensor, raw_x0: Optional[torch.Tensor], mean: np.ndarray, std: np.ndarray,
                      fit_bones: bool, channels: int = ROOT_CHANNELS) -> np.ndarray:
    """Joints (T, 22, 3), in the motion's own frame, of a raw motion: `features` (T, 263) with
    channels [0, channels) taken from raw_x0 (T, 263, normalised), the in-betweener's last x0
    prediction with the keyframes imputed as the sampler imputes them (the GPT's keyframes,
    steered towards the goals, kept) but before the hooks; raw_x0 None (no diffusion): the
    features as passed, taken before the final corrections. channels ROOT_CHANNELS: the raw root
    that control_errors measures; POSE_CHANNELS: root and pose, what joint pins are measured on."""
    raw = features.clone()
    if raw_x0 is not None:
        std_c = torch.as_tensor(np.asarray(std[:channels]), dtype=raw.dtype, device=raw.device)
        mean_c = torch.as_tensor(np.asarray(mean[:channels]), dtype=raw.dtype, device=raw.device)
        raw[:, :channels] = raw_x0[:, :channels].to(raw.dtype) * std_c + mean_c
    return delivered_joints(raw, fit_bones).cpu().numpy()  # (T, 22, 3)


def steer_keyframes(values: torch.Tensor, mask: torch.Tensor, targets: RootTargets, mean: np.ndarray,
                    std: np.ndarray) -> torch.Tensor:
    """Keyframe values (T, 263) normalised (statistics mean/std) whose root velocities lead to
    the goals: the keyframes' root channels are linearly interpolated into a dense root, which
    `correct_root` moves onto the goals, and each keyframe whose root channels are given
    (mask (T, 263) > 0.5 in channels 0:3) takes the corrected values at its frame. The
    in-betweener then starts from keyframes that already go where the goals are."""
    from models.keyframes import interpolate_keyframes
    given = (mask[:, :3] > 0.5).all(-1)  # (T,)
    if not targets or not bool(given.any()):
        return values
    mean3, std3 = np.asarray(mean[:3], np.float64), np.asarray(std[:3], np.float64)
    dense = interpolate_keyframes(values[None, :, :3], mask[None, :, :3])[0].double().cpu().numpy() * std3 + mean3
    fixed = torch.from_numpy((correct_root(dense, targets) - mean3) / std3).to(values)
    values = values.clone()
    values[given, :3] = fixed[given]
    return values
