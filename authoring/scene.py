"""What one browser tab's 3D view shows: the floor grid, the skeleton at the current frame, its
root trail, the current segment's caption, the pinned poses, the root path and the joint targets.

All positions are the pipeline's: metres, y up, the body facing +z at frame 0.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from utils import PARENTS

BONES = np.array([(j, PARENTS[j]) for j in range(1, len(PARENTS))])  # (21, 2) child, parent
BODY = (20, 60, 210)
LEFT = (230, 80, 20)  # the body's left limbs, so facing reads at a glance
PIN = (150, 150, 150)
PATH = (20, 160, 90)
TARGET = (220, 30, 120)
TARGET_RADIUS = 0.04  # m: the sphere drawn at a joint target
LEFT_JOINTS = {1, 4, 7, 10, 13, 16, 18, 20}
BONE_COLOURS = np.array([[LEFT if child in LEFT_JOINTS else BODY] * 2 for child, _ in BONES], np.uint8)  # (21, 2, 3)


def bone_segments(joints: np.ndarray) -> np.ndarray:
    """(21, 2, 3) line segments of one pose joints (22, 3)."""
    return np.stack([joints[BONES[:, 0]], joints[BONES[:, 1]]], axis=1).astype(np.float32)


def polyline_segments(points: np.ndarray) -> np.ndarray:
    """(N-1, 2, 3) segments joining points (N, 3) in order."""
    return np.stack([points[:-1], points[1:]], axis=1).astype(np.float32)


def floor_hit(origin, direction) -> Optional[tuple[float, float]]:
    """(x, z) where a view ray meets the floor y = 0, or None when it points away from it."""
    origin, direction = np.asarray(origin, np.float64), np.asarray(direction, np.float64)
    if direction[1] >= -1e-6:
        return None
    t = -origin[1] / direction[1]
    if t <= 0:
        return None
    hit = origin + t * direction
    return float(hit[0]), float(hit[2])


class TabScene:
    """The scene nodes of one tab (a viser ClientHandle's scene)."""

    def __init__(self, client):
        self.scene = client.scene
        self.scene.set_up_direction("+y")
        self.scene.add_grid("/floor", plane="xz", cell_size=0.5, section_size=2.0, infinite_grid=True,
                            fade_distance=40.0, plane_color=(235, 235, 235), plane_opacity=1.0, shadow_opacity=0.2)
        rest = np.zeros((22, 3))
        self.bones = self.scene.add_line_segments("/body/bones", bone_segments(rest), BONE_COLOURS, thickness=0.035)
        self.joints = self.scene.add_point_cloud("/body/joints", rest.astype(np.float32), (30, 30, 30),
                                                 point_size=0.035, point_shape="circle")
        self.caption = self.scene.add_label("/body/caption", "", position=(0.0, 2.0, 0.0))
        self.trail = None
        self.camera = client.camera
        self.followed: Optional[np.ndarray] = None  # the pelvis (x, z) the camera last moved with
        self.pins: list = []
        self.path_nodes: list = []
        self.target_nodes: list = []
        client.camera.position = (2.2, 1.6, 3.4)
        client.camera.look_at = (0.0, 0.8, 0.8)

    def show_pose(self, joints: np.ndarray, caption: str) -> None:
        """Draw the skeleton joints (22, 3) with the caption above its head."""
        self.bones.points = bone_segments(joints)
        self.joints.points = joints.astype(np.float32)
        self.caption.position = tuple(float(v) for v in joints[15] + [0.0, 0.35, 0.0])
        if self.caption.text != caption:
            self.caption.text = caption

    def follow(self, joints: np.ndarray) -> None:
        """Move the camera with the pelvis of pose joints (22, 3) along the floor, keeping the
        view's direction and distance (the user can still orbit and zoom)."""
        xz = joints[0, [0, 2]].astype(np.float64)
        if self.followed is not None and not np.allclose(xz, self.followed):
            try:
                self.camera.position = self.camera.position + np.array([xz[0] - self.followed[0], 0.0,
                                                                        xz[1] - self.followed[1]])
            except AssertionError:  # the browser has not reported its camera yet
                return
        self.followed = xz

    def show_trail(self, joints: np.ndarray) -> None:
        """The root's ground track of a whole motion joints (T, 22, 3)."""
        if self.trail is not None:
            self.trail.remove()
        track = joints[:, 0].copy()
        track[:, 1] = 0.005
        self.trail = self.scene.add_line_segments("/trail", polyline_segments(track[::2]), (120, 120, 200),
                                                  thickness=0.012)

    def show_pins(self, poses: list[np.ndarray]) -> None:
        """Ghost skeletons of the pinned poses (each (22, 3))."""
        for node in self.pins:
            node.remove()
        self.pins = [self.scene.add_line_segments(f"/pins/{i}", bone_segments(pose), PIN, thickness=0.02)
                     for i, pose in enumerate(poses)]

    def show_path(self, rows: list[tuple[int, float, float]]) -> None:
        """The root path's points (frame, x, z) on the floor, joined in frame order."""
        for node in self.path_nodes:
            node.remove()
        self.path_nodes = []
        if not rows:
            return
        points = np.array([[x, 0.01, z] for _, x, z in rows], np.float32)  # (P, 3)
        self.path_nodes.append(self.scene.add_point_cloud("/path/points", points, PATH, point_size=0.08,
                                                          point_shape="circle"))
        if len(points) > 1:
            self.path_nodes.append(self.scene.add_line_segments("/path/line", polyline_segments(points), PATH,
                                                                thickness=0.02))

    def show_targets(self, positions: list) -> None:
        """A small sphere at each joint target's world position [x, y, z]."""
        for node in self.target_nodes:
            node.remove()
        self.target_nodes = [self.scene.add_icosphere(f"/targets/{i}", TARGET_RADIUS, TARGET, subdivisions=2,
                                                      position=tuple(float(v) for v in position))
                             for i, position in enumerate(positions)]
