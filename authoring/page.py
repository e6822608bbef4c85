"""The motion-authoring page: a viser server whose every browser tab is its own session.

A tab holds a timeline of prompts with durations, sampling settings (seed, samples, foot
cleanup), pinned poses, a root path and joint (end-effector) targets; Generate queues the tab's request on the one
generation worker (authoring/jobs.py) and the tab shows where it is. The result plays in a 3D
view (skeleton on a floor grid, play/pause, frame slider, speed, sample switch, the current
segment's text) and exports as BVH, SMPL .npz, the .npy/.npz bundle or a GIF; the session
saves and loads as one JSON file in the HTTP API's request schema (authoring/session.py).
"""
from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import wait
from contextlib import contextmanager
from typing import Optional

import numpy as np
import viser
import websockets.asyncio.server

from authoring.api import trusted_names
from authoring.jobs import Job, MotionService, QueueFull, encode_motions, has_cleanup
from authoring.scene import TabScene, floor_hit
from authoring.session import (MAX_PINS, MAX_SAMPLES, MAX_SEGMENTS, JointTarget, MotionRequest, RequestError,
                               decode_body, parse_request, split_then)
from utils import JOINT_NAMES

DEFAULT_SEGMENT = ("a person walks forward", 3.0)
SPEEDS = ("0.25", "0.5", "1", "2")
EXPORTS = {"BVH": ("bvh", "motion.bvh"), "SMPL .npz": ("smpl", "motion_smpl.npz"),
           "npy + npz bundle": ("bundle", "motion_bundle.zip"), "GIF": ("gif", "motion.gif"),
           "MP4": ("mp4", "motion.mp4")}
TARGET_AXES = ("xyz", "y", "xz")  # the page's joint-target choices (the API takes any subset of "xyz")
POLL_S = 0.05  # how often a tab looks at its queued job


@contextmanager
def websocket_origins(host: str):
    """Make the websocket server viser starts inside this block accept only connections whose
    Origin is a loopback address (or host) or absent (non-browser clients): viser's own accepts
    any, so a web page the user visits could otherwise drive a tab. (viser starts its server
    before its constructor returns; it looks websockets' `serve` up when it calls it.)"""
    allowed = [None, re.compile(r"http://(%s):\d+" % "|".join(map(re.escape, trusted_names(host))))]
    original = websockets.asyncio.server.serve

    def serve(*args, **kwargs):
        kwargs.setdefault("origins", allowed)
        return original(*args, **kwargs)

    websockets.asyncio.server.serve = serve
    try:
        yield
    finally:
        websockets.asyncio.server.serve = original


class AuthoringPage:
    """The viser server; one TabSession per connected browser tab."""

    def __init__(self, service: MotionService, host: str = "127.0.0.1", port: int = 8080):
        self.service = service
        with websocket_origins(host):
            self.server = viser.ViserServer(host=host, port=port, label="Composite text-to-motion", verbose=False)
        self.port = self.server.get_port()
        self.api_url = ""
        self.server.gui.configure_theme(control_width="large", show_share_button=False, dark_mode=False)
        self.sessions: dict[int, TabSession] = {}
        self.server.on_client_connect(self.connect)
        self.server.on_client_disconnect(self.disconnect)

    def connect(self, client) -> None:
        self.sessions[client.client_id] = TabSession(client, self)

    def disconnect(self, client) -> None:
        session = self.sessions.pop(client.client_id, None)
        if session is not None:
            session.closed.set()

    def stop(self) -> None:
        for session in list(self.sessions.values()):
            session.closed.set()
        self.server.stop()


