"""The embedded set moves at human speeds: the gait measures (known answers) and the generator's
walks, jogs and runs against the real takes' statistics and published gait figures."""
import json

import numpy as np
import pytest

import metrics
import synthetic
import utils
from synthetic.speeds import SpeedRange, dataset_gaits, gait_measures

FPS = 20

# Measured with synthetic.speeds.gait_measures (bench/bench_speeds.py) on the prepared Bandai
# Namco takes (dataset/bandai, 2289 motions; the unmirrored takes of content "walk": 141, "run":
# 126). Per-motion root speed (m/s), p10 / median / p90. Not read in the tests: the data are
# not in CI's checkout.
REAL_WALK = SpeedRange(0.76, 1.15, 1.42)
REAL_WALK_ELDERLY = SpeedRange(0.67, 0.75, 0.86)
REAL_WALK_EXHAUSTED = SpeedRange(0.94, 1.04, 1.09)
REAL_WALK_NORMAL = SpeedRange(1.05, 1.13, 1.22)
REAL_WALK_ACTIVE = SpeedRange(1.39, 1.45, 1.57)
REAL_RUN = SpeedRange(1.50, 2.91, 3.42)
REAL_WALK_CADENCE = (99.0, 128.0)  # steps/min, p10-p90 of the same walks
REAL_WALK_ARM_SWING = (0.18, 0.65)  # m, wrist fore-aft peak-to-peak, p10-p90
REAL_WALK_BOUNCE = (0.027, 0.096)  # m, pelvis height peak-to-peak, p10-p90
REAL_TOE_SKATING = 20.0  # cm/s, the Bandai Namco test split's ground truth (README)
# Published adult gait figures (textbook ranges, e.g. Perry's "Gait Analysis", Bohannon 1997 on
# comfortable gait speed, Cavanagh & Kram 1989 on running): comfortable walking 1.2-1.4 m/s at
# 100-120 steps/min with 0.6-0.8 m steps; running 2.5-4 m/s at 150-180 steps/min.
PUBLISHED_WALK_CADENCE = (100.0, 120.0)
PUBLISHED_WALK_STEP = (0.6, 0.8)
PUBLISHED_RUN_CADENCE = (150.0, 180.0)

GAIT_SPEEDS = {"walk": ("slow", "normal", "fast"), "jog": ("slow", "normal"), "run": ("normal", "fast"),
               "walk_backward": ("slow", "normal")}
SEEDS = range(6)


# ---------------------------------------------------------------------------------------
# The measures, on motions of known answer
# ---------------------------------------------------------------------------------------
def _stepping(speed: float, step_frames: int, frames: int = 121, stride: float = 0.3) -> np.ndarray:
    """Joints (frames, 22, 3): every joint rides with a pelvis moving along +x at `speed` m/s,
    the ankles swing fore-aft (+-stride/2 each) with one step every `step_frames` frames."""
    t = np.arange(frames)
    joints = np.zeros((frames, 22, 3))
    joints[:, :, 0] = (speed * t / FPS)[:, None]
    joints[:, 0, 1] = 0.9
    swing = 0.5 * stride * np.sin(np.pi * (t + 0.5) / step_frames)
    joints[:, 7, 0] += swing
    joints[:, 8, 0] -= swing
    return joints


def test_measures_known_answers():
    m = gait_measures(_stepping(1.2, 10))
    assert m.speed == pytest.approx(1.2) and m.moving_speed == pytest.approx(1.2)
    assert m.cadence == pytest.approx(60.0 * FPS / 10)  # a step every half second: 120 steps/min
    assert m.step_length == pytest.approx(1.2 * 10 / FPS)
    assert m.moving_fraction == 1.0 and m.bounce == pytest.approx(0.0)
    still = gait_measures(np.repeat(_stepping(0.0, 10)[:1], 40, axis=0))
    assert still.speed == 0.0 and still.moving_fraction == 0.0
    assert np.isnan(still.moving_speed) and np.isnan(still.cadence) and np.isnan(still.step_length)
    # Standing half the time halves the moving fraction and sets the median speed at the border.
    half = np.concatenate([_stepping(1.2, 10, 60), np.repeat(_stepping(1.2, 10, 60)[-1:], 80, axis=0)])
    m = gait_measures(half)
    assert m.speed == 0.0 and m.moving_speed == pytest.approx(1.2) and 0.4 < m.moving_fraction < 0.6
    with pytest.raises(ValueError, match="gait_measures expects"):
        gait_measures(np.zeros((10, 21, 3)))


