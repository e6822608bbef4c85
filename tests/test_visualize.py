"""visualize.py: the CLI in subprocesses (GIF/MP4/filmstrip from joints, features and bundles),
the notebook API, and bad input (exit code 2, one line on stderr, nothing written)."""
import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.animation import FuncAnimation
from PIL import Image

import utils
import visualize
from conftest import ROOT, random_motion_joints

KEY_RGB = np.array([int(visualize.KEYFRAME_COLOUR[i:i + 2], 16) for i in (1, 3, 5)])


def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "visualize.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def key_pixels(image: Image.Image) -> int:
    """Pixels drawn in the keyframe colour (markers and label of a highlighted frame)."""
    rgb = np.asarray(image.convert("RGB")).astype(int)
    return int((np.abs(rgb - KEY_RGB).sum(-1) < 40).sum())


@pytest.fixture(scope="module")
def joints():
    return random_motion_joints(24, seed=11).astype(np.float32)  # (24, 22, 3)


def test_cli_joints_to_gif(tmp_path, joints):
    src = tmp_path / "motion.npy"
    np.save(src, joints)
    result = run_cli(src)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "motion.gif"
    assert result.stdout.strip() == str(out)
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.n_frames == 24 and gif.size == (480, 480)
        gif.seek(12)
        assert len(np.unique(np.asarray(gif.convert("RGB")).reshape(-1, 3), axis=0)) > 5  # not blank


def test_cli_features_and_bundle_with_keyframes(tmp_path, joints):
    features = utils.joints_to_features(joints.astype(np.float64))  # (23, 263)
    np.save(tmp_path / "features.npy", features)
    result = run_cli(tmp_path / "features.npy", "--fps", 10, "--title", "features")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "features.gif") as gif:
        assert gif.n_frames == 23
        assert gif.info["duration"] == 100  # 10 fps

    motion = utils.features_to_joints(features)
    keyframe_idx = np.array([0, 5, 10, 15, 20, 22])
    np.savez(tmp_path / "bundle.npz", motion=motion, keyframes=motion[keyframe_idx],
             keyframe_idx=keyframe_idx, features=features, prompt=np.array("a person waves 👋 überall"),
             fps=np.array(20))
    result = run_cli(tmp_path / "bundle.npz", "--out", tmp_path / "bundle_anim.gif")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    with Image.open(tmp_path / "bundle_anim.gif") as gif:
        assert gif.n_frames == 23
        counts = []
        for frame in range(gif.n_frames):
            gif.seek(frame)
            counts.append(key_pixels(gif))
    # Keyframe frames carry joint markers and a label in the keyframe colour; others do not.
    assert min(counts[k] for k in keyframe_idx) > 100
    assert max(counts[f] for f in range(23) if f not in keyframe_idx) < 20


def test_cli_filmstrip_and_mp4(tmp_path, joints):
    src = tmp_path / "walk.npy"
    np.save(src, joints)
    result = run_cli(src, "--filmstrip")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "walk_filmstrip.png") as png:
        assert png.format == "PNG" and png.size[0] > 2 * png.size[1]
    assert not (tmp_path / "walk.gif").exists()
    if visualize._ffmpeg_exe() is None:
        pytest.skip("no ffmpeg (pip install imageio-ffmpeg) for the mp4 part")
    result = run_cli(src, "--format", "mp4")
    assert result.returncode == 0, result.stderr
    import imageio_ffmpeg
    num_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "walk.mp4"))
    assert num_frames == 24


def test_library_api(tmp_path, joints):
    batch = np.stack([joints, joints[::-1]])  # (2, 24, 22, 3): drawn side by side
    path = visualize.save_animation(batch, str(tmp_path / "batch.gif"), fps=20, title="two")
    with Image.open(path) as gif:
        assert gif.n_frames == 24
    np.save(tmp_path / "short.npy", joints[:12])
    anim = visualize.visualize_motion_file(str(tmp_path / "short.npy"), title="notebook")
    assert isinstance(anim, FuncAnimation)
    html = anim.to_jshtml()
    assert html.count("frames[") >= 12 and "<script" in html
    assert anim._repr_html_().startswith("\n<link") or "<script" in anim._repr_html_()


