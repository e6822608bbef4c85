"""evaluate.py and evaluation/: the official T2M evaluator loading path, the in-house evaluator
and label classifiers, the whole protocol end to end on a tiny trained model (every row, every
metric finite, known answers), the report files and the CLI's bad-input exits."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import evaluate
import metrics
from conftest import random_motion_joints
from config import CompositeConfig
from evaluation import official, report
from evaluation.evaluators import load_evaluators
from evaluation.items import EvalError, EvalItem, load_action_labels, load_labels
from evaluation.rows import ROW_CHOICES, RowPlan
from evaluation.scoring import RowSample, motion_quality, score_row
from models.evaluator import OFFICIAL_SIZES, POS_ENUMERATOR, OfficialT2MEvaluator
from runtime import CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLOVE_WORDS = ["sos", "eos", "unk", "a", "person", "walk", "forward", "left", "slowly"]


def write_glove(folder, words=GLOVE_WORDS, as_json=False):
    os.makedirs(folder, exist_ok=True)
    vectors = np.random.default_rng(0).normal(size=(len(words), 300)).astype(np.float32)
    np.save(os.path.join(folder, "our_vab_data.npy"), vectors)
    index = {w: i for i, w in enumerate(words)}
    for stem, obj in (("our_vab_words", list(words)), ("our_vab_idx", index)):
        if as_json:
            with open(os.path.join(folder, stem + ".json"), "w") as fh:
                json.dump(obj, fh)
        else:
            with open(os.path.join(folder, stem + ".pkl"), "wb") as fh:
                pickle.dump(obj, fh)
    return vectors


def write_official_checkpoint(path):
    torch.manual_seed(0)
    model = OfficialT2MEvaluator()
    payload = {"movement_encoder": model.movement_encoder.state_dict(),
               "motion_encoder": model.motion_encoder.state_dict(),
               "text_encoder": model.text_encoder.state_dict(), "epoch": 7, "iter": 1234}
    torch.save(payload, path)
    return model


def test_official_evaluator_loads_its_checkpoint_and_glove(tmp_path):
    reference = write_official_checkpoint(tmp_path / "finest.tar")
    vectors = write_glove(tmp_path / "glove")
    model, glove = official.load_official_evaluator(str(tmp_path / "finest.tar"), str(tmp_path / "glove"),
                                                   torch.device("cpu"))
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert model.movement_encoder.main[0].weight.shape == (512, OFFICIAL_SIZES["pose_dim"], 4)
    assert model.motion_encoder.gru.weight_hh_l0.shape == (3 * 1024, 1024)
    assert model.text_encoder.pos_emb.weight.shape == (300, 15)

    # the T2M word pipeline: VIP classes, plain POS tags, unknown words
    vec, pos = glove.word_and_pos("walk/VERB")
    np.testing.assert_array_equal(vec, vectors[GLOVE_WORDS.index("walk")])
    assert pos.argmax() == POS_ENUMERATOR["Act_VIP"]
    assert glove.word_and_pos("person/NOUN")[1].argmax() == POS_ENUMERATOR["NOUN"]
    vec, pos = glove.word_and_pos("zebra/NOUN")
    np.testing.assert_array_equal(vec, vectors[GLOVE_WORDS.index("unk")])
    assert pos.argmax() == POS_ENUMERATOR["OTHER"]

    # text embeddings ignore padding: a short caption alone equals it beside a long one
    short = EvalItem("a", np.zeros((8, 263), np.float32), "a person walks", ["a/DET", "person/NOUN", "walk/VERB"])
    long = EvalItem("b", np.zeros((8, 263), np.float32), "x", ["person/NOUN", "walk/VERB"] * 15)
    scorer = official.OfficialEvaluator(model, glove, np.zeros(263, np.float32), np.ones(263, np.float32),
                                        np.zeros(0), torch.device("cpu"))
    together = scorer.text_embeddings([short, long])
    alone = scorer.text_embeddings([short])
    assert together.shape == (2, 512)
    np.testing.assert_allclose(together[0], alone[0], rtol=1e-4, atol=1e-5)
    # motions: 263-dim features in, the foot contacts are not read, length decides the steps
    rng = np.random.default_rng(1)
    motions = [rng.normal(size=(n, 263)).astype(np.float32) for n in (40, 64)]
    emb = scorer.motion_embeddings(motions)
    assert emb.shape == (2, 512) and np.isfinite(emb).all()
    changed = [m.copy() for m in motions]
    changed[0][:, 259:] += 5.0
    changed[0][40:] = 0
    emb2 = scorer.motion_embeddings(changed)
    np.testing.assert_allclose(emb, emb2, rtol=1e-4, atol=1e-5)
    # the JSON word files work too
    write_glove(tmp_path / "glove_json", as_json=True)
    assert "walk" in official.GloVe(str(tmp_path / "glove_json")).vectors
    assert EvalItem("c", np.zeros((8, 263)), "A person walks!", []).caption_tokens() == [
        "a/OTHER", "person/OTHER", "walks/OTHER"]  # no tokens in the file: plain words


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_official_loading_refuses_unsafe_or_misshapen_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_glove(tmp_path / "glove")
    with open(tmp_path / "glove" / "our_vab_words.pkl", "wb") as fh:
        pickle.dump([_RunsCode()], fh)
    with pytest.raises(EvalError, match="refused"):
        official.GloVe(str(tmp_path / "glove"))
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()

    torch.save({"movement_encoder": {}, "motion_encoder": {}}, tmp_path / "partial.tar")
    write_glove(tmp_path / "glove_ok")
    with pytest.raises(ValueError, match="text_encoder"):
        official.load_official_evaluator(str(tmp_path / "partial.tar"), str(tmp_path / "glove_ok"), torch.device("cpu"))
    small = OfficialT2MEvaluator()
    small.movement_encoder.out_net = torch.nn.Linear(512, 256)
    torch.save({k: getattr(small, k).state_dict() for k in ("movement_encoder", "motion_encoder", "text_encoder")},
               tmp_path / "wrong.tar")
    with pytest.raises(ValueError, match="movement_encoder"):
        official.load_official_evaluator(str(tmp_path / "wrong.tar"), str(tmp_path / "glove_ok"), torch.device("cpu"))
    with open(tmp_path / "code.tar", "wb") as fh:
        pickle.dump({"movement_encoder": _RunsCode()}, fh, protocol=2)
    with pytest.raises(CheckpointError):
        official.load_official_evaluator(str(tmp_path / "code.tar"), str(tmp_path / "glove_ok"), torch.device("cpu"))
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_official_statistics_missing_is_an_error_naming_the_file(tmp_path):
    model_dir = tmp_path / "text_mot_match" / "model"
    model_dir.mkdir(parents=True)
    write_official_checkpoint(model_dir / "finest.tar")
    meta = tmp_path / "text_mot_match" / "meta"
    with pytest.raises(EvalError, match=f"{meta / 'mean.npy'}"):
        official.official_statistics(str(model_dir / "finest.tar"))
    meta.mkdir()
    np.save(meta / "mean.npy", np.zeros(263, np.float32))
    with pytest.raises(EvalError, match="std.npy"):
        official.official_statistics(str(model_dir / "finest.tar"))
    np.save(meta / "std.npy", np.full(263, 2.0, np.float32))
    mean, std = official.official_statistics(str(model_dir / "finest.tar"))
    assert mean.shape == std.shape == (263,) and std[0] == 2.0


def test_label_fields_come_from_labels_json(tmp_path):
    bandai = {f"t{i}": {"action": c, "content": c, "style": s, "take": f"t{i}", "file": f"t{i}.bvh", "mirrored": False}
              for i, (c, s) in enumerate([("walk", "happy"), ("run", "sad"), ("walk", "sad")])}
    (tmp_path / "labels.json").write_text(json.dumps(bandai))
    labels = load_labels(str(tmp_path))
    assert labels.fields == ["content", "style"]  # action repeats content: one classifier, not two
    assert labels.names == {"content": ["run", "walk"], "style": ["happy", "sad"]}
    assert labels.of("t2@1.5-3") == {"content": 1, "style": 1} and labels.of("unknown") == {}
    assert load_action_labels(str(tmp_path)) == (["run", "walk"], {"t0": 1, "t1": 0, "t2": 1})
    synthetic = {"a": {"action": "jump", "actions": ["jump"], "params": {}}, "b": {"action": "walk"}}
    (tmp_path / "labels.json").write_text(json.dumps(synthetic))
    assert load_labels(str(tmp_path)).names == {"action": ["jump", "walk"]}
    (tmp_path / "labels.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="labels.json"):
        load_labels(str(tmp_path))
    assert load_labels(str(tmp_path / "none")).fields == []


@pytest.fixture
def one_thread():
    """Small GRU steps run faster on one thread, and far faster when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_in_house_evaluator_beats_chance_on_a_tiny_embedded_set(tmp_path, one_thread):
    cfg = CompositeConfig(dataset_root=str(tmp_path / "synthetic"), synthetic_num_motions=300,
                          checkpoint_dir=str(tmp_path / "ckpt"), results_dir=str(tmp_path / "results"),
                          evaluator_steps=90, classifier_steps=60, batch_size=32, evaluator_hidden=64,
                          evaluator_dim=64, eval_repeats=2, device="cpu")
    payload = evaluate.train_evaluator(cfg, torch.device("cpu"))
    top1, top2, top3 = payload["test_r_precision"]
    assert top3 > 3 * 3 / 32, payload["test_r_precision"]  # chance is 3/32
    assert top1 > 3 / 32
    assert list(payload["class_names"]) == ["action"]
    assert payload["classifier_test_accuracy"]["action"] > 3 / len(payload["class_names"]["action"])
    evaluators, saved = load_evaluators(cfg, torch.device("cpu"))
    assert saved["vocab"] == payload["vocab"] and list(evaluators.classifiers) == ["action"]
    assert all(isinstance(w, str) for w in saved["vocab"])

    # the protocol on the ground-truth row alone (no generator needed)
    results = evaluate.evaluate(cfg, RowPlan(("gt",)))
    (row,) = results["rows"]
    gt = row["metrics"]
    assert gt["r_precision_top3"]["mean"] > 3 * 3 / 32 and gt["fid"]["mean"] < 0.5
    assert gt["multimodality"] is None and gt["keyframe_model_error_m"] is None and row["seconds_per_motion"] is None
    assert gt["bone_length_std_m"]["mean"] < 0.005 and gt["bone_length_error_m"]["mean"] < 0.01
    assert gt["bone_length_std_raw_m"] == gt["bone_length_std_m"]  # ground truth: the same joints
    assert 0.5 < gt["keyframe_accel_ratio"]["mean"] < 2.0
    # HumanML3D's contact channels come from speed (planted below sqrt(0.002) m a frame, 89.4 cm/s
    # at 20 fps), not height: flagged toes stay below that speed, and the channels disagree with
    # the 5 cm height test at some steps
    assert 0.0 <= gt["flagged_toe_speed_cm_s"]["mean"] < 89.5
    assert 0.0 < gt["contact_agreement"]["mean"] < 1.0 and gt["toe_skating_cm_s"]["mean"] > 0.0
    assert gt["action_accuracy"]["mean"] > 3 / len(payload["class_names"]["action"])
    assert results["filmstrips"] is None  # no generator, no picture


