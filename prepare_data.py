"""Build a data set in the HumanML3D layout from a folder of BVH files (e.g. the Bandai Namco
Research motion data sets), for `train.py --dataset_root OUT --dataset_kind humanml3d`.

    python prepare_data.py --bvh_dir dataset/bandai_raw --out dataset/bandai

OUT gets:
    joints/<take>.npy          (T, 22, 3) canonical joints at --fps (the import cache)
    new_joints/<id>.npy        (T-1, 22, 3) joints recovered from the features (HumanML3D's)
    new_joint_vecs/<id>.npy    (T-1, 263) features
    texts/<id>.txt             captions, `caption#lemma/POS ...#0.0#0.0` one a line
    train.txt val.txt test.txt motion ids (a take's mirror image is 'M' + its id)
    Mean.npy Std.npy           feature statistics of the train split (mirrors included)
    labels.json                {id: {"action": content, "content", "style", "take", "file", "mirrored"}}
    prepare.json               settings and counts of the build

Takes are imported with bvh.import_bvh (rig by joint names or --rig), labelled from their file
names (`<set>_<content>_<style>_<number>.bvh`) and captioned from the labels, unless
--captions_csv gives `file,caption` rows. Filters, in order: broken files (one counted
warning), takes shorter than --min_length frames, takes with neither captions nor labels, and
takes whose content or style has fewer than --min_label_takes takes (a label needs 3 to be in
every split). Splits are by take, stratified by (content, style), every label in every split
(motion_io.splits). Re-running reuses finished takes (joints/ and the motion files) as long as
--fps and --rig are unchanged, and rebuilds everything else deterministically.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Literal, Optional, Union

import numpy as np

from bvh import import_bvh
from config import HelpFormatter, OneLineParser
from motion_io.captions import caption_line, label_captions, mirror_text, read_captions_csv, take_labels
from motion_io.retarget import mirror_joints
from motion_io.splits import SPLITS, missing_labels, stratified_split
from runtime import run_tasks
from utils import feature_mean_std, features_to_joints, joints_to_features

FORMAT_VERSION = 2  # 2: floor from the feet (import_bvh), features keep it; older caches are rebuilt
LAYOUT = {"joints", "new_joints", "new_joint_vecs", "texts", "train.txt", "val.txt", "test.txt",
          "Mean.npy", "Std.npy", "labels.json", "prepare.json"}
MOTION_FOLDERS = ("new_joints", "new_joint_vecs", "texts")


def find_takes(bvh_dir: str) -> dict:
    """{take id: BVH path} of every .bvh under bvh_dir (sorted); the id is the file's stem, or its
    relative path with '__' for '/' where two stems clash."""
    if not os.path.isdir(bvh_dir):
        raise ValueError(f"BVH folder not found: {bvh_dir}")
    paths = sorted(os.path.join(folder, name) for folder, _, names in os.walk(bvh_dir)
                   for name in names if name.lower().endswith(".bvh"))
    if not paths:
        raise ValueError(f"no .bvh files under {bvh_dir}")
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    takes = {}
    for path, stem in zip(paths, stems):
        if stems.count(stem) > 1:
            stem = os.path.splitext(os.path.relpath(path, bvh_dir))[0].replace(os.sep, "__")
        takes[stem] = path
    clash = sorted(t for t in takes if t.startswith("M") and t[1:] in takes)
    if clash:
        raise ValueError(f"take ids {clash[0]} and {clash[0][1:]} clash with the mirror ids ('M' + id); rename one")
    return takes


def save_npy(path: str, array: np.ndarray) -> None:
    """np.save through a temp file and a rename, so a killed run leaves no half-written file."""
    tmp = f"{path}.tmp-{os.getpid()}.npy"
    np.save(tmp, array)
    os.replace(tmp, path)


def _import_take(task: tuple) -> tuple:
    """Worker: import one BVH into joints/<take>.npy; returns (take, frames or None, error)."""
    take, path, out, rig, fps, rig_template = task
    try:
        joints = import_bvh(path, rig=rig, fps=fps, rig_template=rig_template).joints
    except Exception as exc:  # noqa: BLE001 - any failure of one file makes it a counted broken take
        return take, None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    save_npy(os.path.join(out, "joints", f"{take}.npy"), joints.astype(np.float32))
    return take, len(joints), ""


def _write_motion(task: tuple) -> str:
    """Worker: features and recovered joints of one motion id (a take or its mirror 'M' + take)."""
    motion_id, take, out = task
    joints = np.load(os.path.join(out, "joints", f"{take}.npy")).astype(np.float64)
    if motion_id != take:
        joints = mirror_joints(joints)
    features = joints_to_features(joints, refloor=False)  # keep import_bvh's floor (from the feet)
    save_npy(os.path.join(out, "new_joints", f"{motion_id}.npy"), features_to_joints(features).astype(np.float32))
    save_npy(os.path.join(out, "new_joint_vecs", f"{motion_id}.npy"), features)
    return motion_id


def _check_out(out: str, settings: dict, rebuild: bool) -> None:
    """Create OUT, refuse a foreign non-empty folder, and drop caches built with other settings."""
    info_path = os.path.join(out, "prepare.json")
    if os.path.isdir(out) and not os.path.exists(info_path):
        foreign = sorted(n for n in os.listdir(out) if n not in LAYOUT and not n.startswith("text_emb_"))
        if foreign:
            raise ValueError(f"{out} exists and is not a prepared data set (it holds {foreign[:3]}); "
                             "remove it or pass another --out")
    old = None
    if os.path.exists(info_path):
        try:
            with open(info_path) as fh:
                old = json.load(fh).get("settings")
        except (OSError, ValueError, AttributeError):
            old = {}  # unreadable: rebuild the caches
    if rebuild or (old is not None and old != settings):
        for name in ("joints",) + MOTION_FOLDERS:
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)
    for name in ("joints",) + MOTION_FOLDERS:
        os.makedirs(os.path.join(out, name), exist_ok=True)


def import_takes(takes: dict, out: str, rig, fps: float, workers: int, progress: bool,
                 rig_template: Optional[str] = None) -> tuple[dict, dict]:
    """({take: frames} of imported takes, {take: error} of broken ones); reuses joints/."""
    frames, broken, todo = {}, {}, []
    for take, path in takes.items():
        cached = os.path.join(out, "joints", f"{take}.npy")
        if os.path.exists(cached):
            frames[take] = np.load(cached, mmap_mode="r").shape[0]
        else:
            todo.append((take, path, out, rig, fps, rig_template))
    for take, count, error in run_tasks(_import_take, todo, workers, "importing BVH", progress, unit="take"):
        if error:
            broken[take] = error
        else:
            frames[take] = count
    return frames, broken


def take_captions(takes: dict, labels: dict, csv_captions: dict, count: int, seed: int) -> dict:
    """{take: captions}: the CSV's rows for the take's file, else sentences from its labels."""
    captions = {}
    for take, path in takes.items():
        keys = (path, os.path.basename(path), take)
        rows = next((csv_captions[k] for k in keys if k in csv_captions), None)
        if rows:
            captions[take] = rows
        elif labels.get(take):
            rng = np.random.default_rng([seed, zlib.crc32(take.encode())])
            captions[take] = label_captions(*labels[take], rng, count)
    return captions


def apply_filters(frames: dict, labels: dict, captions: dict, min_length: int, min_label_takes: int
                  ) -> tuple[list, dict]:
    """(kept takes, {filter: dropped count}) after the length, caption and rare-label filters."""
    dropped = {}
    kept = [t for t in frames if frames[t] - 1 >= min_length]
    dropped[f"shorter than {min_length} frames"] = len(frames) - len(kept)
    with_caption = [t for t in kept if captions.get(t)]
    dropped["no captions or labels"] = len(kept) - len(with_caption)
    counts: dict = {}
    for take in with_caption:
        for family, label in enumerate(labels.get(take) or ()):
            counts[(family, label)] = counts.get((family, label), 0) + 1
    common = [t for t in with_caption
              if all(counts[(f, lab)] >= min_label_takes for f, lab in enumerate(labels.get(t) or ()))]
    dropped[f"label with fewer than {min_label_takes} takes"] = len(with_caption) - len(common)
    return sorted(common), dropped


def motion_listing(splits: dict, mirror: str) -> dict:
    """{split: motion ids}: the takes, plus their mirrors 'M' + id in the mirrored splits."""
    mirrored = {"train": ("train",), "all": SPLITS, "none": ()}[mirror]
    return {s: sorted(takes + (["M" + t for t in takes] if s in mirrored else [])) for s, takes in splits.items()}


def write_layout(out: str, listing: dict, takes: dict, labels: dict, captions: dict, bvh_dir: str) -> int:
    """texts/, split files, Mean/Std of the train split and labels.json; returns the caption count.
    Motion files of ids outside the listing are removed."""
    wanted = {m for ids in listing.values() for m in ids}
    for folder in MOTION_FOLDERS:
        for name in os.listdir(os.path.join(out, folder)):
            if os.path.splitext(name)[0] not in wanted:
                os.remove(os.path.join(out, folder, name))
    num_captions, label_json = 0, {}
    for motion_id in sorted(wanted):
        take = motion_id if motion_id in takes else motion_id[1:]
        flip = (lambda s: mirror_text(s)) if motion_id != take else (lambda s: s)
        lines = [caption_line(flip(c)) for c in captions[take]]
        num_captions += len(lines)
        with open(os.path.join(out, "texts", f"{motion_id}.txt"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        if labels.get(take):
            content, style = labels[take]
            label_json[motion_id] = {"action": flip(content), "content": flip(content), "style": style,
                                     "take": take, "file": os.path.relpath(takes[take], bvh_dir),
                                     "mirrored": motion_id != take}
    for split, ids in listing.items():
        with open(os.path.join(out, f"{split}.txt"), "w") as fh:
            fh.write("\n".join(ids) + "\n")
    mean, std = feature_mean_std([np.load(os.path.join(out, "new_joint_vecs", f"{m}.npy")) for m in listing["train"]])
    save_npy(os.path.join(out, "Mean.npy"), mean)
    save_npy(os.path.join(out, "Std.npy"), std)
    with open(os.path.join(out, "labels.json"), "w") as fh:
        json.dump(label_json, fh, indent=0, sort_keys=True)
    return num_captions


@dataclass
class PrepareOptions:
    """How prepare_dataset builds a data set (the command line's options; see main's --help)."""
    rig: Union[None, str, dict] = None  # rig profile name, JSON mapping file or dict; None: chosen by joint names
    fps: float = 20
    min_length: int = 24  # shortest motion kept, in feature frames at fps
    captions_csv: Optional[str] = None  # `file,caption` rows that replace the label captions
    num_captions: int = 4  # captions made per take from its labels
    mirror: Literal["train", "all", "none"] = "train"  # splits that get each take's mirror image
    fractions: tuple = (0.8, 0.1, 0.1)  # train, val, test shares of the takes
    min_label_takes: int = 3  # drop takes whose content or style has fewer takes
    seed: int = 0
    workers: int = 0  # processes (0: up to 2)
    rebuild: bool = False  # re-import every take instead of reusing OUT
    progress: bool = True
    rig_template: Optional[str] = None  # where a take of an unknown rig writes a mapping template to fill in

    def check(self) -> None:
        if self.mirror not in ("train", "all", "none"):
            raise ValueError(f"mirror must be train, all or none, got {self.mirror!r}")
        if self.min_length < 2 or self.num_captions < 1:
            raise ValueError(f"min_length must be >= 2 and num_captions >= 1, got {self.min_length} and "
                             f"{self.num_captions}")


def prepare_dataset(bvh_dir: str, out: str, options: Optional[PrepareOptions] = None) -> dict:
    """Build the data set (see the module docstring); returns the summary also saved in
    OUT/prepare.json (counts per filter and split, captions, seconds of motion, build time)."""
    start = time.time()
    opts = options or PrepareOptions()
    opts.check()
    rig, fps, min_length, seed, progress = opts.rig, opts.fps, opts.min_length, opts.seed, opts.progress
    takes = find_takes(bvh_dir)
    out = os.path.abspath(out)
    settings = {"format": FORMAT_VERSION, "bvh_dir": os.path.abspath(bvh_dir), "fps": fps,
                "rig": rig if rig is None or isinstance(rig, str) else repr(rig)}
    _check_out(out, settings, opts.rebuild)
    workers = opts.workers if opts.workers > 0 else min(2, os.cpu_count() or 1)
    frames, broken = import_takes(takes, out, rig, fps, workers, progress, opts.rig_template)
    if broken:
        first = next(iter(broken))
        print(f"warning: skipped {len(broken)} broken BVH file(s) of {len(takes)} (first: {takes[first]}: "
              f"{broken[first]})", file=sys.stderr)
    labels = {t: take_labels(p) for t, p in takes.items()}
    csv_captions = read_captions_csv(opts.captions_csv) if opts.captions_csv else {}
    captions = take_captions(takes, labels, csv_captions, opts.num_captions, seed)
    kept, dropped = apply_filters(frames, labels, captions, min_length, opts.min_label_takes)
    if len(kept) < len(SPLITS):
        raise ValueError(f"only {len(kept)} usable takes in {bvh_dir} (dropped: {dropped}); need at least 3")
    split_labels = {t: labels[t] or ("unlabelled", "unlabelled") for t in kept}
    splits = stratified_split(split_labels, opts.fractions, seed)
    gaps = missing_labels(splits, split_labels, min_takes=len(SPLITS))
    if gaps:
        print(f"warning: some labels are not in every split: {gaps}", file=sys.stderr)
    listing = motion_listing(splits, opts.mirror)
    todo = [(m, m if m in takes else m[1:], out) for m in sorted({m for ids in listing.values() for m in ids})
            if not all(os.path.exists(os.path.join(out, f, f"{m}.npy")) for f in ("new_joints", "new_joint_vecs"))]
    run_tasks(_write_motion, todo, workers, "features", progress, unit="motion")
    num_captions_written = write_layout(out, listing, takes, labels, captions, bvh_dir)
    seconds = sum((frames[t] - 1) / fps for t in kept)
    summary = {"takes found": len(takes), "broken": len(broken), **{f"dropped: {k}": v for k, v in dropped.items()},
               "takes kept": len(kept), **{f"{s} takes": len(splits[s]) for s in SPLITS},
               **{f"{s} motions": len(listing[s]) for s in SPLITS},
               "contents": len({split_labels[t][0] for t in kept}), "styles": len({split_labels[t][1] for t in kept}),
               "captions": num_captions_written, "minutes of motion (takes)": round(seconds / 60, 1),
               "seconds to build": round(time.time() - start, 1)}
    with open(os.path.join(out, "prepare.json"), "w") as fh:
        json.dump({"settings": settings, "min_length": min_length, "mirror": opts.mirror, "summary": summary,
                   "broken": {takes[t]: e for t, e in broken.items()}}, fh, indent=1)
    return summary


def make_cli_parser() -> OneLineParser:
    """prepare_data.py's options (one-line errors that suggest the nearest option)."""
    parser = OneLineParser(
        prog="prepare_data.py", formatter_class=HelpFormatter,
        description="Build a data set in the HumanML3D layout (new_joints/, new_joint_vecs/, texts/, "
                    "train/val/test.txt, Mean/Std.npy, labels.json) from a folder of BVH files.",
        epilog="Train on it with: python train.py --dataset_root OUT (its prepare.json gives the loader "
               "MIN_LENGTH)")
    parser.add_argument("--bvh_dir", required=True, help="folder searched recursively for .bvh files")
    parser.add_argument("--out", required=True, help="output folder (e.g. dataset/bandai)")
    parser.add_argument("--rig", default=None, help="rig profile (bandai, cmu, project) or a JSON mapping file; "
                        "default: a built-in profile by the files' joint names, else the name matcher "
                        "(Mixamo, Biovision, MakeHuman, DAZ, Unreal, ...)")
    parser.add_argument("--write_rig_template", default=None, metavar="FILE",
                        help="if a file's rig is not recognised, write a JSON mapping template listing its "
                        "joints to FILE (fill it in, then pass --rig FILE)")
    parser.add_argument("--fps", type=float, default=20, help="frame rate of the data set")
    parser.add_argument("--min_length", type=int, default=24,
                        help="shortest motion kept, in feature frames at --fps (the loader's --min_motion_length; "
                        "HumanML3D: 40, which would drop 118 of the 1,294 Bandai takes, 24 drops 10)")
    parser.add_argument("--captions_csv", default=None, help="CSV of `file,caption` rows that replace the "
                        "captions made from the file names' labels")
    parser.add_argument("--num_captions", type=int, default=4, help="captions made per take from its labels")
    parser.add_argument("--mirror", choices=["train", "all", "none"], default="train",
                        help="splits that get the left/right mirror image of each take ('M' + id)")
    parser.add_argument("--split", default="0.8,0.1,0.1", help="train,val,test fractions of the takes")
    parser.add_argument("--min_label_takes", type=int, default=3,
                        help="drop takes whose content or style has fewer takes (3: every label in every split)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the caption choice")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: up to 2)")
    parser.add_argument("--rebuild", action="store_true", help="re-import every take instead of reusing OUT")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv=None) -> int:
    args = make_cli_parser().parse_args(argv)
    try:
        fractions = tuple(float(f) for f in args.split.split(","))
        options = PrepareOptions(args.rig, args.fps, args.min_length, args.captions_csv, args.num_captions,
                                 args.mirror, fractions, args.min_label_takes, args.seed, args.workers,
                                 args.rebuild, progress=not args.quiet, rig_template=args.write_rig_template)
        summary = prepare_dataset(args.bvh_dir, args.out, options)
    except ValueError as exc:
        print(f"prepare_data.py: error: {exc}", file=sys.stderr)
        return 2
    width = max(len(k) for k in summary)
    print(f"prepared {args.out}:")
    for key, value in summary.items():
        print(f"  {key:<{width}}  {value}")
    print(f"train: python train.py --dataset_kind humanml3d --dataset_root {args.out} "
          f"--min_motion_length {args.min_length}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
