"""Foot cleanup (feet.py): known answers on constructed motions."""
import numpy as np
import pytest
import torch

import feet
import utils
from feet import FOOT_JOINTS, LEGS, clean_feet, ease, foot_contacts, hold_offsets, runs, tidy_spans

FPS = 20
TOE_DOWN = 0.68  # radians the ankles are pitched so that the toes point down (~9 cm below the ankle)


def standing_pose(root_height: float = 0.80) -> np.ndarray:
    """A standing pose (22, 3) with its toes pitched down and its knees bent, toes 1 cm above the floor."""
    quats = np.tile([1.0, 0.0, 0.0, 0.0], (1, 22, 1))
    for toe in (10, 11):  # a joint's rotation turns the bone that ends at it
        quats[0, toe] = [np.cos(TOE_DOWN / 2), np.sin(TOE_DOWN / 2), 0.0, 0.0]
    pose = utils.forward_kinematics(quats, np.array([[0.0, root_height, 0.0]]))[0]
    lift = 0.01 - pose[[10, 11], 1].min()
    return place_feet(pose[None], np.array([[0.0, lift, 0.0]]), np.array([[0.0, lift, 0.0]]))[0]


def place_feet(joints: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """joints (T, 22, 3) with each foot (ankle and toe) moved by left / right (T, 3) and the
    knee re-solved by two-bone IK with the skeleton's bone lengths (bending forward)."""
    out = np.array(joints, np.float64)
    for (hip, knee, ankle, toe), shift in zip(LEGS, (left, right)):
        target = out[:, ankle] + shift
        hint = out[:, knee] + np.array([0.0, 0.0, 0.1])
        new_knee, new_ankle = utils.two_bone_ik(torch.from_numpy(out[:, hip]), torch.from_numpy(hint),
                                                torch.from_numpy(target), utils.BONE_LENGTHS[knee],
                                                utils.BONE_LENGTHS[ankle])
        assert np.allclose(new_ankle.numpy(), target, atol=1e-9), "constructed foot out of reach"
        out[:, toe] += shift
        out[:, knee], out[:, ankle] = new_knee.numpy(), new_ankle.numpy()
    return out


def step_then_slide(T: int = 60) -> np.ndarray:
    """The left foot in the air (frames 0-9), down and sliding 10 cm forward (10-39), in the
    air again (40-59); the right foot planted and still throughout."""
    left = np.zeros((T, 3))
    left[:10, 1] = 0.25 * np.sin(np.linspace(np.pi / 2, np.pi, 10))  # coming down, straight down
    left[10:40, 2] = np.linspace(0.0, 0.10, 30)
    left[40:, 2] = 0.10
    left[40:, 1] = 0.25 * np.sin(np.linspace(0.0, np.pi / 2, T - 40))
    return place_feet(np.tile(standing_pose(), (T, 1, 1)), left, np.zeros((T, 3)))


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """(T, 21) bone lengths."""
    return np.stack([np.linalg.norm(joints[:, j] - joints[:, p], axis=-1)
                     for j, p in enumerate(utils.PARENTS) if p >= 0], axis=-1)


def horizontal_speed(points: np.ndarray) -> np.ndarray:
    """Per-step xz speed (T-1, ...) m/s."""
    return np.linalg.norm(np.diff(points[..., [0, 2]], axis=0), axis=-1) * FPS


# ---------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------
def test_runs_and_tidy_spans():
    mask = np.array([0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0], bool)
    assert runs(mask).tolist() == [[1, 3], [5, 8], [9, 10]]
    # the 2-frame gap 3:5 and the 1-frame gap 8:9 are filled, giving one span 1:10
    assert runs(tidy_spans(mask, gap=2, min_span=3)).tolist() == [[1, 10]]
    # no filling: the spans shorter than 3 frames go
    assert runs(tidy_spans(mask, gap=0, min_span=3)).tolist() == [[5, 8]]
    assert runs(np.zeros(4, bool)).shape == (0, 2)


def test_ease_is_a_smoothstep():
    assert ease(np.array([-1.0, 0.0, 0.5, 1.0, 2.0])).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert ease(np.array([0.25]))[0] == pytest.approx(0.15625)


def test_hold_offsets_known_answer():
    """A joint moving 1 cm a frame along x, planted on frames 4..7: held at their mean x
    (0.055), the offset fading out with ease(1 - k/3) for k = 1, 2 frames on either side."""
    points = np.zeros((12, 3))
    points[:, 0] = 0.01 * np.arange(12)
    points[:, 1] = -0.02  # below the floor: the hold lifts it to y = 0
    planted = np.zeros(12, bool)
    planted[4:8] = True
    offsets, weights = hold_offsets(points, planted, blend=2)
    held = points + offsets
    assert np.allclose(held[4:8], [0.055, 0.0, 0.0])
    assert weights[4:8].tolist() == [1.0] * 4 and weights[[0, 1, 10, 11]].tolist() == [0.0] * 4
    fade = ease(np.array([2 / 3, 1 / 3]))
    assert np.allclose(weights[[8, 9]], fade) and np.allclose(weights[[3, 2]], fade)
    assert np.allclose(offsets[8], fade[0] * (np.array([0.055, 0.0, 0.0]) - points[7]))
    assert np.allclose(offsets[2], fade[1] * (np.array([0.055, 0.0, 0.0]) - points[4]))


def test_place_toe_keeps_the_foot_length_and_stays_above_the_floor():
    ankle = np.array([[0.0, 0.10, 0.0], [0.0, 0.10, 0.0]])
    original = np.array([[0.0, -0.08, 0.12], [0.0, -0.08, 0.12]])
    foot = np.linalg.norm(original, axis=-1)
    # a target a foot length away is met; one 3 cm nearer would put the toe 1.5 cm under the floor,
    # so it sits at the target's height (the floor) instead, horizontally towards it
    near = ankle[1] + 0.7 * original[1] * np.array([1.0, 0.0, 1.0]) + np.array([0.0, -0.10, 0.0])
    toes = feet.place_toe(ankle, np.stack([ankle[0] + original[0], near]), original, foot)
    assert np.allclose(toes[0], ankle[0] + original[0])
    assert np.allclose(np.linalg.norm(toes - ankle, axis=-1), foot)
    assert toes[1, 1] == pytest.approx(0.0) and toes[1, 0] == pytest.approx(0.0) and toes[1, 2] > near[2]
    nearest = ankle[1] + foot[1] * (near - ankle[1]) / np.linalg.norm(near - ankle[1])
    assert nearest[1] < -0.01  # what the nearest point would have been


def test_foot_contacts_height_speed_and_channels():
    joints = step_then_slide()
    contacts = foot_contacts(joints, fps=FPS)
    assert contacts.shape == (60, 4) and contacts.dtype == bool
    assert contacts[:, 2:].all()  # the right foot stands still on the floor all along
    assert contacts[12:38, :2].all() and not contacts[[0, 1, 2, 50, 55, 59], :2].any()
    # a low foot moving fast is in the air unless its contact channel says it is planted
    fast = joints.copy()
    fast[:, [8, 11], 2] += 0.05 * np.arange(60)[:, None]  # 1 m/s
    assert not foot_contacts(fast, fps=FPS)[:, 2:].any()
    channels = np.zeros((60, 4))
    channels[:, 2:] = 1.0
    assert foot_contacts(fast, channels, fps=FPS)[:, 2:].all()
    with pytest.raises(ValueError, match=r"contact channels must be \(60, 4\)"):
        foot_contacts(joints, channels[:-1])


# ---------------------------------------------------------------------------------------
# The cleanup on constructed motions
# ---------------------------------------------------------------------------------------
def test_a_sliding_planted_foot_ends_up_still_and_the_airborne_one_untouched():
    joints = step_then_slide()
    assert horizontal_speed(joints[12:38, [7, 10]]).mean() > 0.06  # it slides ~6.7 cm/s
    out = clean_feet(joints, fps=FPS)
    span = out.joints[12:38]
    assert np.abs(span[:, [7, 10]] - span[:1, [7, 10]]).max() < 1e-6  # held still, x, y and z
    assert span[0, 10, 2] == pytest.approx(joints[12:38, 10, 2].mean(), abs=0.01)  # near the slide's middle
    # in the air the left leg is the input's (the hold has eased out by then), as is the still right foot
    left = [4, 7, 10]
    assert np.array_equal(out.joints[:4, left], joints[:4, left])
    assert np.array_equal(out.joints[50:, left], joints[50:, left])
    assert np.allclose(out.joints[:, [5, 8, 11]], joints[:, [5, 8, 11]], atol=1e-12)  # held where it stands
    # only the left knee, ankle and toe moved, and nothing was lowered
    moved = np.abs(out.joints - joints).max(axis=(0, 2)) > 1e-12
    assert set(np.flatnonzero(moved)) == {4, 7, 10} and not out.root_drop.any()


def test_no_pop_at_span_edges_and_bones_keep_their_lengths():
    joints = step_then_slide()
    out = clean_feet(joints, fps=FPS).joints
    step_raw = np.linalg.norm(np.diff(joints, axis=0), axis=-1).max()
    step_out = np.linalg.norm(np.diff(out, axis=0), axis=-1)  # (T-1, 22)
    assert step_out.max() < step_raw + 0.02  # a hold eases in and out: at most 2 cm a frame more
    assert np.abs(bone_lengths(out) - bone_lengths(joints)).max() < 1e-9
    assert np.abs(bone_lengths(out) - utils.BONE_LENGTHS[1:]).max() < 1e-9


def test_a_motion_in_the_air_is_untouched():
    joints = step_then_slide()
    joints[..., 1] += 0.5  # jumping: no foot near the floor
    out = clean_feet(joints, fps=FPS)
    assert not out.contacts.any() and np.array_equal(out.joints, joints)


def test_cleanup_undoes_the_drag_of_a_root_correction():
    """Standing still, the whole body dragged 0.5 m sideways over 6 s (what a root correction
    does to an in-place motion pinned 0.5 m away): cleanup holds the planted toes (speed ~0),
    keeps the root's path (the goal stays met) and the bone lengths; the legs reach by
    lowering the body a little."""
    T = 120
    joints = np.tile(standing_pose(0.90), (T, 1, 1))  # legs nearly straight
    joints[..., 0] += np.linspace(0.0, 0.5, T)[:, None]
    raw_speed = horizontal_speed(joints[:, [10, 11]]).mean()
    assert raw_speed == pytest.approx(0.5 / ((T - 1) / FPS))
    out = clean_feet(joints, fps=FPS)
    assert out.contacts.all()
    assert horizontal_speed(out.joints[:, [10, 11]]).mean() < 0.002  # toes still: under 2 mm/s
    assert np.allclose(out.joints[:, 0, [0, 2]], joints[:, 0, [0, 2]])  # root xz unchanged
    assert np.abs(bone_lengths(out.joints) - bone_lengths(joints)).max() < 1e-9
    assert 0.0 < out.root_drop.max() <= feet.ROOT_DROP_MAX
    assert np.abs(np.diff(out.root_drop)).max() < 0.01  # lowered smoothly


def test_contacts_given_and_bad_input():
    joints = step_then_slide()
    none = clean_feet(joints, contacts=np.zeros((60, 4), bool))
    assert np.array_equal(none.joints, joints)
    assert clean_feet(joints.astype(np.float32)).joints.dtype == np.float32
    with pytest.raises(ValueError, match=r"clean_feet expects joints \(T, 22, 3\)"):
        clean_feet(joints[:, :21])
    with pytest.raises(ValueError, match="NaN"):
        clean_feet(np.full((5, 22, 3), np.nan))
    with pytest.raises(ValueError, match=r"contacts must be \(60, 4\)"):
        clean_feet(joints, contacts=np.zeros((60, 3), bool))
    assert FOOT_JOINTS == (7, 10, 8, 11)  # the order of the features' contact channels 259:263


# ---------------------------------------------------------------------------------------
# Wired in: the sampling option, trajectories, timelines, the CLI and its exports
# ---------------------------------------------------------------------------------------
SIZES = dict(vq_width=32, vq_code_dim=16, vq_codebook_size=32, vq_depth=1, gpt_n_embd=32, gpt_n_layer=1,
             gpt_n_head=2, diff_n_embd=32, diff_n_layer=1, diff_n_head=2, diff_timesteps=100,
             num_inbetween_steps=4, text_encoder="minilm")


@pytest.fixture(scope="module")
def standing_model():
    """Random tiny models whose statistics are a person standing on the floor (toes ~1 cm up),
    features spread 2 cm: motions that stand and shuffle their planted feet."""
    from config import CompositeConfig
    from pipeline import Composite
    from text_encoder import load_text_encoder
    cfg = CompositeConfig(**SIZES)
    torch.manual_seed(0)
    rest = utils.forward_kinematics(np.tile([1.0, 0.0, 0.0, 0.0], (1, 22, 1)), np.array([[0.0, 0.836, 0.0]]))
    mean = np.zeros(utils.FEATURE_DIM, np.float32)
    mean[3:67] = utils.pose_features(torch.from_numpy(rest))[0].numpy()
    std = np.full(utils.FEATURE_DIM, 0.02, np.float32)
    composite = Composite.build(cfg, load_text_encoder(cfg), mean, std, torch.device("cpu"))
    torch.nn.init.normal_(composite.denoiser.out_proj.weight, std=0.05, generator=torch.Generator().manual_seed(0))
    return composite


def toe_skating(joints: np.ndarray) -> float:
    """Mean horizontal toe speed (m/s) over steps where the toe is within 5 cm of the floor."""
    low = joints[:-1, [10, 11], 1] < 0.05
    return float(horizontal_speed(joints[:, [10, 11]])[low].mean())


def test_sampling_option_cleans_the_final_joints(standing_model):
    from pipeline import SamplingOptions
    plain = standing_model.sample("a person stands", 80, SamplingOptions(seed=3)).motions[0]
    clean = standing_model.sample("a person stands", 80, SamplingOptions(seed=3, cleanup_feet=True)).motions[0]
    assert plain.contacts is None and clean.contacts.shape == (80, 4) and clean.contacts.any()
    expected = clean_feet(plain.joints, plain.features[:, utils.FOOT_SLICE])
    assert np.array_equal(clean.joints, expected.joints) and np.array_equal(clean.contacts, expected.contacts)
    assert np.array_equal(clean.features, plain.features)  # the network's own
    assert toe_skating(plain.joints) > 0.03 and toe_skating(clean.joints) < 0.005
    assert np.abs(bone_lengths(clean.joints) - bone_lengths(plain.joints)).max() < 1e-5
    legs = [j for leg in LEGS for j in leg[1:]]
    body = [j for j in range(22) if j not in legs]
    assert np.array_equal(clean.joints[:, body][..., [0, 2]], plain.joints[:, body][..., [0, 2]])


def test_cleanup_repairs_the_drag_of_a_trajectory(standing_model):
    """A standing motion made to drift 0.5 m sideways by a root path: the root correction drags
    the planted feet; cleanup holds them and the path is still met."""
    from pipeline import SamplingOptions
    path = np.stack([np.linspace(0.0, 0.5, 100), np.zeros(100)], axis=-1)
    runs_ = [standing_model.sample("a person stands", 100, SamplingOptions(seed=5, cleanup_feet=on),
                                   trajectory=path).motions[0] for on in (False, True)]
    plain, clean = runs_
    assert plain.control_errors["trajectory_error_max"] < 1e-3
    assert clean.control_errors["trajectory_error_max"] < 1e-3  # delivered: measured on the cleaned joints
    assert toe_skating(plain.joints) > 0.06 and toe_skating(clean.joints) < 0.5 * toe_skating(plain.joints)


def test_timeline_cleans_the_joined_motion_once(standing_model):
    from pipeline import SamplingOptions
    from timeline import generate_timeline
    segments = [("a person stands", 2.5), ("a person stands still", 2.0)]
    plain, clean = (generate_timeline(standing_model, segments, SamplingOptions(seed=2, cleanup_feet=on),
                                      window=40, overlap=10) for on in (False, True))
    assert len(clean.diffusion_windows) > 2 and clean.joints.shape == (90, 22, 3)
    expected = clean_feet(plain.joints, plain.features[:, utils.FOOT_SLICE])
    assert np.array_equal(clean.joints, expected.joints) and np.array_equal(clean.contacts, expected.contacts)
    assert clean.contacts.any() and toe_skating(clean.joints) < toe_skating(plain.joints)


def test_cli_cleanup_feet_exports_the_cleaned_joints(tiny_trained, tmp_path):
    from bvh import read_bvh_joints
    from conftest import run_script
    outputs = {}
    for name, flag in (("plain", "false"), ("clean", "true")):
        proc = run_script("generate.py", "--checkpoint_dir", tiny_trained["checkpoint_dir"], "--text_encoder",
                          "minilm", "--num_inbetween_steps", "4", "--length", "60", "--cleanup_feet", flag,
                          "--format", "npy", "bvh", "smpl", "--out", f"{name}.npy", cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs[name] = np.load(tmp_path / f"{name}.npz")
    plain, clean = outputs["plain"], outputs["clean"]
    assert "contacts" not in plain and clean["contacts"].shape == (60, 4) and clean["contacts"].dtype == bool
    expected = clean_feet(plain["motion"], plain["features"][:, utils.FOOT_SLICE])
    assert np.array_equal(clean["contacts"], expected.contacts)
    assert np.allclose(clean["motion"], expected.joints, atol=1e-6)
    assert np.array_equal(np.load(tmp_path / "clean.npy"), clean["motion"])
    assert np.abs(read_bvh_joints(str(tmp_path / "clean.bvh")) - clean["motion"]).max() < 1e-4
    smpl = np.load(tmp_path / "clean_smpl.npz")
    assert np.abs(smpl["joints"] - clean["motion"]).max() < 1e-5
    assert "rot6d" not in smpl and "rot6d" in np.load(tmp_path / "plain_smpl.npz")  # the features' are uncleaned