def test_cli_bad_input_one_line_exit_2(tmp_path, joints):
    np.save(tmp_path / "wrong.npy", np.zeros((10, 21, 3)))
    before = sorted(os.listdir(tmp_path))
    for args, message in [((tmp_path / "missing.npy",), "input file not found"),
                          ((tmp_path / "wrong.npy",), "has shape (10, 21, 3)")]:
        result = run_cli(*args)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("visualize.py: error: ")
        assert message in result.stderr and "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == before


def _bad_files(folder, joints):
    """(file name, expected message part) for every kind of bad input file."""
    nan = joints.copy()
    nan[3, 4, 1] = np.nan
    np.save(folder / "nan.npy", nan)
    np.save(folder / "width100.npy", np.zeros((10, 100), dtype=np.float32))
    np.save(folder / "empty.npy", np.zeros((0, 22, 3), dtype=np.float32))
    np.save(folder / "text.npy", np.array(["a", "b"]))
    np.save(folder / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (folder / "corrupt.npy").write_bytes(b"\x93NUMPY garbage " * 8)
    good = folder / "good.npy"
    np.save(good, joints)
    (folder / "truncated.npy").write_bytes(good.read_bytes()[:300])
    np.savez(folder / "nomotion.npz", other=np.zeros(3))
    np.savez(folder / "badidx.npz", motion=joints, keyframe_idx=np.array([0, 30]))
    np.savez(folder / "unsorted.npz", motion=joints, keyframe_idx=np.array([5, 2]))
    np.savez(folder / "kfshape.npz", motion=joints, keyframe_idx=np.array([0, 5]), keyframes=joints[:3])
    return [("nan.npy", "NaN"), ("width100.npy", "has shape (10, 100)"), ("empty.npy", "no frames"),
            ("text.npy", "must hold numbers"), ("objects.npy", "pickled objects are never loaded"),
            ("corrupt.npy", "not a valid NumPy"), ("truncated.npy", "not a valid NumPy"),
            ("nomotion.npz", "holds no 'motion'"), ("badidx.npz", "must lie in [0, 23]"),
            ("unsorted.npz", "strictly increasing"), ("kfshape.npz", "keyframes have shape")]


def test_bad_input_table(tmp_path, joints, capsys):
    cases = [((name,), message) for name, message in _bad_files(tmp_path, joints)]
    cases += [
        (("good.npy", "--format", "avi"), "invalid choice: 'avi'"),
        (("good.npy", "--out", "good.avi"), "unknown output format '.avi'"),
        (("good.npy", "--out", "good.gif", "--format", "mp4"), "does not end in .mp4"),
        (("good.npy", "--out", "no_such_folder/x.gif"), "output folder does not exist"),
        (("good.npy", "--fps", "0"), "fps must be an integer"),
        (("good.npy", "--fps", "fast"), "invalid int value"),
        (("good.npy", "--filmstrip", "--format", "gif"), "--filmstrip always writes a PNG"),
        ((".",), "input is a folder"),
    ]
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for args, message in cases:
            with pytest.raises(SystemExit) as exit_info:
                visualize.main(list(args))
            err = capsys.readouterr().err
            assert exit_info.value.code == 2, args
            assert err.startswith("visualize.py: error: ") and err.count("\n") == 1, (args, err)
            assert message in err, (args, err)
    finally:
        os.chdir(cwd)
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


def test_library_raises_value_error_and_keeps_existing_output(tmp_path, joints):
    out = tmp_path / "keep.gif"
    out.write_bytes(b"old")
    with pytest.raises(ValueError, match="NaN"):
        visualize.save_animation(np.full((5, 22, 3), np.nan), str(out))
    with pytest.raises(ValueError, match="keyframe_idx must lie"):
        visualize.save_animation(joints, str(out), keyframe_idx=np.array([0, 99]))
    with pytest.raises(ValueError, match="input file not found"):
        visualize.visualize_motion_file(str(tmp_path / "missing.npz"))
    assert out.read_bytes() == b"old" and os.listdir(tmp_path) == ["keep.gif"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_unwritable_folder(tmp_path, joints):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="not writable"):
            visualize.save_animation(joints, str(folder / "x.gif"))
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o700)