class TabSession:
    """One browser tab: its timeline, constraints, motions, selection and playback."""

    def __init__(self, client, page: AuthoringPage):
        self.client, self.page, self.service = client, page, page.service
        self.lock = threading.RLock()
        self.closed = threading.Event()
        self.segments: list[list] = [list(DEFAULT_SEGMENT)]
        self.pins: list[tuple[int, list]] = []
        self.path: list[tuple[int, float, float]] = []
        self.targets: list[JointTarget] = []
        self.motions: list = []
        self.job: Optional[Job] = None
        self.frame, self.playing, self.last_click = 0, False, 0.0
        self.first_frame_s: Optional[float] = None  # seconds from Generate to the first frame sent
        self.generations = 0  # motions this tab has received
        self.scene = TabScene(client)
        self.build_gui()
        threading.Thread(target=self.play_loop, name=f"playback-{client.client_id}", daemon=True).start()

    # ---------------------------------------------------------------------------------
    # Layout
    # ---------------------------------------------------------------------------------
    def build_gui(self) -> None:
        gui = self.client.gui
        if self.service.missing:
            gui.add_markdown(f"**No model loaded.** {self.service.missing}", order=0)
        self.status = gui.add_markdown("Write a timeline and press **Generate**.", order=1)
        with gui.add_folder("Timeline", order=2) as self.timeline_folder:
            self.rows: list = []
            self.add_button = gui.add_button("Add segment", order=100)
            self.split_button = gui.add_button("Split 'then' prompts into segments", order=101)
        self.add_button.on_click(lambda _: self.edit_segments(lambda s: s.append(list(DEFAULT_SEGMENT))))
        self.split_button.on_click(lambda _: self.split_chains())
        self.build_rows()
        with gui.add_folder("Generate", order=3):
            self.seed = gui.add_number("Seed", 0, min=0, max=2 ** 31 - 1, step=1)
            self.samples = gui.add_number("Samples", 1, min=1, max=MAX_SAMPLES, step=1)
            self.cleanup = gui.add_checkbox("Foot cleanup", False, disabled=not has_cleanup(),
                                            hint=None if has_cleanup() else "not available in this pipeline yet")
            self.generate_button = gui.add_button("Generate", disabled=bool(self.service.missing))
            self.progress = gui.add_progress_bar(0.0, visible=False, animated=True)
        self.generate_button.on_click(lambda _: self.generate())
        with gui.add_folder("Playback", order=4):
            self.play_button = gui.add_button("Play / Pause")
            self.slider = gui.add_slider("Frame", min=0, max=1, step=1, initial_value=0, disabled=True)
            self.speed = gui.add_dropdown("Speed", SPEEDS, initial_value="1")
            self.sample_choice = gui.add_dropdown("Sample", ["1"], initial_value="1")
            self.follow = gui.add_checkbox("Camera follows the body", True)
            self.segment_text = gui.add_markdown("Segment: -")
        self.play_button.on_click(lambda _: self.toggle_play())
        self.slider.on_update(lambda _: self.show_frame(int(self.slider.value)))
        self.sample_choice.on_update(lambda _: self.show_frame(self.frame))
        with gui.add_folder("Constraints", order=5):
            self.pin_space = gui.add_dropdown("Pin space", ("local", "world"), initial_value="local",
                                              hint="local: the pose only; world: also where the body stands and faces")
            self.pin_button = gui.add_button("Pin this frame's pose")
            self.draw_path = gui.add_checkbox("Draw root path", False,
                                              hint="click the floor: a waypoint at the current frame")
            self.clear_button = gui.add_button("Clear pins and path")
            self.constraints_text = gui.add_markdown("No pins, no path.")
            with gui.add_folder("Joint target"):
                self.target_joint = gui.add_dropdown("Joint", JOINT_NAMES, initial_value="right_wrist")
                self.target_xyz = [gui.add_number(f"Target {c} (m)", 0.0, min=-1000.0, max=1000.0, step=0.01)
                                   for c in "xyz"]
                self.target_axes = gui.add_dropdown("Axes", TARGET_AXES, initial_value="xyz",
                                                    hint="xyz: the point; y: the height only; xz: over a spot")
                self.use_pose_button = gui.add_button("Use current pose")
                self.target_button = gui.add_button("Add target at this frame")
                self.clear_targets_button = gui.add_button("Clear joint targets")
                self.targets_text = gui.add_markdown("No joint targets.")
        self.target_joint.on_update(lambda _: self.use_current_pose(quiet=True))
        self.use_pose_button.on_click(lambda _: self.use_current_pose())
        self.target_button.on_click(lambda _: self.add_target())
        self.clear_targets_button.on_click(lambda _: self.clear_targets())
        self.pin_button.on_click(lambda _: self.pin_pose())
        self.draw_path.on_update(lambda _: self.set_path_drawing(self.draw_path.value))
        self.clear_button.on_click(lambda _: self.clear_constraints())
        with gui.add_folder("Export", order=6):
            for label, (fmt, name) in EXPORTS.items():
                gui.add_button(f"Export {label}").on_click(lambda _, fmt=fmt, name=name: self.export(fmt, name))
            gui.add_button("Save session (.json)").on_click(lambda _: self.save_session())
            self.load_button = gui.add_upload_button("Load session (.json)", mime_type="application/json")
        self.load_button.on_upload(lambda _: self.load_session(self.load_button.value.content))

    def build_rows(self) -> None:
        """Match the timeline's rows (text, seconds, move/remove buttons) to self.segments: rows are
        added or removed at the end and the others take the segments' values (a row being typed
        in keeps its value, so adding a segment never loses a keystroke)."""
        with self.timeline_folder:
            while len(self.rows) > len(self.segments):
                for handle in self.rows.pop():
                    handle.remove()
            while len(self.rows) < len(self.segments):
                self.rows.append(self.add_row(len(self.rows)))
        for (text_in, seconds_in, _), (text, seconds) in zip(self.rows, self.segments):
            text_in.value, seconds_in.value = text, float(seconds)
        self.add_button.disabled = len(self.segments) >= MAX_SEGMENTS

    def add_row(self, i: int) -> tuple:
        gui, order = self.client.gui, 10 + i
        text, seconds = self.segments[i]
        text_in = gui.add_text(f"Prompt {i + 1}", text, order=order)
        seconds_in = gui.add_number(f"Seconds {i + 1}", float(seconds), min=0.3, max=120.0, step=0.1,
                                    order=order + 0.1)
        buttons = gui.add_button_group(f"Segment {i + 1}", ("Up", "Down", "Remove"), order=order + 0.2)
        text_in.on_update(lambda _: self.set_segment(i, 0, text_in.value))
        seconds_in.on_update(lambda _: self.set_segment(i, 1, float(seconds_in.value)))
        buttons.on_click(lambda event: self.move_segment(i, event.target.value))
        return text_in, seconds_in, buttons

    # ---------------------------------------------------------------------------------
    # Timeline edits
    # ---------------------------------------------------------------------------------
    def set_segment(self, index: int, field: int, value) -> None:
        with self.lock:
            if index < len(self.segments):
                self.segments[index][field] = value

    def edit_segments(self, change) -> None:
        with self.lock:
            change(self.segments)
            if not self.segments:
                self.segments.append(list(DEFAULT_SEGMENT))
            del self.segments[MAX_SEGMENTS:]
            self.build_rows()

    def move_segment(self, index: int, action: str) -> None:
        def change(segments):
            if action == "Remove":
                segments.pop(index)
            else:
                other = index - 1 if action == "Up" else index + 1
                if 0 <= other < len(segments):
                    segments[index], segments[other] = segments[other], segments[index]
        self.edit_segments(change)

    def split_chains(self) -> None:
        """Each segment whose prompt chains actions with 'then' becomes one segment per action,
        sharing its seconds."""
        def change(segments):
            segments[:] = [[part, round(seconds / len(parts), 2)] for text, seconds in segments
                           for parts in [split_then(text)] for part in parts]
        self.edit_segments(change)

    # ---------------------------------------------------------------------------------
    # Generation
    # ---------------------------------------------------------------------------------
    def request(self, fmt: str = "json") -> MotionRequest:
        """The tab's session as a checked request (RequestError naming the problem)."""
        with self.lock:
            data = {"segments": [{"text": t, "seconds": s} for t, s in self.segments], "seed": int(self.seed.value),
                    "samples": int(self.samples.value), "pins": [{"frame": f, "joints": j} for f, j in self.pins],
                    "pin_space": self.pin_space.value, "path": [list(r) for r in self.path],
                    "joint_targets": [t.to_json() for t in self.targets],
                    "cleanup": bool(self.cleanup.value), "format": fmt,
                    "checkpoints": self.service.checkpoints}
        return parse_request(data, self.service.fps, self.service.interval)

    def generate(self) -> None:
        """Queue the tab's request; while one is queued or running a click changes nothing."""
        with self.lock:
            if self.job is not None:
                self.say("Still generating: the request already queued keeps going.")
                return
            try:
                request = self.request()
                self.job = self.service.submit(request)
            except (RequestError, QueueFull, RuntimeError) as exc:
                self.say(f"Cannot generate: {exc}")
                return
            self.last_click = time.perf_counter()
            self.generate_button.disabled = True
            self.progress.visible, self.progress.value = True, 5.0
        threading.Thread(target=self.watch, args=(self.job,), daemon=True).start()

    def watch(self, job: Job) -> None:
        """Show the job's place in the queue and progress; show its motion when done."""
        while not job.future.done() and not self.closed.is_set():
            ahead = self.service.position(job)
            if job.status == "queued":
                self.say(f"Queued: {ahead} request(s) ahead.")
            else:
                self.say(f"Generating sample {job.sample + 1} of {job.samples}...")
                self.progress.value = 10.0 + 85.0 * job.sample / max(job.samples, 1)
            wait([job.future], timeout=POLL_S)  # wakes as soon as the motion is there
        try:
            motions = job.future.result()
        except Exception as exc:  # noqa: BLE001  shown on the page
            self.finish_job()
            self.say(f"Generation failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            return
        with self.lock:
            self.motions = motions
            self.sample_choice.options = [str(i + 1) for i in range(len(motions))]
            self.sample_choice.value = "1"
            self.slider.max = len(motions[0].joints) - 1
            self.slider.disabled = False
            self.scene.show_trail(motions[0].joints)
            self.frame = -1
            self.slider.value = 0
            self.show_frame(0)
            self.use_current_pose(quiet=True)
            self.first_frame_s = time.perf_counter() - self.last_click
            self.playing = True
            self.generations += 1
        self.finish_job()
        reached = (motions[0].control_errors or {}).get("joint_pin_error_max")
        self.say(f"Ready (generation {self.generations}): {len(motions)} sample(s) of {len(motions[0].joints)} "
                 f"frames, generated in {job.seconds:.2f} s, first frame sent {self.first_frame_s:.2f} s after Generate."
                 + ("" if reached is None else f" Joint targets met within {100 * reached:.1f} cm."))

    def finish_job(self) -> None:
        with self.lock:
            self.job = None
            self.generate_button.disabled = bool(self.service.missing)
            self.progress.visible = False

    def say(self, text: str) -> None:
        if self.status.content != text:
            self.status.content = text

    # ---------------------------------------------------------------------------------
    # Playback
    # ---------------------------------------------------------------------------------
    def current(self):
        """The motion of the chosen sample, or None before the first generation."""
        if not self.motions:
            return None
        index = int(self.sample_choice.value) - 1
        return self.motions[min(max(index, 0), len(self.motions) - 1)]

    def show_frame(self, frame: int) -> None:
        with self.lock:
            motion = self.current()
            if motion is None:
                return
            frame = min(max(frame, 0), len(motion.joints) - 1)
            self.frame = frame
            segment = motion.segments[motion.segment_at(frame)]
            self.scene.show_pose(motion.joints[frame], segment.text)
            if self.follow.value:
                self.scene.follow(motion.joints[frame])
            self.segment_text.content = (f"Segment {motion.segment_at(frame) + 1}/{len(motion.segments)}: "
                                         f"**{segment.text}** (frame {frame} of {len(motion.joints) - 1}, "
                                         f"{'playing' if self.playing else 'paused'})")

    def toggle_play(self) -> None:
        self.playing = not self.playing
        self.show_frame(self.frame)

    def play_loop(self) -> None:
        while not self.closed.is_set():
            motion = self.current()
            if self.playing and motion is not None:
                self.slider.value = (self.frame + 1) % len(motion.joints)  # draws through on_update
            time.sleep(1.0 / (self.service.fps * float(self.speed.value)))

    # ---------------------------------------------------------------------------------
    # Constraints
    # ---------------------------------------------------------------------------------
    def pin_pose(self) -> None:
        """Pin the shown pose at its frame (replacing a pin already there)."""
        with self.lock:
            motion = self.current()
            if motion is None:
                self.say("Generate a motion first, then pin one of its poses.")
                return
            self.playing = False
            joints = np.round(motion.joints[self.frame], 5).tolist()
            self.pins = sorted([p for p in self.pins if p[0] != self.frame] + [(self.frame, joints)])
            self.show_constraints()

    def set_path_drawing(self, on: bool) -> None:
        if on:
            self.client.scene.on_click()(self.floor_click)
        else:
            self.client.scene.remove_click_callback("all")

    def floor_click(self, event) -> None:
        hit = floor_hit(event.ray_origin, event.ray_direction)
        if hit is None:
            return
        with self.lock:
            frame = max(self.frame, 0)
            self.path = sorted([r for r in self.path if r[0] != frame] + [(frame, round(hit[0], 3), round(hit[1], 3))])
            self.show_constraints()

    def use_current_pose(self, quiet: bool = False) -> None:
        """Fill the target's x, y, z with the chosen joint's position at the shown frame."""
        with self.lock:
            motion = self.current()
            if motion is None:
                if not quiet:
                    self.say("Generate a motion first, then take a joint's position from it.")
                return
            if not quiet:
                self.playing = False
            position = motion.joints[max(self.frame, 0), JOINT_NAMES.index(self.target_joint.value)]  # (3,)
            for handle, value in zip(self.target_xyz, position):
                handle.value = round(float(value), 3)

    def add_target(self) -> None:
        """A joint target at the shown frame from the Joint target controls (replacing one of the
        same joint at that frame)."""
        with self.lock:
            self.playing = False
            frame, joint = max(self.frame, 0), self.target_joint.value
            kept = [t for t in self.targets if (t.joint, t.frame) != (joint, frame)]
            if len(kept) >= MAX_PINS:
                self.say(f"At most {MAX_PINS} joint targets; clear some first.")
                return
            target = JointTarget(joint, frame, [round(float(h.value), 3) for h in self.target_xyz],
                                 self.target_axes.value)
            self.targets = sorted(kept + [target], key=lambda t: (t.frame, t.joint))
            self.show_constraints()

    def clear_targets(self) -> None:
        with self.lock:
            self.targets = []
            self.show_constraints()

    def clear_constraints(self) -> None:
        with self.lock:
            self.pins, self.path = [], []
            self.show_constraints()

    def show_constraints(self) -> None:
        self.scene.show_pins([np.array(j) for _, j in self.pins])
        self.scene.show_path(self.path)
        pins = ", ".join(str(f) for f, _ in self.pins) or "none"
        path = ", ".join(f"{f}: ({x:.2f}, {z:.2f})" for f, x, z in self.path[:6]) or "none"
        self.constraints_text.content = (f"Pinned frames: {pins}  \nPath points (frame: x, z): {path}"
                                         + (" ..." if len(self.path) > 6 else ""))
        self.scene.show_targets([t.position for t in self.targets])
        rows = [f"{t.joint} at frame {t.frame}: ({', '.join(f'{v:.2f}' for v in t.position)}) {t.axes}"
                for t in self.targets[:8]]
        more = "  \n..." if len(self.targets) > 8 else ""
        self.targets_text.content = "Joint targets:  \n" + "  \n".join(rows) + more if rows else "No joint targets."

    # ---------------------------------------------------------------------------------
    # Export and sessions
    # ---------------------------------------------------------------------------------
    def export(self, fmt: str, filename: str) -> None:
        motion = self.current()
        if motion is None:
            self.say("Generate a motion first, then export it.")
            return
        body, _, _ = encode_motions([motion], fmt, self.service.out_dir, self.service.fps)
        self.client.send_file_download(filename, body, save_immediately=True)
        self.say(f"Exported {filename} ({len(body)} bytes).")

    def save_session(self) -> None:
        try:
            data = self.request().to_json()
        except RequestError as exc:
            self.say(f"Cannot save: {exc}")
            return
        self.client.send_file_download("session.json", json.dumps(data, indent=1).encode(), save_immediately=True)

    def load_session(self, content: bytes) -> None:
        try:
            request = parse_request(decode_body(content), self.service.fps, self.service.interval)
        except RequestError as exc:
            self.say(f"Cannot load this session: {exc}")
            return
        with self.lock:
            self.segments = [[text, seconds] for text, seconds in request.segments]
            self.pins, self.path = list(request.pins), list(request.path)
            self.targets = list(request.joint_targets)
            if request.seed is not None:
                self.seed.value = request.seed
            self.samples.value = request.samples
            self.pin_space.value = request.pin_space
            if has_cleanup():
                self.cleanup.value = request.cleanup
            self.build_rows()
            self.show_constraints()
        made_by = (request.checkpoints or {}).get("sha256")
        note = "" if not made_by or made_by == self.service.checkpoints.get("sha256") else \
            " (it was made with other checkpoints than the ones loaded)"
        self.say(f"Loaded a session of {len(request.segments)} segment(s){note}; press Generate.")
