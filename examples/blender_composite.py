"""A Blender add-on for this project's motions: import a generated .bvh or .npz at its own frame
rate and frame range in one click, or generate one from a prompt through the local HTTP API
(`python app.py`, POST http://127.0.0.1:8081/generate).

Install: Blender > Edit > Preferences > Add-ons > Install... > this file, tick "Composite motion".
Then File > Import > Composite motion (.bvh, .npz), or the "Composite" tab of the 3D view's
sidebar (N): prompt, seconds, API port, Generate. Tested with Blender 3.4 (Debian's package).

What it does for you, compared with File > Import > Motion Capture (.bvh):
- sets the scene's frame rate to the file's (Blender's importer keeps 24 fps unless 'Update
  Scene FPS' is ticked, so a 20 fps motion would play 1.2x too fast);
- sets the scene's range to frames 1..N, the motion's own frames ('Update Scene Duration'
  extends it to N + 1), so File > Export > Motion Capture (.bvh) writes exactly the motion;
- .npz (generate.py --format npz): one empty per SMPL joint, keyframed, Z up;
- works around Blender 3.4's BVH importer opening files in mode 'rU', which Python 3.11 removed.

The functions above the Blender part need only the standard library (no numpy: some Blender
builds, Debian's among them, lack it), so they and the request this add-on sends can be checked
without Blender (tests/test_blender_example.py).
"""
import json
import os
import tempfile
import urllib.error
import urllib.request

try:
    import bpy
    from bpy.props import FloatProperty, IntProperty, StringProperty
    from bpy_extras.io_utils import ImportHelper
except ImportError:  # outside Blender: only the helpers below are usable
    bpy = None

bl_info = {
    "name": "Composite motion",
    "author": "composite text-to-motion project",
    "version": (1, 0, 0),
    "blender": (3, 4, 0),
    "location": "File > Import > Composite motion; 3D View > Sidebar > Composite",
    "description": "Import generated motions at their frame rate and range; generate from a prompt",
    "category": "Import-Export",
}

JOINT_NAMES = ["pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
               "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
               "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist"]
DEFAULT_PORT = 8081


def generate_request(prompt: str, seconds: float, port: int = DEFAULT_PORT) -> urllib.request.Request:
    """The POST /generate request for a BVH of `prompt` lasting `seconds` (app.py's API)."""
    prompt = prompt.strip()
    if not prompt:
        raise ValueError("type a prompt first, e.g. 'a person walks forward'")
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    body = json.dumps({"prompt": prompt, "seconds": float(seconds), "format": "bvh"}).encode()
    return urllib.request.Request(f"http://127.0.0.1:{int(port)}/generate", data=body, method="POST",
                                  headers={"Content-Type": "application/json"})


def fetch_bvh(prompt: str, seconds: float, port: int = DEFAULT_PORT, timeout: float = 600) -> str:
    """Ask the local API for a motion; returns the BVH text, or raises ValueError with its reason."""
    try:
        with urllib.request.urlopen(generate_request(prompt, seconds, port), timeout=timeout) as answer:
            return answer.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read().decode()).get("error", exc.reason)
        except ValueError:
            reason = exc.reason
        raise ValueError(f"the motion API answered {exc.code}: {reason}") from None
    except OSError as exc:
        raise ValueError(f"no motion API on port {port} ({exc}); start it with: python app.py") from None


def bvh_frames(text: str) -> tuple:
    """(frame count, frames per second) from a BVH file's MOTION header."""
    head = text.split("MOTION", 1)[1].split("\n", 3)
    frames = int(next(line for line in head if line.strip().startswith("Frames:")).split(":")[1])
    frame_time = float(next(line for line in head if line.strip().startswith("Frame Time:")).split(":")[1])
    return frames, 1.0 / frame_time


def read_npy(data: bytes) -> tuple:
    """(flat values, shape) of a little-endian float32/float64/int64 .npy file (no numpy needed:
    Blender builds without it exist, Debian's among them)."""
    import ast
    import struct
    if data[:6] != b"\x93NUMPY":
        raise ValueError("not a .npy array")
    header_len = struct.unpack("<H", data[8:10])[0] if data[6] == 1 else struct.unpack("<I", data[8:12])[0]
    start = 10 if data[6] == 1 else 12
    header = ast.literal_eval(data[start:start + header_len].decode("latin1"))
    code = {"<f4": "f", "<f8": "d", "<i8": "q", "<i4": "i"}.get(header["descr"])
    if code is None or header["fortran_order"]:
        raise ValueError(f"unsupported array type {header['descr']}")
    count = 1
    for size in header["shape"]:
        count *= size
    values = struct.unpack(f"<{count}{code}", data[start + header_len:start + header_len + count * struct.calcsize(code)])
    return values, tuple(header["shape"])


def read_npz_motion(path: str) -> tuple:
    """(joints [T][22][3] in metres, y up; frames per second) of a generate.py .npz file."""
    import zipfile
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if "motion.npy" not in names:
            raise ValueError(f"{path} holds no 'motion' array (expected a generate.py --format npz file)")
        values, shape = read_npy(archive.read("motion.npy"))
        fps = read_npy(archive.read("fps.npy"))[0][0] if "fps.npy" in names else 20
    if len(shape) != 3 or shape[1:] != (22, 3):
        raise ValueError(f"{path}: 'motion' has shape {shape}; expected (T, 22, 3)")
    joints = [[values[(t * 22 + j) * 3:(t * 22 + j) * 3 + 3] for j in range(22)] for t in range(shape[0])]
    return joints, float(fps)


