"""prepare_data.py: a few real Bandai Namco takes -> the HumanML3D layout that the existing
loader reads, with label-stratified splits; plus the split, caption and CLI pieces on their own."""
import json
import os
import shutil
import warnings
from collections import Counter

import numpy as np
import pytest

import prepare_data
from conftest import run_script
from config import CompositeConfig
from dataset import MotionDataset
from motion_io.captions import caption_line, caption_tokens, label_captions, mirror_text, take_labels
from motion_io.splits import SPLITS, missing_labels, stratified_split
from test_bvh import BANDAI_DATA, extract_bandai, needs_bandai

TAKES = [f"dataset-2_raise-up-both-hands_{style}_00{i}" for style in ("active", "elderly") for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Six real takes (one content, two styles) and a broken file, prepared into OUT."""
    base = tmp_path_factory.mktemp("bandai")
    bvh_dir = base / "bvh"
    (bvh_dir / "sub").mkdir(parents=True)
    extract_bandai([BANDAI_DATA[2] + t + ".bvh" for t in TAKES], bvh_dir)
    (bvh_dir / "sub" / "broken.bvh").write_text("HIERARCHY\nROOT Hips\n{\n")
    out = base / "out"
    summary = prepare_data.prepare_dataset(str(bvh_dir), str(out),
                                           prepare_data.PrepareOptions(workers=1, progress=False))
    return {"bvh_dir": bvh_dir, "out": out, "summary": summary}


def _read(out, name):
    return (out / name).read_text().split()


@needs_bandai
def test_prepared_layout_loads_with_the_existing_loader(prepared):
    out, summary = prepared["out"], prepared["summary"]
    assert summary["takes found"] == 7 and summary["broken"] == 1 and summary["takes kept"] == 6
    for name in ("new_joints", "new_joint_vecs", "texts", "joints", "train.txt", "val.txt", "test.txt",
                 "Mean.npy", "Std.npy", "labels.json", "prepare.json"):
        assert (out / name).exists(), name
    cfg = CompositeConfig(dataset_kind="humanml3d", dataset_root=str(out), min_motion_length=24)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no motion skipped
        sets = {split: MotionDataset(cfg, split) for split in SPLITS}
    assert sum(len(s) for s in sets.values()) == summary["train motions"] + summary["val motions"] + summary["test motions"]
    item = sets["train"][0]
    assert item["motion"].shape[1] == 263 and item["length"] >= 24 and item["caption"].endswith(".")
    some_id = _read(out, "test.txt")[0]
    feats, joints = (np.load(out / f / f"{some_id}.npy") for f in ("new_joint_vecs", "new_joints"))
    assert feats.shape[0] == joints.shape[0] and joints.shape[1:] == (22, 3)
    line = (out / "texts" / f"{some_id}.txt").read_text().splitlines()[0]
    caption, tokens, start, end = line.split("#")
    assert (start, end) == ("0.0", "0.0") and len(tokens.split()) == len(caption.split())
    assert all(t.count("/") == 1 and t.split("/")[1] != "OTHER" for t in tokens.split()) and "/VERB" in tokens
    # labels.json: the evaluator's {id: {"action": name, ...}} format (the content), plus the
    # content and style by name, for every motion id.
    labels = json.loads((out / "labels.json").read_text())
    assert set(labels) == {m for s in SPLITS for m in _read(out, f"{s}.txt")}
    assert all(isinstance(v[f], str) for v in labels.values() for f in ("action", "content", "style"))
    assert {v["action"] for v in labels.values()} == {v["content"] for v in labels.values()} == {"raise-up-both-hands"}
    assert {v["style"] for v in labels.values()} == {"active", "elderly"}


@needs_bandai
def test_splits_hold_every_label_and_no_take_twice(prepared):
    out = prepared["out"]
    labels = json.loads((out / "labels.json").read_text())
    takes = {s: {labels[m]["take"] for m in _read(out, f"{s}.txt")} for s in SPLITS}
    assert not (takes["train"] & takes["val"]) and not (takes["train"] & takes["test"]) and not (takes["val"] & takes["test"])
    assert set().union(*takes.values()) == set(TAKES)
    for split in SPLITS:
        ids = _read(out, f"{split}.txt")
        assert {labels[m]["content"] for m in ids} == {"raise-up-both-hands"}
        assert {labels[m]["style"] for m in ids} == {"active", "elderly"}
        mirrored = [m for m in ids if labels[m]["mirrored"]]
        assert (len(mirrored) == len(ids) // 2) if split == "train" else not mirrored  # mirrors: train only
    # A mirror is the take with x negated and left/right swapped, in its features' joints too.
    take = sorted(takes["train"])[0]
    a, b = (np.load(out / "new_joints" / f"{m}.npy") for m in (take, "M" + take))
    np.testing.assert_allclose(b[:, 20, 1], a[:, 21, 1], atol=1e-5)  # left wrist height = right wrist's


@needs_bandai
def test_rerun_reuses_takes_and_rebuilds_the_same_files(prepared):
    out = prepared["out"]
    names = ["train.txt", "val.txt", "test.txt", "Mean.npy", "labels.json"]
    before = {n: (out / n).read_bytes() for n in names}
    stamp = os.path.getmtime(out / "joints" / f"{TAKES[0]}.npy")
    summary = prepare_data.prepare_dataset(str(prepared["bvh_dir"]), str(out),
                                           prepare_data.PrepareOptions(workers=1, progress=False))
    assert summary["takes kept"] == 6
    assert os.path.getmtime(out / "joints" / f"{TAKES[0]}.npy") == stamp  # reused, not re-imported
    assert {n: (out / n).read_bytes() for n in names} == before


@needs_bandai
def test_captions_csv_replaces_label_captions(prepared, tmp_path):
    csv = tmp_path / "captions.csv"
    csv.write_text("file,caption\n" + "".join(f"{t}.bvh,a person lifts the left arm number {i}\n" for i, t in enumerate(TAKES)))
    out = tmp_path / "out"
    shutil.copytree(prepared["out"], out)  # its joints/ cache is reused: only texts change
    with open(out / "prepare.json") as fh:
        assert json.load(fh)["settings"]["bvh_dir"] == os.path.abspath(prepared["bvh_dir"])
    prepare_data.prepare_dataset(str(prepared["bvh_dir"]), str(out),
                                 prepare_data.PrepareOptions(captions_csv=str(csv), workers=1, progress=False))
    take = _read(out, "train.txt")[0]
    text = (out / "texts" / f"{take}.txt").read_text()
    assert text.startswith("a person lifts the ") and "number" in text and len(text.splitlines()) == 1
    mirror = "M" + take if not take.startswith("M") else take
    assert "the right arm" in (out / "texts" / f"{mirror}.txt").read_text()


def test_stratified_split_covers_every_label():
    rng = np.random.default_rng(0)
    contents, styles = [f"c{i}" for i in range(12)], [f"s{i}" for i in range(9)]
    labels = {f"t{i:04d}": (contents[rng.integers(12)], styles[rng.integers(9)]) for i in range(300)}
    labels.update({f"r{i}": ("rare", "s0") for i in range(3)})  # a content with just 3 takes
    splits = stratified_split(labels, seed=1)
    assert splits == stratified_split(labels, seed=1)
    assert missing_labels(splits, labels) is None
    assert sorted(sum(splits.values(), [])) == sorted(labels)
    sizes = Counter({s: len(v) for s, v in splits.items()})
    assert 220 <= sizes["train"] <= 250 and 25 <= sizes["val"] <= 40 and 25 <= sizes["test"] <= 40


def test_captions_labels_and_tokens():
    assert take_labels("x/dataset-1_walk-left_masculinity_007.bvh") == ("walk-left", "masculine")
    assert take_labels("walk.bvh") is None
    assert mirror_text("waves the left hand, turns right clockwise") == "waves the right hand, turns left counterclockwise"
    # any case, kept as found; every spelling of the turning sense; directions
    assert mirror_text("Right hand waves") == "Left hand waves" and mirror_text("LEFT arm up") == "RIGHT arm up"
    assert mirror_text("turns counter-clockwise, then Counterclockwise") == "turns clockwise, then Clockwise"
    assert mirror_text("spins anticlockwise and anti-clockwise") == "spins clockwise and clockwise"
    assert mirror_text("Clockwise, CLOCKWISE") == "Counterclockwise, COUNTERCLOCKWISE"
    assert mirror_text("steps leftward, drifts Rightwards") == "steps rightward, drifts Leftwards"
    assert mirror_text("walk-left; leftover bright copyright") == "walk-right; leftover bright copyright"
    captions = label_captions("wave-right-hand", "elderly", np.random.default_rng(0), count=4)
    assert len(set(captions)) == 4 and all("right hand" in c or "right arm" in c for c in captions)
    assert any(c.startswith(("an elderly", "an old")) for c in captions)
    assert caption_tokens("A person takes a bow.") == "a/DET person/NOUN take/VERB a/DET bow/NOUN"
    assert caption_tokens("someone bows angrily") == "someone/PRON bow/VERB angrily/ADV"
    assert caption_line("jumps # high") == "jumps high#jumps/OTHER high/OTHER#0.0#0.0"


def test_cli_help_and_bad_folder(tmp_path, capsys):
    proc = run_script("prepare_data.py", "--help", timeout=120)
    assert proc.returncode == 0 and "--bvh_dir" in proc.stdout and "--captions_csv" in proc.stdout
    assert prepare_data.main(["--bvh_dir", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    assert "BVH folder not found" in capsys.readouterr().err
