"""Rotations out: the SMPL-layout export (motion_io.smpl, `generate.py --format smpl`) rebuilt
by forward kinematics, and the BVH export of figures that face backwards."""
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

import bvh
import utils
from conftest import random_motion_joints, run_script
from motion_io import smpl

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "humanml3d"
REAL_JOINTS = REFERENCE / "new_joints" / "012314.npy"
REAL_FEATURES = REFERENCE / "new_joint_vecs" / "012314.npy"
needs_real = pytest.mark.skipif(not REAL_FEATURES.exists(), reason=f"HumanML3D reference sample not found at {REFERENCE}")
Y = np.array([0.0, 1.0, 0.0])


def plain_smpl_fk(poses, trans, rest):
    """SMPL's forward kinematics, written out here independently of motion_io.smpl: G_j =
    G_parent @ R(poses_j), joint_j = joint_parent + G_parent @ rest_j."""
    poses = np.asarray(poses, dtype=np.float64).reshape(len(poses), 24, 3)
    parents = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]
    local = Rotation.from_rotvec(poses.reshape(-1, 3)).as_matrix().reshape(len(poses), 24, 3, 3)
    glob, out = [local[:, 0]], [np.asarray(trans, dtype=np.float64)]
    for j in range(1, 22):
        p = parents[j]
        out.append(out[p] + np.einsum("tij,j->ti", glob[p], rest[j]))
        glob.append(glob[p] @ local[:, j])
    return np.stack(out, 1)


def project_fk(export):
    """The project's own FK (utils.forward_kinematics) of an export, on its rest offsets."""
    local = Rotation.from_rotvec(export["poses"].astype(np.float64).reshape(-1, 3)).as_matrix()
    local = local.reshape(len(export["poses"]), 24, 3, 3)[:, :22]
    quats = smpl.humanml3d_fk_rotations(local)
    return utils.forward_kinematics(quats, export["trans"].astype(np.float64),
                                    offsets=export["rest_offsets"].astype(np.float64))


def smpl_motion(num_frames, seed, yaw):
    """Joints (T, 22, 3) of a body SMPL can do: smooth random local rotations on a T-pose rest
    (rigid pelvis and chest), turned by yaw (T,) radians about y, walking along its facing."""
    rest = smpl.rest_offsets(np.load(REAL_JOINTS).astype(np.float64)) if REAL_JOINTS.exists() else \
        smpl.rest_offsets(utils.forward_kinematics(np.tile([1.0, 0, 0, 0], (1, 22, 1)), np.zeros((1, 3))))
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, num_frames)[:, None, None]
    axes = rng.normal(size=(1, 22, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    rotvec = 0.5 * np.sin(2 * np.pi * 1.5 * t + rng.uniform(0, 6.28, (1, 22, 1))) * axes  # (T, 22, 3)
    rotvec[:, 0] = 0.1 * rotvec[:, 0]
    root = Rotation.from_rotvec(yaw[:, None] * Y) * Rotation.from_rotvec(rotvec[:, 0])
    rotvec[:, 0] = root.as_rotvec()
    poses = np.zeros((num_frames, 24, 3))
    poses[:, :22] = rotvec
    heading = Rotation.from_rotvec(yaw[:, None] * Y).apply([0.0, 0.0, 0.02])
    trans = np.cumsum(heading, 0) + np.array([0.0, 0.95, 0.0])
    return plain_smpl_fk(poses.reshape(num_frames, 72), trans, rest)


def max_cm(a, b):
    return 100 * float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1).max())


# ---------------------------------------------------------------------------------------
# SMPL layout
# ---------------------------------------------------------------------------------------
@needs_real
def test_real_motion_rebuilds_from_its_rotations():
    features = np.load(REAL_FEATURES).astype(np.float64)  # (170, 263)
    joints = utils.features_to_joints(features)
    export = smpl.smpl_export(joints, features, fps=20)
    assert export["poses"].shape == (170, 72) and export["trans"].shape == (170, 3)
    # Real motions lie on the canonical skeleton, so that is the rest's.
    np.testing.assert_allclose(np.linalg.norm(export["rest_offsets"], axis=-1), utils.BONE_LENGTHS, atol=1e-4)
    # SMPL's pelvis and chest are rigid and so are real HumanML3D motions': exact to the floats.
    assert max_cm(project_fk(export), joints) < 0.01  # measured 1.1e-3 cm
    assert max_cm(plain_smpl_fk(export["poses"], export["trans"], export["rest_offsets"]), joints) < 0.01
    # rot6d is HumanML3D's own: utils.forward_kinematics of it rebuilds the features' joints.
    _, root_pos = utils.recover_root_rot_pos(torch.from_numpy(features))
    quats = utils.cont6d_to_quat(torch.from_numpy(export["rot6d"].astype(np.float64)))
    assert export["rot6d"].shape == (170, 22, 6)
    assert max_cm(utils.forward_kinematics(quats, root_pos).numpy(), joints) < 0.01


