"""evaluate.py: the official T2M evaluator loading path, the in-house evaluator trained on a
tiny embedded data set, and the CLI's bad-input exits."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import evaluate
from config import CompositeConfig
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
    model, glove = evaluate.load_official_evaluator(str(tmp_path / "finest.tar"), str(tmp_path / "glove"),
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
    short = evaluate.EvalItem("a", np.zeros((8, 263), np.float32), "a person walks",
                              ["a/DET", "person/NOUN", "walk/VERB"], -1)
    long = evaluate.EvalItem("b", np.zeros((8, 263), np.float32), "x", ["person/NOUN", "walk/VERB"] * 15, -1)
    together = evaluate.official_text_embeddings(model, glove, [short, long], torch.device("cpu"))
    alone = evaluate.official_text_embeddings(model, glove, [short], torch.device("cpu"))
    assert together.shape == (2, 512)
    np.testing.assert_allclose(together[0], alone[0], rtol=1e-4, atol=1e-5)
    # motions: 263-dim features in, the foot contacts are not read, length decides the steps
    rng = np.random.default_rng(1)
    motions = [rng.normal(size=(n, 263)).astype(np.float32) for n in (40, 64)]
    emb = evaluate.embed_motions(model.encode_motion, motions, np.zeros(263, np.float32), np.ones(263, np.float32),
                                 torch.device("cpu"))
    assert emb.shape == (2, 512) and np.isfinite(emb).all()
    changed = [m.copy() for m in motions]
    changed[0][:, 259:] += 5.0
    changed[0][40:] = 0
    emb2 = evaluate.embed_motions(model.encode_motion, changed, np.zeros(263, np.float32), np.ones(263, np.float32),
                                  torch.device("cpu"))
    np.testing.assert_allclose(emb, emb2, rtol=1e-4, atol=1e-5)
    # the JSON word files work too
    write_glove(tmp_path / "glove_json", as_json=True)
    assert "walk" in evaluate.GloVe(str(tmp_path / "glove_json")).vectors


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_official_loading_refuses_unsafe_or_misshapen_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_glove(tmp_path / "glove")
    with open(tmp_path / "glove" / "our_vab_words.pkl", "wb") as fh:
        pickle.dump([_RunsCode()], fh)
    with pytest.raises(evaluate.EvalError, match="refused"):
        evaluate.GloVe(str(tmp_path / "glove"))
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()

    torch.save({"movement_encoder": {}, "motion_encoder": {}}, tmp_path / "partial.tar")
    write_glove(tmp_path / "glove_ok")
    with pytest.raises(ValueError, match="text_encoder"):
        evaluate.load_official_evaluator(str(tmp_path / "partial.tar"), str(tmp_path / "glove_ok"), torch.device("cpu"))
    small = OfficialT2MEvaluator()
    small.movement_encoder.out_net = torch.nn.Linear(512, 256)
    torch.save({k: getattr(small, k).state_dict() for k in ("movement_encoder", "motion_encoder", "text_encoder")},
               tmp_path / "wrong.tar")
    with pytest.raises(ValueError, match="movement_encoder"):
        evaluate.load_official_evaluator(str(tmp_path / "wrong.tar"), str(tmp_path / "glove_ok"), torch.device("cpu"))
    with open(tmp_path / "code.tar", "wb") as fh:
        pickle.dump({"movement_encoder": _RunsCode()}, fh, protocol=2)
    with pytest.raises(CheckpointError):
        evaluate.load_official_evaluator(str(tmp_path / "code.tar"), str(tmp_path / "glove_ok"), torch.device("cpu"))
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


@pytest.fixture
def one_thread():
    """Small GRU steps run faster on one thread, and far faster when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_in_house_evaluator_beats_chance_on_a_tiny_embedded_set(tmp_path, one_thread):
    cfg = CompositeConfig(dataset_root=str(tmp_path / "synthetic"), synthetic_num_motions=400,
                          checkpoint_dir=str(tmp_path / "ckpt"), evaluator_steps=150, classifier_steps=100,
                          batch_size=32, evaluator_hidden=64, evaluator_dim=64, eval_repeats=2, device="cpu")
    payload = evaluate.train_evaluator(cfg, torch.device("cpu"))
    top1, top2, top3 = payload["test_r_precision"]
    assert top3 > 3 * 3 / 32, payload["test_r_precision"]  # chance is 3/32
    assert top1 > 3 / 32
    assert payload["classifier_test_accuracy"] > 3 / len(payload["actions"])
    evaluator, classifier, saved = evaluate.load_evaluator(cfg, torch.device("cpu"))
    assert saved["vocab"] == payload["vocab"] and classifier is not None
    assert all(isinstance(w, str) for w in saved["vocab"])

    # the protocol on the ground-truth row alone (no generator needed)
    results = evaluate.evaluate(cfg, ("gt",))
    (row,) = results["rows"]
    gt = row["metrics"]
    assert gt["r_precision_top3"]["mean"] > 3 * 3 / 32 and gt["fid"]["mean"] < 0.5
    assert gt["multimodality"] is None and gt["keyframe_error_m"] is None and row["seconds_per_motion"] is None
    assert gt["bone_length_error_m"]["mean"] < 0.01 and gt["action_accuracy"]["mean"] > 3 / len(payload["actions"])


