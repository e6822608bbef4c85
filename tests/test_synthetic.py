"""Tests of the embedded synthetic data set (the synthetic package): layout, captions,
determinism and the physics of the generated motions."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import synthetic
import utils
from config import CompositeConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FPS = 20
FOOT_JOINTS = [utils.FOOT_IDX_LEFT, utils.FOOT_IDX_RIGHT]  # [side][ankle, toe]


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def _motion(action, seed=0, **params):
    return synthetic.render_parts([(action, params)], np.random.default_rng(seed))


def _facing(joints):
    """Unit xz facing direction (T, 3) of joints (T, 22, 3), from hips and shoulders."""
    r_hip, l_hip, r_sh, l_sh = utils.FACE_JOINT_IDX
    across = joints[:, r_hip] - joints[:, l_hip] + joints[:, r_sh] - joints[:, l_sh]
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    forward[:, 1] = 0
    return forward / np.linalg.norm(forward, axis=-1, keepdims=True)


def _local_xz(joints, t):
    """Pelvis displacement from frame 0 to frame t in the start frame: (left, forward) metres."""
    fwd = _facing(joints)[0]
    left = np.cross(np.array([0.0, 1.0, 0.0]), fwd)
    d = joints[t, 0] - joints[0, 0]
    return float(d @ left), float(d @ fwd)


def _heading_change(joints):
    """Unwrapped facing angle (T,) relative to frame 0, radians, positive to the left."""
    f = _facing(joints)
    angle = np.unwrap(np.arctan2(f[:, 0], f[:, 2]))
    return angle - angle[0]


def assert_physical(joints, planted=None, label=""):
    """Constant bone lengths, feet on (never under) the floor, planted feet not sliding, and
    bounded accelerations."""
    bones = np.linalg.norm(joints[:, 1:] - joints[:, utils.PARENTS[1:]], axis=-1)  # (T, 21)
    assert np.abs(bones - utils.BONE_LENGTHS[1:]).max() < 1e-5, f"{label}: bone lengths change"
    assert joints[..., 1].min() > -0.01, f"{label}: a joint is {-joints[..., 1].min():.3f} m under the floor"
    if planted is not None:
        for side in range(2):
            for k, joint in enumerate(FOOT_JOINTS[side]):
                down = planted[:, side, k]
                both = down[1:] & down[:-1]
                if not both.any():
                    continue
                step = np.linalg.norm((joints[1:, joint] - joints[:-1, joint])[:, [0, 2]], axis=-1)
                assert step[both].max() < 0.01, f"{label}: planted joint {joint} slides {step[both].max():.4f} m"
                # Nor does it creep: over each planted interval it stays within 2 cm of where it landed.
                start = np.flatnonzero(down & ~np.concatenate([[False], down[:-1]]))
                run_id = np.cumsum(down & ~np.concatenate([[False], down[:-1]])) - 1
                anchor = joints[start[run_id[down]], joint]
                drift = np.linalg.norm((joints[down, joint] - anchor)[:, [0, 2]], axis=-1)
                assert drift.max() < 0.02, f"{label}: planted joint {joint} creeps {drift.max():.3f} m"
                floor = synthetic.ANKLE_HEIGHT[side] if k == 0 else 0.0
                assert np.abs(joints[down, joint, 1] - floor).max() < 0.02, f"{label}: planted joint {joint} off the floor"
    accel = np.linalg.norm(joints[2:] - 2 * joints[1:-1] + joints[:-2], axis=-1) * FPS ** 2  # m/s^2
    assert accel.max() < 300.0, f"{label}: a joint accelerates at {accel.max():.0f} m/s^2"
    assert np.percentile(accel, 99) < 120.0, f"{label}: jerky motion (99th percentile {np.percentile(accel, 99):.0f} m/s^2)"


# ---------------------------------------------------------------------------------------
# Motions
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", synthetic.ACTIONS)
def test_every_action_is_physical(action):
    for seed in range(2):
        m = _motion(action, seed)
        assert m.parts[0][0] == action
        assert 41 <= len(m.joints) <= 197, f"{action}: {len(m.joints)} frames"
        assert m.planted.shape == (len(m.joints), 2, 2)
        assert_physical(m.joints, m.planted, action)
        # The stored rotations reproduce the joints through the project's forward kinematics.
        again = utils.forward_kinematics(m.local_quats, m.root_pos)
        assert np.abs(again - m.joints).max() < 1e-9


def test_features_round_trip_keeps_the_skeleton():
    for index in range(6):
        m = synthetic.generate_motion(3, index)
        features = utils.joints_to_features(m.joints)
        recovered = utils.features_to_joints(features)
        assert features.shape == (len(m.joints) - 1, utils.FEATURE_DIM)
        assert_physical(recovered.astype(np.float64), None, f"recovered {index}")


def test_many_sampled_motions_are_physical_and_fit():
    lengths = []
    for index in range(24):
        m = synthetic.generate_motion(11, index)
        lengths.append(len(m.joints) - 1)
        assert_physical(m.joints, m.planted, f"motion {index} {m.parts}")
    assert min(lengths) >= 40 and max(lengths) <= 196


def test_walk_moves_forward_and_backward_walk_moves_back():
    for seed in range(3):
        walk = _motion("walk", seed, steps=5, turn="none", speed="normal")
        side, forward = _local_xz(walk.joints, -1)
        assert forward > 1.5 and abs(side) < 0.4, (side, forward)
        back = _motion("walk_backward", seed, steps=4)
        side, forward = _local_xz(back.joints, -1)
        assert forward < -0.8, forward
        run = _motion("run", seed, steps=6)
        assert _local_xz(run.joints, -1)[1] > 3.0
        # Running has flight phases: frames with both feet off the floor.
        feet_y = run.joints[:, [7, 8, 10, 11], 1]
        assert (feet_y.min(1) > 0.03).sum() >= 3


def test_turns_and_spins_change_heading():
    left = _heading_change(_motion("turn", 0, direction="left", angle=90).joints)
    assert abs(left[-1] - np.pi / 2) < 0.35, left[-1]
    right = _heading_change(_motion("turn", 0, direction="right", angle=180).joints)
    assert abs(right[-1] + np.pi) < 0.4, right[-1]
    spin = _heading_change(_motion("spin", 0, direction="left", turns=1).joints)
    assert spin.max() > 1.7 * np.pi, spin.max()
    curve = _heading_change(_motion("walk", 0, turn="right", turn_angle=90, steps=6).joints)
    assert curve[-1] < -1.0, curve[-1]


def test_sidestep_moves_sideways():
    side, forward = _local_xz(_motion("sidestep", 0, direction="left", steps=3).joints, -1)
    assert side > 0.5 and abs(forward) < 0.25, (side, forward)
    side, forward = _local_xz(_motion("sidestep", 1, direction="right", steps=2).joints, -1)
    assert side < -0.35, side


def test_jumps_leave_the_floor():
    for seed in range(3):
        jump = _motion("jump", seed, height="low", reps=1)
        lowest_foot = jump.joints[:, [7, 8, 10, 11], 1].min(1)  # (T,)
        assert lowest_foot.max() > 0.10, lowest_foot.max()
        assert jump.planted[0].all() and jump.planted[-1].all()
        long_jump = _motion("jump_forward", seed, distance="far", reps=1)
        assert long_jump.joints[:, [7, 8, 10, 11], 1].min(1).max() > 0.08
        assert _local_xz(long_jump.joints, -1)[1] > 0.8
    hop = _motion("hop", 0, leg="left", reps=3, forward=False)
    right_foot = hop.joints[:, [8, 11], 1].min(1)
    left_foot = hop.joints[:, [7, 10], 1].min(1)
    assert (right_foot > 0.15).sum() > 15  # the free leg is held up
    assert left_foot.max() > 0.05  # and the stance leg hops


def test_arm_actions_reach_their_poses():
    wave = _motion("wave", 0, hand="right", reps=3)
    j = wave.joints
    assert (j[:, 21, 1] - j[:, 15, 1]).max() > 0.05  # right wrist above the head
    assert (j[:, 21, 1] - j[:, 17, 1]).max() > 0.3  # and well above the right shoulder
    assert (j[:, 20, 1] - j[:, 16, 1]).max() < 0.0  # the left hand stays down
    raise_up = _motion("raise_arms", 0, arms="both", direction="up", hold="long")
    assert (raise_up.joints[:, [20, 21], 1].min(1) - raise_up.joints[:, 15, 1]).max() > 0.2
    punch = _motion("punch", 0, hand="left", reps=2)
    reach = (punch.joints[:, 20] - punch.joints[:, 16]) @ _facing(punch.joints)[0]
    assert reach.max() > 0.45, reach.max()
    clap = _motion("clap", 0, reps=3)
    gap = np.linalg.norm(clap.joints[:, 20] - clap.joints[:, 21], axis=-1)
    closings = np.sum((gap[1:] < 0.08) & (gap[:-1] >= 0.08))
    assert closings == 3 and gap.max() > 0.3, (closings, gap.max())


def test_body_actions_reach_their_poses():
    standing = _motion("clap", 0).joints[0, 0, 1]
    squat = _motion("squat", 0, depth="deep", reps=2).joints
    assert standing - squat[:, 0, 1].min() > 0.3
    sit = _motion("sit_down", 0, stand_up=False)
    assert sit.joints[-1, 0, 1] < 0.6  # still seated at the end
    sit_up = _motion("sit_down", 0, stand_up=True).joints
    assert sit_up[:, 0, 1].min() < 0.6 and sit_up[-1, 0, 1] > 0.8
    bow = _motion("bow", 0, depth="deep").joints
    head_forward = (bow[:, 15] - bow[:, 0]) @ _facing(bow)[0]
    assert head_forward.max() > 0.35 and bow[:, 15, 1].min() < bow[0, 15, 1] - 0.25
    kick = _motion("kick", 0, leg="right", height="high", reps=1).joints
    assert kick[:, 11, 1].max() > 0.7 and kick[:, 10, 1].max() < 0.05


def test_compositions_blend_two_actions():
    m = synthetic.render_parts([("walk", {"steps": 4, "turn": "none"}), ("wave", {"hand": "right"})],
                               np.random.default_rng(0))
    assert_physical(m.joints, m.planted, "walk then wave")
    assert _local_xz(m.joints, -1)[1] > 1.0
    assert (m.joints[:, 21, 1] - m.joints[:, 15, 1]).max() > 0.05
    assert any("then" in c or "before" in c or "after" in c for c in m.captions)
    with pytest.raises(ValueError, match="fewer steps"):
        synthetic.render_parts([("walk", {"steps": 12, "speed": "slow"}), ("clap", {"reps": 8, "speed": "slow"})],
                               np.random.default_rng(0))


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="unknown action 'fly'"):
        synthetic.render_parts([("fly", {})], np.random.default_rng(0))
    with pytest.raises(ValueError, match="parameter 'speed'"):
        synthetic.render_parts([("walk", {"speed": "warp"})], np.random.default_rng(0))


def test_generation_is_deterministic():
    a, b = synthetic.generate_motion(5, 17), synthetic.generate_motion(5, 17)
    assert np.array_equal(a.joints, b.joints) and a.captions == b.captions and a.parts == b.parts
    assert not np.array_equal(a.joints[:10], synthetic.generate_motion(6, 17).joints[:10])


# ---------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------
_COUNT_WORDS = {2: ("twice", "two"), 3: ("three",), 4: ("four",), 5: ("five",), 6: ("six",)}


def test_captions_name_their_parameters():
    rng = np.random.default_rng(0)
    for _ in range(150):
        parts = synthetic.sample_parts(rng)
        parts = [(a, {**synthetic.sample_params(a, rng), **p}) for a, p in parts]
        captions = synthetic.make_captions(parts, rng)
        assert 3 <= len(captions) <= 5 and len(set(captions)) == len(captions)
        for caption in captions:
            assert caption == caption.lower() and caption.endswith(".") and "  " not in caption
            assert "/OTHER" not in synthetic.caption_tokens(caption), caption
            for action, p in parts:
                key = {"raise_arms": "arms", "walk": "turn"}.get(action, "hand" if "hand" in p else "leg" if "leg" in p else "direction")
                if p.get(key) in ("left", "right"):
                    assert p[key] in caption, (caption, p)
        for action, p in parts:
            count = p.get("reps", p.get("steps"))
            if count in _COUNT_WORDS:
                assert any(set(_COUNT_WORDS[count]) & set(re.findall(r"[a-z]+", c)) for c in captions), (captions, p)
    tokens = synthetic.caption_tokens("a person steps back and then waves twice.")
    assert tokens == "a/DET person/NOUN step/VERB back/ADV and/CCONJ then/ADV wave/VERB twice/ADV"
    assert synthetic.caption_tokens("takes four steps.").split()[-1] == "step/NOUN"


# ---------------------------------------------------------------------------------------
# The data set on disk
# ---------------------------------------------------------------------------------------
def _tree(root):
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                files[os.path.relpath(path, root)] = fh.read()
    return files


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The same small set built twice (in one process and with two), and one of another seed."""
    base = tmp_path_factory.mktemp("synthetic")
    serial = synthetic.build_synthetic_dataset(str(base / "a"), 40, seed=7, progress=False, workers=1)
    synthetic.build_synthetic_dataset(str(base / "b"), 40, seed=7, progress=False, workers=2)
    synthetic.build_synthetic_dataset(str(base / "c"), 20, seed=8, progress=False, workers=1)
    return base, serial