def z_up(position) -> tuple:
    """A point in this project's frame (y up, facing +z) in Blender's (z up, facing -y)."""
    x, y, z = position
    return (x, -z, y)


# ---------------------------------------------------------------------------------------------
# Blender
# ---------------------------------------------------------------------------------------------
def _set_scene_timing(scene, frames: int, fps: float) -> None:
    scene.render.fps = int(round(fps))
    scene.render.fps_base = scene.render.fps / fps
    scene.frame_start, scene.frame_end = 1, frames
    scene.frame_set(1)


def import_bvh_file(context, path: str) -> None:
    """Blender's BVH importer with the scene's rate and range set to the file's."""
    import builtins

    import io_anim_bvh.import_bvh as blender_bvh

    def open_without_u(file, mode="r", *args, **kwargs):  # Blender 3.4 asks for the removed 'rU'
        return builtins.open(file, mode.replace("U", ""), *args, **kwargs)
    blender_bvh.open = open_without_u
    with open(path) as fh:
        frames, fps = bvh_frames(fh.read())
    bpy.ops.import_anim.bvh(filepath=path, update_scene_fps=True, update_scene_duration=True)
    _set_scene_timing(context.scene, frames, fps)


def import_npz_file(context, path: str) -> None:
    """One keyframed sphere empty per SMPL joint under an empty named after the file."""
    joints, fps = read_npz_motion(path)
    parent = bpy.data.objects.new(os.path.splitext(os.path.basename(path))[0], None)
    context.collection.objects.link(parent)
    for j, name in enumerate(JOINT_NAMES):
        empty = bpy.data.objects.new(name, None)
        empty.empty_display_type, empty.empty_display_size, empty.parent = "SPHERE", 0.03, parent
        context.collection.objects.link(empty)
        for frame, pose in enumerate(joints):
            empty.location = z_up(pose[j])
            empty.keyframe_insert("location", frame=frame + 1)
    _set_scene_timing(context.scene, len(joints), fps)


if bpy is not None:
    class IMPORT_OT_composite_motion(bpy.types.Operator, ImportHelper):
        """Import a generated motion (.bvh or .npz) at its frame rate and frame range"""
        bl_idname = "import_anim.composite_motion"
        bl_label = "Import Composite motion"
        filter_glob: StringProperty(default="*.bvh;*.npz", options={"HIDDEN"})

        def execute(self, context):
            try:
                (import_npz_file if self.filepath.lower().endswith(".npz") else import_bvh_file)(context, self.filepath)
            except (OSError, ValueError, KeyError) as exc:
                self.report({"ERROR"}, f"cannot import {self.filepath}: {exc}")
                return {"CANCELLED"}
            return {"FINISHED"}

    class COMPOSITE_OT_generate(bpy.types.Operator):
        """Generate a motion from the prompt with the local API (python app.py) and import it"""
        bl_idname = "composite.generate"
        bl_label = "Generate"

        def execute(self, context):
            scene = context.scene
            try:
                text = fetch_bvh(scene.composite_prompt, scene.composite_seconds, scene.composite_port)
            except ValueError as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            path = os.path.join(bpy.app.tempdir or tempfile.gettempdir(), "composite_generated.bvh")
            with open(path, "w") as fh:
                fh.write(text)
            import_bvh_file(context, path)
            return {"FINISHED"}

    class VIEW3D_PT_composite(bpy.types.Panel):
        bl_space_type, bl_region_type, bl_category, bl_label = "VIEW_3D", "UI", "Composite", "Composite motion"

        def draw(self, context):
            for prop in ("composite_prompt", "composite_seconds", "composite_port"):
                self.layout.prop(context.scene, prop)
            self.layout.operator(COMPOSITE_OT_generate.bl_idname)
            self.layout.operator(IMPORT_OT_composite_motion.bl_idname, text="Import .bvh / .npz")

    def _menu(self, context):
        self.layout.operator(IMPORT_OT_composite_motion.bl_idname, text="Composite motion (.bvh, .npz)")

    _CLASSES = (IMPORT_OT_composite_motion, COMPOSITE_OT_generate, VIEW3D_PT_composite)

    def register():
        for cls in _CLASSES:
            bpy.utils.register_class(cls)
        bpy.types.TOPBAR_MT_file_import.append(_menu)
        bpy.types.Scene.composite_prompt = StringProperty(name="Prompt", default="a person walks forward")
        bpy.types.Scene.composite_seconds = FloatProperty(name="Seconds", default=4.0, min=0.5, max=60.0)
        bpy.types.Scene.composite_port = IntProperty(name="API port", default=DEFAULT_PORT, min=1, max=65535)

    def unregister():
        bpy.types.TOPBAR_MT_file_import.remove(_menu)
        for cls in reversed(_CLASSES):
            bpy.utils.unregister_class(cls)
        for prop in ("composite_prompt", "composite_seconds", "composite_port"):
            delattr(bpy.types.Scene, prop)


if __name__ == "__main__" and bpy is not None:  # run from Blender's text editor: register for this session
    register()