def test_speed_range_percentiles():
    r = SpeedRange.of(np.arange(11.0).tolist() + [float("nan")])
    assert (r.p10, r.median, r.p90) == (1.0, 5.0, 9.0)


# ---------------------------------------------------------------------------------------
# The generator's gaits
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gaits():
    """{(action, speed): [(GaitMeasures, joints, planted)]}: each gait with its other parameters
    sampled as the data set samples them, measured on the joints its features give back."""
    out = {}
    for action, speeds in GAIT_SPEEDS.items():
        for speed in speeds:
            rows = []
            for seed in SEEDS:
                m = synthetic.render_parts([(action, {"speed": speed})], np.random.default_rng([seed, 5]))
                joints = utils.features_to_joints(utils.joints_to_features(m.joints)).astype(np.float64)
                rows.append((gait_measures(joints, FPS), joints, m))
            out[(action, speed)] = rows
    return out


def _median(rows, field):
    return float(np.median([getattr(r[0], field) for r in rows]))


def test_walks_move_at_the_real_takes_speeds(gaits):
    # The data set draws a walk's speed slow / normal / normal / fast.
    walks = [r for s in ("slow", "normal", "normal", "fast") for r in gaits[("walk", s)]]
    median = _median(walks, "speed")
    assert REAL_WALK.p10 <= median <= REAL_WALK.p90 and abs(median - REAL_WALK.median) < 0.12, median
    slow, normal, fast = (_median(gaits[("walk", s)], "speed") for s in ("slow", "normal", "fast"))
    assert slow < normal < fast
    assert REAL_WALK_ELDERLY.p10 <= slow <= REAL_WALK_EXHAUSTED.p90, slow  # slow: the tired and elderly styles
    assert REAL_WALK_NORMAL.p10 <= normal <= REAL_WALK_NORMAL.p90 + 0.05, normal
    assert REAL_WALK_ACTIVE.p10 <= fast <= REAL_WALK_ACTIVE.p90, fast  # fast: the brisk (active) style
    for rows in (gaits[("walk", s)] for s in ("slow", "normal", "fast")):
        assert all(r[0].moving_fraction > 0.5 for r in rows), "a walk stands more than half of its frames"


def test_walk_steps_arms_and_bounce(gaits):
    normal = gaits[("walk", "normal")]
    cadence, step = _median(normal, "cadence"), _median(normal, "step_length")
    assert PUBLISHED_WALK_CADENCE[0] <= cadence <= PUBLISHED_WALK_CADENCE[1], cadence
    assert REAL_WALK_CADENCE[0] <= cadence <= REAL_WALK_CADENCE[1], cadence
    assert PUBLISHED_WALK_STEP[0] <= step <= PUBLISHED_WALK_STEP[1], step
    for speed in ("slow", "normal", "fast"):
        rows = gaits[("walk", speed)]
        assert REAL_WALK_ARM_SWING[0] <= _median(rows, "arm_swing") <= REAL_WALK_ARM_SWING[1], speed
        assert REAL_WALK_BOUNCE[0] <= _median(rows, "bounce") <= REAL_WALK_BOUNCE[1] + 0.015, speed
    # Faster walks take longer and quicker steps, as people do.
    assert _median(gaits[("walk", "slow")], "step_length") < step < _median(gaits[("walk", "fast")], "step_length")
    assert _median(gaits[("walk", "slow")], "cadence") < cadence < _median(gaits[("walk", "fast")], "cadence")