def labelled_copy(tiny_trained, tmp_path) -> str:
    """The tiny trained model's data set with a labels.json of two fields (content, style)."""
    import shutil
    root = tmp_path / "data"
    shutil.copytree(tiny_trained["data_root"], root)
    ids = sorted(p[:-4] for p in os.listdir(root / "texts"))
    labels = {m: {"action": ("walk", "run", "jump")[i % 3], "content": ("walk", "run", "jump")[i % 3],
                  "style": ("happy", "sad")[i // 3 % 2]} for i, m in enumerate(ids)}
    (root / "labels.json").write_text(json.dumps(labels))
    return str(root)


def test_evaluate_end_to_end_every_row_and_known_answers(tiny_trained, tmp_path, one_thread):
    cfg = CompositeConfig(dataset_root=labelled_copy(tiny_trained, tmp_path), dataset_kind="humanml3d",
                          checkpoint_dir=tiny_trained["checkpoint_dir"], results_dir=str(tmp_path / "results"),
                          text_encoder="minilm", device="cpu", num_inbetween_steps=4, batch_size=8,
                          evaluator_steps=40, classifier_steps=20, evaluator_hidden=16, evaluator_dim=16,
                          eval_repeats=2, eval_num_samples=64, eval_mm_num_prompts=3, eval_mm_repeats=3,
                          eval_ddim_steps="2,4", eval_interval=1000)
    cfg = cfg.replace(checkpoint_dir=str(tmp_path / "ckpt"))
    os.makedirs(cfg.checkpoint_dir)
    for stage in ("vqvae", "gpt", "diffusion"):  # the trained generator beside a fresh evaluator
        os.symlink(os.path.join(tiny_trained["checkpoint_dir"], f"{stage}.pt"), os.path.join(cfg.checkpoint_dir, f"{stage}.pt"))
    plan = RowPlan(ROW_CHOICES, guidance_scales=(1.0,), etas=(0.5,))
    results = evaluate.evaluate(cfg, plan)  # trains the evaluator first: there is none yet
    rows = {r["key"]: r for r in results["rows"]}
    assert list(rows) == ["ground_truth", "composite", "ar_only", "ar_only_cubic", "diffusion_only", "composite_ddim2",
                          "composite_ddim4", "composite_pinned", "composite_roundtrip", "composite_cleaned",
                          "composite_pinned_cleaned", "composite_cfg1", "composite_eta0.5"]
    not_applicable = {"ground_truth": {"multimodality", "keyframe_model_error_m"},
                      "ar_only": {"keyframe_model_error_m"}, "ar_only_cubic": {"keyframe_model_error_m", "multimodality"},
                      "diffusion_only": {"keyframe_model_error_m"}}
    # the tiny model's toes may never come within 5 cm of the floor, or never be flagged planted, in
    # a repeat: then there is no toe speed to average (NaN, None in the table)
    # and its labels here are arbitrary, so a content may lack 3 styles or real takes that move
    nothing_to_measure = {"toe_skating_cm_s", "flagged_toe_speed_cm_s", "style_speed_rank"}
    for key, row in rows.items():
        for name, stat in row["metrics"].items():
            if (name in not_applicable.get(key, set()) or (name == "multimodality" and key.startswith("composite_"))
                    or (name == "pinned_pose_error_m" and not key.startswith("composite_pinned"))):
                assert stat is None, (key, name)
            elif name in nothing_to_measure and (key != "ground_truth" or name == "style_speed_rank") and stat is None:
                continue
            else:
                assert stat is not None and np.isfinite([stat["mean"], stat["ci95"]]).all(), (key, name, stat)
        assert {"content_accuracy", "style_accuracy"} <= set(row["metrics"]), key
    # today's defaults: the residual envelope meets the keyframes and fit_bones gives canonical bones,
    # so those columns cannot fail; the report drops them and says why (a model without the envelope
    # reports its own error: tests/test_pipeline.py)
    assert results["by_construction"] == {"fit_bones": True, "prediction_meets_keyframes": True}
    assert rows["composite"]["metrics"]["keyframe_model_error_m"]["mean"] < 1e-6
    assert rows["composite"]["metrics"]["bone_length_std_m"]["mean"] < 1e-6
    assert rows["composite"]["metrics"]["bone_length_std_raw_m"]["mean"] > 0  # the network's own
    assert rows["composite_pinned"]["metrics"]["pinned_pose_error_m"]["mean"] < 1e-4  # met by construction
    # the round-trip row has the composite's joints (only the evaluator's features differ); cleanup holds feet
    for name in ("jerk", "foot_skating", "toe_skating_cm_s"):
        assert rows["composite_roundtrip"]["metrics"][name] == rows["composite"]["metrics"][name], name
    assert rows["composite_roundtrip"]["metrics"]["fid"] != rows["composite"]["metrics"]["fid"]
    assert rows["composite_cleaned"]["metrics"]["bone_length_std_m"]["mean"] < 1e-6  # the legs keep their bones
    pinned, cleaned = rows["composite_pinned"]["metrics"], rows["composite_pinned_cleaned"]["metrics"]
    assert cleaned["toe_skating_cm_s"]["mean"] < 0.5 * pinned["toe_skating_cm_s"]["mean"]  # the root's drag, undone
    assert results["labels"] == {"content": ["jump", "run", "walk"], "style": ["happy", "sad"]}
    assert results["mm_prompts"] == 3 and results["mm_pairs"] == 3 and results["repeats"] == 2
    with open(results["filmstrips"], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    report_text = report.format_report(results)
    assert "SMALLER than Guo et al.'s" in report_text and results["filmstrips"] in report_text
    assert "real poses pinned (world): the motions pass 0.000 cm" in report_text and "Pin err" not in report_text
    assert pinned["pin_root_delivered_m"]["mean"] < 1e-4  # met by the final root rewrite, by construction
    assert pinned["pin_root_correction_max_m"]["mean"] >= pinned["pin_root_correction_m"]["mean"] > 0.0
    assert "Root at the pins: raw " in report_text
    assert "pin_root_raw_m" not in rows["composite"]["metrics"]  # only rows with pins report control
    assert "Content acc" in report_text and "Style acc" in report_text
    assert "KF model err cm ↓" not in report_text and "Bone std cm ↓" not in report_text
    assert "Bone err cm ↓" not in report_text and "Bone std raw cm ↓" in report_text
    assert "KF model err is not a column" in report_text

    # known answers through the same scoring code
    evaluators, _ = load_evaluators(cfg, torch.device("cpu"))
    from dataset import load_clips
    from evaluation.items import draw_items
    from evaluation.scoring import Protocol, Scorers, real_root_speeds
    reference = draw_items(load_clips(cfg.dataset_root, "test", cfg), cfg, None, load_labels(cfg.dataset_root))
    features = [it.features for it in reference]
    scorers = Scorers(evaluators, evaluators.motion_embeddings(features), None, Protocol(20, 300, 3))
    joints = [random_motion_joints(len(f), seed=i) for i, f in enumerate(features)]
    same = RowSample(reference, evaluators.text_embeddings([it.caption for it in reference]), None, features, joints,
                     [np.arange(0, len(f), 5) for f in features], [None] * len(features), real_speeds=real_root_speeds(reference, 20))
    assert score_row(scorers, same, np.random.default_rng(0))["fid"] == pytest.approx(0.0, abs=1e-6)  # GT vs itself
    pose = random_motion_joints(41, seed=1)[0]
    pose[:, 1] -= pose[[10, 11], 1].min()  # feet on the floor
    t = np.arange(41)[:, None, None] / 20.0
    slide = pose[None] + t * np.array([1.0, 0.0, 0.0])  # planted feet sliding at 1 m/s: constant velocity
    flags = np.zeros((41, 263))
    flags[:, 260] = 1.0  # the left toe's contact channel says planted throughout
    quality = motion_quality(RowSample([], None, None, [flags], [slide], [np.arange(0, 41, 5)], [0.01]), 20)
    assert quality["foot_skating"] > 0.9 and quality["jerk"] == pytest.approx(0.0, abs=1e-6)
    # every toe near the floor, and the flagged left toe, slide at exactly 1 m/s
    assert quality["toe_skating_cm_s"] == pytest.approx(100.0) and quality["flagged_toe_speed_cm_s"] == pytest.approx(100.0)
    assert quality["keyframe_model_error_m"] == 0.01 and quality["bone_length_std_m"] < 1e-9
    assert np.isnan(quality["keyframe_accel_ratio"])  # no acceleration anywhere: no ratio


def test_a_generator_trained_on_other_data_is_scored_only_with_cross_data(tiny_trained, tmp_path):
    import shutil
    from evaluation.evaluators import evaluator_path
    from evaluation.protocol import load_generator
    root = tmp_path / "other"
    shutil.copytree(tiny_trained["data_root"], root)
    np.save(root / "Mean.npy", np.load(root / "Mean.npy") + 0.1)  # other data: other statistics
    cfg = CompositeConfig(dataset_root=str(root), dataset_kind="humanml3d", checkpoint_dir=tiny_trained["checkpoint_dir"],
                          text_encoder="minilm", device="cpu", num_inbetween_steps=2)
    with pytest.raises(EvalError, match="--cross_data"):
        load_generator(cfg, str(root), torch.device("cpu"))
    composite = load_generator(cfg, str(root), torch.device("cpu"), cross_data=True)
    # it keeps the statistics it was trained with: its motions come out in metres all the same
    assert not np.allclose(composite.mean, np.load(root / "Mean.npy"))
    motion = composite.sample("a person walks", 40).motions[0]
    assert np.isfinite(motion.features).all() and motion.features.shape == (40, 263)
    assert evaluator_path(cfg) == os.path.join(tiny_trained["checkpoint_dir"], "evaluator.pt")
    assert evaluator_path(cfg.replace(evaluator_file=str(tmp_path / "e.pt"))) == str(tmp_path / "e.pt")


def moving_pose_features(speed: float, frames: int = 41) -> np.ndarray:
    """(frames - 1, 263) features of a still pose whose root walks along +z at `speed` m/s."""
    import utils
    pose = random_motion_joints(2, seed=3)[0]
    t = np.arange(frames)[:, None, None] / 20.0
    return utils.joints_to_features(pose[None] + t * np.array([0.0, 0.0, speed])).astype(np.float32)


def test_speed_metrics_compare_pace_and_style_order_with_the_real_takes():
    from dataset import MotionClip
    from evaluation.items import LabelSet
    from evaluation.scoring import Protocol, Scorers, real_root_speeds, speed_metrics, style_speed_reference
    from utils import features_to_joints
    names = {"content": ["run", "walk"], "style": ["active", "normal", "tired"]}
    train_speeds = {("run", "tired"): (1.4, 1.6), ("run", "normal"): (3.0,), ("run", "active"): (3.3,),
                    ("walk", "tired"): (0.8,), ("walk", "normal"): (1.2,), ("walk", "active"): (1.5,)}
    clips, index = [], {"content": {}, "style": {}}
    for (content, style), speeds in train_speeds.items():
        for i, speed in enumerate(speeds):
            motion_id = f"{content}_{style}_{i}"
            clips.append(MotionClip(motion_id, moving_pose_features(speed), ["a caption"]))
            index["content"][motion_id] = names["content"].index(content)
            index["style"][motion_id] = names["style"].index(style)
    labels = LabelSet(names, index)
    reference = style_speed_reference(clips, labels, 20)
    assert reference[("run", "tired")] == pytest.approx(1.5, rel=1e-3)  # the mean of its two takes
    assert reference[("walk", "active")] == pytest.approx(1.5, rel=1e-3)
    assert style_speed_reference(clips, LabelSet({"action": ["x"]}, {"action": {}}), 20) == {}

    # test takes at the train takes' speeds; the row runs in the real order at half pace and
    # walks in the reversed order
    test = [("run", "tired", 1.5, 0.75), ("run", "normal", 3.0, 1.5), ("run", "active", 3.3, 1.65),
            ("walk", "tired", 0.8, 1.5), ("walk", "normal", 1.2, 1.2), ("walk", "active", 1.5, 0.8)]
    items = [EvalItem(f"t{i}", moving_pose_features(real), "a caption", [],
                      {"content": names["content"].index(c), "style": names["style"].index(s)})
             for i, (c, s, real, _) in enumerate(test)]
    joints = [features_to_joints(moving_pose_features(generated)) for *_, generated in test]
    scorers = Scorers(None, None, None, Protocol(20, 300, 3), speed_reference=reference, label_names=names)
    sample = RowSample(items, None, None, [it.features for it in items], joints, [], [],
                       real_speeds=real_root_speeds(items, 20))
    result = speed_metrics(scorers, sample)
    real_total, generated_total = sum(t[2] for t in test), sum(t[3] for t in test)
    assert result["moving_speed_ratio"] == pytest.approx(generated_total / real_total, rel=1e-3)
    assert result["style_speed_rank"] == pytest.approx(0.0)  # runs +1, walks -1
    truth = RowSample(items, None, None, [it.features for it in items],
                      [features_to_joints(it.features) for it in items], [], [], real_speeds=sample.real_speeds)
    assert speed_metrics(scorers, truth) == {"moving_speed_ratio": pytest.approx(1.0), "style_speed_rank": pytest.approx(1.0)}
    no_labels = Scorers(None, None, None, Protocol(20, 300, 3))
    assert np.isnan(speed_metrics(no_labels, sample)["style_speed_rank"])


def fake_results(with_ablations=True):
    def stat(mean):
        return {"mean": mean, "ci95": 0.01}
    rows = [("ground_truth", None, None, 0.05, 0.95), ("composite", "composite", 10, 0.9, 0.8),
            ("ar_only", "interpolate", None, 1.1, 0.82), ("diffusion_only", "diffusion_only", 10, 6.7, 0.6),
            ("composite_ddim5", "composite", 5, 0.98, 0.79), ("composite_ddim50", "composite", 50, 0.96, 0.8)]
    if not with_ablations:
        rows = rows[:2]
    table = []
    names = [c[0] for c in report.TEXT_COLUMNS + report.QUALITY_COLUMNS] + ["action_accuracy"]
    for key, mode, steps, fid, r3 in rows:
        metrics_ = {n: stat(0.5) for n in names}
        metrics_.update(fid=stat(fid), r_precision_top3=stat(r3), multimodality=None if mode is None else stat(2.0))
        table.append({"key": key, "name": key.replace("_", " "), "mode": mode, "ddim_steps": steps,
                      "metrics": metrics_, "seconds_per_motion": None if mode is None else stat(0.01 * (steps or 1))})
    return {"timestamp": "20260101-000000", "dataset_root": "somewhere", "checkpoint_dir": "ckpt", "device": "cpu",
            "num_test_motions": 300, "num_samples": 300, "repeats": 20, "diversity_pairs": 300, "mm_prompts": 100,
            "mm_repeats": 30, "mm_pairs": 10, "labels": {"action": ["jump", "walk"]},
            "evaluator": {"path": "x", "test_r_precision": [0.9, 0.95, 0.99],
                          "classifier_test_accuracy": {"action": 1.0}, "step": 10, "dataset_root": "somewhere"},
            "official_t2m": False, "rows": table, "filmstrips": None, "config": CompositeConfig().to_dict()}


def test_report_files_and_verdict(tmp_path):
    from PIL import Image
    results = fake_results()
    verdict = report.composite_verdict(results)
    assert verdict.startswith("Composite does NOT beat both ablations")
    assert "worse than AR only 0.820 (within the CIs)" in verdict
    results["rows"][1]["metrics"]["r_precision_top3"]["mean"] = 0.9
    assert report.composite_verdict(results).startswith("Composite beats both ablations")
    paths = evaluate.write_results(results, str(tmp_path / "results"))
    assert json.load(open(paths["json"]))["rows"][1]["metrics"]["fid"]["mean"] == 0.9
    text = open(paths["md"]).read()
    assert "| composite | 0.900 ± 0.010 |" in text and "Composite beats both" in text
    assert "Protocol: Guo et al.'s sizes" in text and "GMD" in text and "Action acc" in text
    assert "Toe skate cm/s ↓" in text and "Kimodo" in text and "Flag/height agree" in text
    assert "jitter everywhere raises both means alike" in text  # what the KF accel ratio cannot see
    assert "KF err" not in text  # 0 by construction: no such column
    assert "KF model err cm ↓" in text and "Bone std cm ↓" in text  # nothing is constant in this model
    results["by_construction"] = {"fit_bones": True, "prediction_meets_keyframes": False}
    text = report.format_report(results)
    assert "Bone std cm ↓" not in text and "Bone err cm ↓" not in text and "KF model err cm ↓" in text
    assert "Bone std and Bone err of the delivered joints are not columns" in text
    with Image.open(paths["png"]) as image:
        assert image.size[0] > 1000
    assert sorted(os.listdir(tmp_path / "results")) == sorted(
        f"eval_{stem}.{ext}" for stem in ("20260101-000000", "latest") for ext in ("md", "json", "png"))
    assert "not all three rows" in report.composite_verdict(fake_results(with_ablations=False))


def test_filmstrips_put_real_and_generated_side_by_side(tmp_path):
    from PIL import Image
    real, fake = random_motion_joints(40, seed=1), random_motion_joints(40, seed=2)
    examples = [report.Example("a person walks", "walk / happy", real, fake, np.arange(0, 40, 5)),
                report.Example("a person runs", "", real, fake, np.arange(0, 40, 5))]
    path = report.save_filmstrips(examples, str(tmp_path / "strips.png"))
    with Image.open(path) as sheet:  # two rows of two 8-pose strips (each about 9.5 x 2.9 inches)
        assert 2.5 < sheet.size[0] / sheet.size[1] < 4.0
    assert os.listdir(tmp_path) == ["strips.png"]


def _run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    missing = _run_cli("--checkpoint_dir", str(tmp_path / "none"), "--results_dir", str(tmp_path / "res"))
    assert missing.returncode == 2
    assert "python train.py" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "res").exists()
    unknown = _run_cli("--no_such_field", "3")
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--eval_repeats", "many"])
    assert exit_info.value.code == 2 and "eval_repeats" in capsys.readouterr().err
    for bad, name in ((["--eval_ddim_steps", "5,x"], "eval_ddim_steps"), (["--guidance_sweep", "1,two"], "guidance_sweep"),
                      (["--rows", "gt", "eta"], "eta_sweep")):
        assert evaluate.main([*bad, "--checkpoint_dir", str(tmp_path / "none")]) == 2
        err = capsys.readouterr().err
        assert name in err and len(err.strip().splitlines()) == 1