def test_layout_is_humanml3d(built):
    base, summary = built
    root = base / "a"
    ids = sorted(p[:-4] for p in os.listdir(root / "new_joint_vecs"))
    assert len(ids) == 40 and all(re.fullmatch(r"S\d{6}", i) for i in ids)
    assert summary["motions"] == 40 and summary["captions"] >= 120 and summary["actions"] >= 10
    for name in ("train.txt", "val.txt", "test.txt", "Mean.npy", "Std.npy", "labels.json", "DONE"):
        assert (root / name).is_file(), name
    splits = {s: (root / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [32, 4, 4]
    assert sorted(sum(splits.values(), [])) == ids
    train_features = []
    for motion in ids:
        features = np.load(root / "new_joint_vecs" / f"{motion}.npy")
        joints = np.load(root / "new_joints" / f"{motion}.npy")
        assert features.dtype == np.float32 and joints.dtype == np.float32
        assert features.shape[1] == 263 and 40 <= features.shape[0] <= 196
        assert joints.shape == (features.shape[0], 22, 3) and np.isfinite(features).all()
        assert np.abs(utils.features_to_joints(features) - joints).max() < 1e-6
        assert_physical(joints.astype(np.float64), None, motion)
        lines = (root / "texts" / f"{motion}.txt").read_text().strip().split("\n")
        assert len(lines) >= 3
        for line in lines:
            caption, tokens, start, end = line.split("#")
            assert caption and float(start) == 0.0 and float(end) == 0.0
            assert all(re.fullmatch(r"[a-z]+/[A-Z]+", tok) for tok in tokens.split())
        if motion in splits["train"]:
            train_features.append(features)
    mean, std = utils.feature_mean_std(train_features)
    assert np.allclose(np.load(root / "Mean.npy"), mean) and np.allclose(np.load(root / "Std.npy"), std)
    assert np.load(root / "Mean.npy").shape == (263,)
    labels = json.loads((root / "labels.json").read_text())
    assert sorted(labels) == ids
    for label in labels.values():
        assert label["action"] in synthetic.ACTIONS and label["actions"][0] == label["action"]
        assert label["params"] == label["parts"][0]["params"] and 1 <= len(label["parts"]) <= 2


def test_builds_are_deterministic_and_seeded(built):
    base, _ = built
    a, b = _tree(base / "a"), _tree(base / "b")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), "a build must not depend on the worker count"
    c = _tree(base / "c")
    shared = [k for k in c if k.startswith("new_joint_vecs/")]
    assert shared and all(a[k] != c[k] for k in shared)


def test_ensure_reuses_rebuilds_and_refuses(tmp_path, capsys):
    cfg = CompositeConfig(dataset_root=str(tmp_path / "set"), synthetic_num_motions=12, synthetic_seed=1)
    assert synthetic.ensure_synthetic_dataset(cfg) == cfg.dataset_root
    out = capsys.readouterr().out
    assert "building the embedded synthetic data set (12 motions)" in out and "built 12 motions" in out
    stamp = os.path.getmtime(tmp_path / "set" / "DONE")
    synthetic.ensure_synthetic_dataset(cfg)  # complete and same settings: nothing to do
    assert capsys.readouterr().out == "" and os.path.getmtime(tmp_path / "set" / "DONE") == stamp
    # A set without its DONE marker (or of other settings) is rebuilt; stale temp folders go.
    os.remove(tmp_path / "set" / "DONE")
    stale = tmp_path / "set.tmp-999999999"
    stale.mkdir()
    synthetic.ensure_synthetic_dataset(cfg.replace(synthetic_num_motions=14))
    assert len(os.listdir(tmp_path / "set" / "new_joint_vecs")) == 14 and not stale.exists()
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    # A folder that is not a synthetic set is never deleted.
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a synthetic data set"):
        synthetic.ensure_synthetic_dataset(cfg.replace(dataset_root=str(foreign)))
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_command_line(tmp_path):
    root = tmp_path / "cli"
    run = subprocess.run([sys.executable, "-m", "synthetic", "--dataset_root", str(root), "--synthetic_num_motions", "10"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (root / "DONE").is_file() and len(os.listdir(root / "texts")) == 10
    bad = subprocess.run([sys.executable, "-m", "synthetic", "--synthetic_num_motions", "many"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "synthetic_num_motions" in bad.stderr