@pytest.mark.parametrize("yaw", ["turn_180", "faces_minus_z", "spins_twice"])
def test_smpl_body_motions_rebuild_exactly_whatever_the_facing(yaw):
    n = 80
    angles = {"turn_180": np.linspace(0, math.pi, n), "faces_minus_z": np.full(n, math.pi),
              "spins_twice": np.linspace(0, 4 * math.pi, n)}[yaw]
    joints = smpl_motion(n, seed=4, yaw=angles)
    export = smpl.smpl_export(joints, fps=20)
    assert max_cm(project_fk(export), joints) < 0.01
    assert max_cm(plain_smpl_fk(export["poses"], export["trans"], export["rest_offsets"]), joints) < 0.01
    np.testing.assert_array_equal(export["poses"].reshape(n, 24, 3)[:, 22:], 0.0)  # hands
    # The global orientation carries the facing: its yaw follows the turn, no flips between frames.
    root = Rotation.from_rotvec(export["poses"][:, :3].astype(np.float64))
    facing = root.apply([0.0, 0.0, 1.0])
    expected = Rotation.from_rotvec(angles[:, None] * Y).apply([0.0, 0.0, 1.0])
    assert np.degrees(np.arccos(np.clip((facing * expected).sum(-1), -1, 1))).max() < 20
    steps = (root[:-1].inv() * root[1:]).magnitude()
    assert np.degrees(steps).max() < 20


def test_identity_is_the_rest_pose_and_file_fields(tmp_path):
    rest = smpl.rest_offsets(random_motion_joints(5, seed=0))
    half_turn = Rotation.from_rotvec(np.array([0.0, math.pi, 0.0]))
    poses = np.zeros((3, 72))
    poses[1, :3] = half_turn.as_rotvec()
    joints = plain_smpl_fk(poses, np.tile([0.0, 0.95, 0.0], (3, 1)), rest)
    path = smpl.write_smpl_npz(str(tmp_path / "rest_smpl.npz"), joints, fps=30, prompt="stand")
    with np.load(path, allow_pickle=False) as data:
        fields = {k: data[k] for k in data.files}
    assert np.abs(fields["poses"][[0, 2]]).max() < 1e-5  # the rest pose is the identity everywhere
    assert np.abs(fields["poses"][1, 3:]).max() < 1e-5
    assert abs(abs(fields["poses"][1, 1]) - math.pi) < 1e-4  # facing -z: pi about y
    np.testing.assert_allclose(fields["rest_offsets"], rest, atol=1e-6)
    # A T-pose: arms straight out along +-x, head up, legs down.
    assert np.allclose(rest[[16, 18, 20]] / np.linalg.norm(rest[[16, 18, 20]], axis=-1, keepdims=True), [1, 0, 0])
    assert rest[15, 1] > 0.1 and rest[4, 1] < -0.3
    assert str(fields["up_axis"]) == "y" and int(fields["fps"]) == 30 and str(fields["prompt"]) == "stand"
    assert list(fields["joint_names"][[0, 15, 20, 22]]) == ["pelvis", "head", "left_wrist", "left_hand"]
    assert list(fields["parents"][:4]) == [-1, 0, 0, 0] and fields["trans"].shape == (3, 3)
    assert "rot6d" not in fields  # only with features