def test_runs_and_jogs(gaits):
    runs = gaits[("run", "normal")] + gaits[("run", "fast")]
    assert min(r[0].moving_speed for r in runs) >= REAL_RUN.p10
    assert SpeedRange.of([r[0].speed for r in runs]).p10 >= REAL_RUN.p10
    assert 2.5 <= _median(runs, "speed") <= REAL_RUN.p90 + 0.1
    assert PUBLISHED_RUN_CADENCE[0] <= _median(runs, "cadence") <= PUBLISHED_RUN_CADENCE[1]
    jogs = gaits[("jog", "slow")] + gaits[("jog", "normal")]
    walk_fast = _median(gaits[("walk", "fast")], "speed")
    assert walk_fast < _median(jogs, "speed") < _median(runs, "speed")
    backward = gaits[("walk_backward", "slow")] + gaits[("walk_backward", "normal")]
    assert 0.5 <= _median(backward, "speed") <= REAL_WALK.median


def test_feet_stay_planted(gaits):
    """Faster gaits keep their planted feet fixed, and forward gaits skate far less than the real takes."""
    for (action, speed), rows in gaits.items():
        for _, joints, m in rows:
            for side, toe in enumerate((10, 11)):
                down = m.planted[1:, side, 1] & m.planted[:-1, side, 1]
                step = np.linalg.norm(np.diff(m.joints[:, toe, [0, 2]], axis=0), axis=-1) * FPS  # (T-1,) m/s
                assert step[down].max(initial=0.0) < 0.05, f"{action} {speed}: a planted toe moves"
            if action != "walk_backward":
                assert metrics.toe_skating_speed(joints) < 0.5 * REAL_TOE_SKATING, (action, speed)


# ---------------------------------------------------------------------------------------
# A built data set
# ---------------------------------------------------------------------------------------
def test_dataset_gaits_reads_both_label_kinds(tmp_path):
    """A prepared take is read by content and style (its mirrored copy left out), an embedded
    motion by its action and speed, and only when it is that one action alone."""
    walk = synthetic.render_parts([("walk", {"speed": "normal", "steps": 8})], np.random.default_rng(1))
    features = utils.joints_to_features(walk.joints)  # (T-1, 263)
    (tmp_path / "new_joint_vecs").mkdir()
    for name in ("take", "Mtake", "S000000", "S000001"):
        np.save(tmp_path / "new_joint_vecs" / f"{name}.npy", features)
    labels = {"take": {"content": "walk", "style": "elderly", "mirrored": False},
              "Mtake": {"content": "walk", "style": "elderly", "mirrored": True},
              "S000000": {"action": "walk", "actions": ["walk"], "params": {"speed": "fast"}},
              "S000001": {"action": "walk", "actions": ["walk", "wave"], "params": {"speed": "fast"}}}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    rows = dataset_gaits(str(tmp_path))
    assert [(a, s) for a, s, _ in rows] == [("walk", "fast"), ("walk", "elderly")]
    expected = gait_measures(utils.features_to_joints(features))
    assert rows[0][2] == expected and 1.0 < expected.speed < 1.45
    assert dataset_gaits(str(tmp_path), {"run"}) == []


def test_built_set_gaits_at_human_speeds(tmp_path):
    root = tmp_path / "set"
    synthetic.build_synthetic_dataset(str(root), 48, seed=2, progress=False, workers=1)
    rows = dataset_gaits(str(root), set(GAIT_SPEEDS))
    assert {action for action, _, _ in rows} >= {"walk", "jog", "run"}, rows
    for action, speed, m in rows:
        assert speed in GAIT_SPEEDS[action]
        if action == "walk":
            assert REAL_WALK.p10 <= m.speed <= REAL_WALK.p90 + 0.2, (speed, m)
        elif action in ("jog", "run"):
            assert m.speed >= REAL_RUN.p10 - (0.3 if action == "jog" else 0.0), (action, speed, m)
        else:
            assert 0.4 <= m.speed <= REAL_WALK.median, (speed, m)