def fake_results(with_ablations=True):
    def stat(mean):
        return {"mean": mean, "ci95": 0.01}
    rows = [("ground_truth", None, None, 0.05, 0.95), ("composite", "composite", 10, 0.9, 0.8),
            ("ar_only", "interpolate", None, 1.1, 0.82), ("diffusion_only", "diffusion_only", 10, 6.7, 0.6),
            ("composite_ddim5", "composite", 5, 0.98, 0.79), ("composite_ddim50", "composite", 50, 0.96, 0.8)]
    if not with_ablations:
        rows = rows[:2]
    table = []
    for key, mode, steps, fid, r3 in rows:
        names = [c[0] for c in evaluate.COLUMNS]
        metrics_ = {n: stat(0.5) for n in names}
        metrics_.update(fid=stat(fid), r_precision_top3=stat(r3), multimodality=None if mode is None else stat(2.0))
        table.append({"key": key, "name": key.replace("_", " "), "mode": mode, "ddim_steps": steps,
                      "metrics": metrics_, "seconds_per_motion": None if mode is None else stat(0.01 * (steps or 1))})
    return {"timestamp": "20260101-000000", "dataset_root": "somewhere", "checkpoint_dir": "ckpt", "device": "cpu",
            "num_test_motions": 300, "num_samples": 256, "repeats": 3, "mm_prompts": 32, "mm_repeats": 5,
            "evaluator": {"path": "x", "test_r_precision": [0.9, 0.95, 0.99], "classifier_test_accuracy": 1.0,
                          "actions": ["walk", "jump"], "steps": 10},
            "official_t2m": False, "rows": table, "config": CompositeConfig().to_dict()}


def test_report_files_and_verdict(tmp_path):
    from PIL import Image
    results = fake_results()
    verdict = evaluate.composite_verdict(results)
    assert verdict.startswith("Composite does NOT beat both ablations")
    assert "worse than AR only 0.820 (within the CIs)" in verdict
    results["rows"][1]["metrics"]["r_precision_top3"]["mean"] = 0.9
    assert evaluate.composite_verdict(results).startswith("Composite beats both ablations")
    cfg = CompositeConfig(results_dir=str(tmp_path / "results"))
    paths = evaluate.write_results(results, cfg)
    assert json.load(open(paths["json"]))["rows"][1]["metrics"]["fid"]["mean"] == 0.9
    report = open(paths["md"]).read()
    assert "| composite | 0.900 ± 0.010 |" in report and "Composite beats both" in report
    with Image.open(paths["png"]) as image:
        assert image.size[0] > 1000
    assert sorted(os.listdir(tmp_path / "results")) == sorted(
        f"eval_{stem}.{ext}" for stem in ("20260101-000000", "latest") for ext in ("md", "json", "png"))
    assert "not all three rows" in evaluate.composite_verdict(fake_results(with_ablations=False))


def _run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    missing = _run_cli("--checkpoint_dir", str(tmp_path / "none"), "--results_dir", str(tmp_path / "res"))
    assert missing.returncode == 2
    assert "run python train.py first" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "res").exists()
    unknown = _run_cli("--no_such_field", "3")
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--eval_repeats", "many"])
    assert exit_info.value.code == 2 and "eval_repeats" in capsys.readouterr().err
    assert evaluate.main(["--eval_ddim_steps", "5,x", "--checkpoint_dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "eval_ddim_steps" in err and len(err.strip().splitlines()) == 1