def test_knees_and_elbows_bend_about_their_hinge():
    # The fitted shoulder twist puts an elbow's bend on the elbow's hinge, whatever twist the
    # upper arm had when it was made (positions alone do not show it).
    n = 30
    rest = smpl.rest_offsets(random_motion_joints(5, seed=0))
    poses = np.zeros((n, 24, 3))
    flex = np.linspace(0.6, 1.6, n)
    poses[:, 4] = flex[:, None] * [1.0, 0, 0]  # left knee flexes about +x
    poses[:, 18] = flex[:, None] * [0, -1.0, 0]  # left elbow flexes forwards: about -y for the arm along +x
    poses[:, 19] = flex[:, None] * [0, 1.0, 0]  # right elbow
    arm_down_twisted = Rotation.from_rotvec([0, 0, -1.2]) * Rotation.from_rotvec([0.7, 0, 0])  # down, twisted
    poses[:, 16] = arm_down_twisted.as_rotvec()
    joints = plain_smpl_fk(poses.reshape(n, 72), np.tile([0.0, 0.95, 0.0], (n, 1)), rest)
    fitted = smpl.smpl_export(joints)["poses"].reshape(n, 24, 3).astype(np.float64)
    for joint in (4, 18, 19):
        np.testing.assert_allclose(fitted[:, joint], poses[:, joint], atol=1e-4)


def test_real_smpl_rest_keeps_every_bone_direction():
    # to_smpl_rest re-expresses the rotations for another rest skeleton (a real SMPL model's
    # J_regressor @ v_shaped): every bone then points where it points in ours.
    joints = smpl_motion(20, seed=2, yaw=np.linspace(0, math.pi, 20))
    export = smpl.smpl_export(joints)
    rng = np.random.default_rng(0)
    ours = export["rest_offsets"].astype(np.float64)
    theirs = np.zeros_like(ours)
    cluster_turn = {0: Rotation.from_rotvec([0.2, 0.05, 0.0]), 9: Rotation.from_rotvec([-0.1, 0.0, 0.1])}
    for j in range(1, 22):
        parent = utils.PARENTS[j]
        turn = cluster_turn[parent] if parent in cluster_turn else Rotation.from_rotvec(rng.normal(size=3) * 0.3)
        theirs[j] = 1.1 * turn.apply(ours[j])
    rest_joints = np.zeros((24, 3))
    rest_joints[0] = [0.001, -0.22, 0.03]  # their pelvis sits below the origin
    for j in range(1, 22):
        rest_joints[j] = rest_joints[utils.PARENTS[j]] + theirs[j]
    poses, trans = smpl.to_smpl_rest(export["poses"], export["trans"], ours, rest_joints)
    rebuilt = plain_smpl_fk(poses, trans + rest_joints[0], theirs)  # the model adds J_0 to trans
    np.testing.assert_allclose(rebuilt[:, 0], joints[:, 0], atol=1e-5)
    bones = lambda x: x[:, 1:] - x[:, utils.PARENTS[1:]]
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)
    assert np.abs(unit(bones(rebuilt)) - unit(bones(joints))).max() < 1e-5


def test_bad_input_raises_and_writes_nothing(tmp_path):
    path = tmp_path / "bad_smpl.npz"
    with pytest.raises(ValueError, match="NaN"):
        smpl.write_smpl_npz(str(path), np.full((4, 22, 3), np.nan))
    with pytest.raises(ValueError, match=r"expected \(T, 22, 3\)"):
        smpl.write_smpl_npz(str(path), np.zeros((4, 21, 3)))
    with pytest.raises(ValueError, match="fps"):
        smpl.write_smpl_npz(str(path), random_motion_joints(4, seed=0), fps=0)
    assert not path.exists()


def _triangle_residual_cm(joints, rest):
    """Per-frame best-fit residual (cm) of the pelvis and spine3 triangles against the rest's:
    what a rigid SMPL pelvis/chest cannot follow (scipy's align_vectors, not the module's fit)."""
    worst = 0.0
    for parent, kids in ((0, [1, 2, 3]), (9, [12, 13, 14])):
        for frame in joints:
            target = frame[kids] - frame[parent]
            rot, _ = Rotation.align_vectors(target, rest[kids])
            worst = max(worst, float(np.linalg.norm(rot.apply(rest[kids]) - target, axis=-1).max()))
    return 100 * worst


