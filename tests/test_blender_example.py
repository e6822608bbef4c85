"""examples/blender_composite.py: the request it sends to the local API and its helpers without
Blender; with Blender installed, its one-click import of a .bvh and an .npz (frame rate, range)."""
import importlib.util
import json
import py_compile
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import bvh

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "blender_composite.py"
WALK = ROOT / "tests" / "fixtures" / "project_walk.bvh"  # 41 frames at 20 fps


def _example():
    spec = importlib.util.spec_from_file_location("blender_composite", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_compiles_and_builds_the_api_request():
    py_compile.compile(str(EXAMPLE), doraise=True)
    example = _example()
    assert example.bpy is None and example.bl_info["blender"] == (3, 4, 0)
    request = example.generate_request("  a person waves  ", 3, port=9001)
    assert (request.full_url, request.get_method()) == ("http://127.0.0.1:9001/generate", "POST")
    assert request.get_header("Content-type") == "application/json"
    assert json.loads(request.data) == {"prompt": "a person waves", "seconds": 3.0, "format": "bvh"}
    with pytest.raises(ValueError, match="type a prompt"):
        example.generate_request(" ", 3)
    with pytest.raises(ValueError, match="no motion API on port 1"):
        example.fetch_bvh("a person walks", 2, port=1, timeout=5)  # nothing listens on port 1


def test_example_helpers(tmp_path):
    example = _example()
    assert example.bvh_frames(WALK.read_text()) == (41, 20.0)
    assert example.z_up((0.1, 0.9, 0.3)) == (0.1, -0.3, 0.9)  # y up facing +z -> z up facing -y
    assert example.JOINT_NAMES == __import__("utils").JOINT_NAMES
    joints = np.random.default_rng(0).normal(size=(7, 22, 3)).astype(np.float32)
    for fps in (np.array(20), np.array(30.0)):  # generate.py writes an int; float64 read too
        np.savez(tmp_path / "m.npz", motion=joints, fps=fps, prompt=np.array("a person walks"))
        read, rate = example.read_npz_motion(str(tmp_path / "m.npz"))
        np.testing.assert_array_equal(np.array(read), joints)
        assert rate == float(fps)
    np.savez(tmp_path / "bad.npz", motion=joints[:, :21])
    with pytest.raises(ValueError, match=r"expected \(T, 22, 3\)"):
        example.read_npz_motion(str(tmp_path / "bad.npz"))


@pytest.mark.skipif(shutil.which("blender") is None, reason="Blender is not installed")
def test_one_click_import_in_blender(tmp_path):
    npz = tmp_path / "walk.npz"
    np.savez(npz, motion=bvh.read_bvh_joints(str(WALK)).astype(np.float32), fps=np.array(20))
    script = tmp_path / "run.py"
    script.write_text(f"""
import importlib.util, json, bpy
spec = importlib.util.spec_from_file_location("blender_composite", {str(EXAMPLE)!r})
addon = importlib.util.module_from_spec(spec); spec.loader.exec_module(addon); addon.register()
scene = bpy.context.scene
out = {{"before": [scene.render.fps, scene.frame_start, scene.frame_end]}}
for path in ({str(WALK)!r}, {str(npz)!r}):
    bpy.ops.import_anim.composite_motion(filepath=path)
    out[path[-3:]] = [scene.render.fps / scene.render.fps_base, scene.frame_start, scene.frame_end]
head = bpy.data.objects["head"]
scene.frame_set(41)
out["head_z"] = head.matrix_world.translation.z
print("RESULT " + json.dumps(out))
""")
    run = subprocess.run(["blender", "-b", "--factory-startup", "--python", str(script)], capture_output=True,
                         text=True, timeout=300)
    line = next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert result["before"] == [24, 1, 250]  # Blender's defaults
    assert result["bvh"] == [20.0, 1, 41] and result["npz"] == [20.0, 1, 41]
    assert result["head_z"] == pytest.approx(bvh.read_bvh_joints(str(WALK))[40, 15, 1], abs=1e-4)  # y up -> z up