def test_cli_format_smpl_on_a_generated_motion(tiny_trained, tmp_path):
    out = tmp_path / "walk.npy"
    proc = run_script("generate.py", "--checkpoint_dir", tiny_trained["checkpoint_dir"], "--length", "60",
                      "--format", "npy", "smpl", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {tmp_path / 'walk_smpl.npz'}" in proc.stdout
    generated = np.load(out).astype(np.float64)  # (60, 22, 3), the positions generate.py writes
    with np.load(tmp_path / "walk_smpl.npz", allow_pickle=False) as data:
        export = {k: data[k] for k in data.files}
    assert export["poses"].shape == (60, 72) and export["rot6d"].shape == (60, 22, 6)
    assert int(export["fps"]) == 20 and str(export["up_axis"]) == "y"
    rebuilt = project_fk(export)
    error_cm = 100 * np.linalg.norm(rebuilt - generated, axis=-1)
    # Where the model's pelvis/chest triangle deforms (the toy data of conftest rotate each hip
    # bone on its own, by up to 4 cm), no SMPL body follows it; beyond that the rotations
    # rebuild the motion to 1 cm. Measured on this tiny model over seeds 0-4: max 1.1-2.1 cm,
    # always the triangles' own deformation, mean 0.19-0.33 cm (0.30-0.52 cm without fit_bones).
    deformation = _triangle_residual_cm(generated, export["rest_offsets"].astype(np.float64))
    assert error_cm.mean() < 0.75, f"mean {error_cm.mean():.3f} cm"
    assert error_cm.max() < 1.0 + deformation, f"max {error_cm.max():.3f} cm, deformation {deformation:.3f} cm"
    assert deformation < 3.0


# ---------------------------------------------------------------------------------------
# BVH when the figure faces backwards
# ---------------------------------------------------------------------------------------
def _turned(joints, yaw):
    quats = utils.quat_from_axis_angle(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand(len(yaw), 3),
                                       torch.as_tensor(yaw, dtype=torch.float64))
    return utils.qrot(quats[:, None].expand(len(yaw), 22, 4), torch.from_numpy(joints)).numpy()


def _bvhio_positions(path):
    bvhio = pytest.importorskip("bvhio")
    root = bvhio.readAsHierarchy(path)
    layout = root.layout()
    names = [joint.Name for joint, _, _ in layout]
    frames = len(bvh.read_bvh(path).frames)
    out = np.zeros((frames, 22, 3))
    for frame in range(frames):
        root.loadPose(frame, recursive=True)
        for j, name in enumerate(utils.JOINT_NAMES):
            out[frame, j] = np.array(layout[names.index(name)][0].PositionWorld)
    return out


@pytest.mark.parametrize("case", ["turns_180", "faces_minus_z", "rest_pose_faces_minus_z"])
def test_bvh_export_of_a_figure_facing_backwards(tmp_path, case):
    n = 60
    if case == "rest_pose_faces_minus_z":  # exactly -z: the facing rotation's degenerate case
        base = utils.forward_kinematics(np.tile([1.0, 0, 0, 0], (n, 22, 1)), np.tile([0.0, 0.95, 0.0], (n, 1)))
    else:
        base = random_motion_joints(n, seed=3)
    yaw = np.linspace(0, math.pi, n) if case == "turns_180" else np.full(n, math.pi)
    joints = _turned(base, yaw)
    for dtype in (np.float64, np.float32):
        path = bvh.write_bvh(str(tmp_path / f"{case}.bvh"), joints.astype(dtype))
        assert max_cm(bvh.read_bvh_joints(path), joints) < 1.0  # measured 1e-4 cm
        if dtype is np.float64:
            assert max_cm(_bvhio_positions(path), joints) < 1.0  # an independent BVH reader
    # The rotations, not only the positions: every joint below the pelvis has the local rotation
    # it has in the motion that does not turn; only the root's yaw differs.
    turned = bvh.read_bvh(str(tmp_path / f"{case}.bvh")).frames
    straight = bvh.read_bvh(bvh.write_bvh(str(tmp_path / "straight.bvh"), base)).frames
    diff = np.deg2rad(turned[:, 6:] - straight[:, 6:])
    assert np.abs(np.angle(np.exp(1j * diff))).max() < 1e-3
    # The importer reads it back facing +z (it canonicalises), bones unchanged.
    imported = bvh.import_bvh(str(tmp_path / f"{case}.bvh"))
    bones = lambda x: np.linalg.norm(x[:, 1:] - x[:, utils.PARENTS[1:]], axis=-1)
    np.testing.assert_allclose(bones(imported.joints), bones(joints), atol=1e-4)
