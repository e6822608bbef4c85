"""The HTTP API of `python app.py`: a real server process on a free loopback port, a real HTTP
client, a tiny trained model. Also the request schema's checks and split_then."""
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from http.client import HTTPConnection

import numpy as np
import pytest

from authoring.session import MAX_PINS, MAX_SEGMENTS, RequestError, decode_body, parse_request, split_then
from bvh import import_bvh
from conftest import ROOT, run_script

WALK = {"prompt": "a person walks forward", "seconds": 3}
TARGET = {"joint": "right_wrist", "frame": 30, "position": [0.3, 1.4, 0.4]}


def free_port() -> int:
    """A port P with P and P + 1 both free: app.py serves the page on P and the API on P + 1
    (checking P alone let a listener on P + 1 fail a run at random)."""
    for _ in range(50):
        with socket.socket() as page, socket.socket() as api:
            page.bind(("127.0.0.1", 0))
            port = page.getsockname()[1]
            try:
                api.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two free neighbouring ports on 127.0.0.1")


def start_app(cwd, *args, ready: str = "api:", timeout: float = 120.0):
    """`python app.py ARGS` in cwd; returns (process, first lines) once it printed `ready`."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "app.py"), *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, deadline = [], time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith(ready):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            return proc, "".join(lines)
    proc.kill()
    raise AssertionError(f"app.py did not start: {''.join(lines)[-2000:]}")


@pytest.fixture(scope="module")
def server(tiny_trained, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("app_cwd")
    port = free_port()
    proc, out = start_app(cwd, "--api", "--port", port, "--checkpoint_dir", tiny_trained["checkpoint_dir"],
                          "--out_dir", "out")
    yield {"port": port, "cwd": cwd, "out": out}
    proc.terminate()
    proc.wait(timeout=20)


def call(port, method="POST", path="/generate", body=None, headers=None, timeout=120):
    """(status, headers, body bytes) of one request on a fresh connection."""
    conn = HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    result = response.status, dict(response.getheaders()), response.read()
    conn.close()
    return result


def healthy(port) -> bool:
    status, _, body = call(port, "GET", "/health")
    return status == 200 and json.loads(body)["ok"] is True


# ---------------------------------------------------------------------------------------
# Valid requests, one per format
# ---------------------------------------------------------------------------------------
def test_json_timeline_with_samples(server):
    body = {"segments": [{"text": "a person walks forward", "seconds": 2}, {"text": "a person waves", "seconds": 1.5}],
            "samples": 2, "seed": 4, "format": "json"}
    status, headers, raw = call(server["port"], body=body)
    assert status == 200, raw
    motion = json.loads(raw)
    assert motion["fps"] == 20 and motion["frames"] == 70 and len(motion["joint_names"]) == 22
    assert [(s["text"], s["start"], s["end"]) for s in motion["segments"]] == [
        ("a person walks forward", 0, 40), ("a person waves", 40, 70)]
    joints = [np.array(s["joints"]) for s in motion["samples"]]
    assert [j.shape for j in joints] == [(70, 22, 3)] * 2 and all(np.isfinite(j).all() for j in joints)
    assert not np.allclose(joints[0], joints[1]), "samples use seeds seed and seed + 1"


def test_npz_bundle(server):
    status, headers, raw = call(server["port"], body={"prompt": "a person walks forward", "length": 50, "format": "npz"})
    assert status == 200 and headers["Content-Disposition"].endswith('motion.npz"')
    bundle = np.load(io.BytesIO(raw))
    assert bundle["motion"].shape == (50, 22, 3) and bundle["features"].shape == (50, 263)
    assert str(bundle["prompt"]).startswith("a person walks forward")


def test_bvh_reads_back(server, tmp_path):
    status, _, raw = call(server["port"], body={**WALK, "format": "bvh", "seed": 2})
    assert status == 200 and raw.startswith(b"HIERARCHY")
    path = tmp_path / "walk.bvh"
    path.write_bytes(raw)
    imported = import_bvh(str(path))
    status, _, raw_json = call(server["port"], body={**WALK, "format": "json", "seed": 2})
    joints = np.array(json.loads(raw_json)["samples"][0]["joints"])
    assert imported.joints.shape == joints.shape == (60, 22, 3)
    # the BVH describes the same motion as the joints, up to import_bvh's one vertical shift (floor contact)
    difference = imported.joints - joints
    assert np.abs(difference - np.array([0.0, difference[..., 1].mean(), 0.0])).max() < 0.01


def test_smpl_and_zip_of_samples(server):
    status, _, raw = call(server["port"], body={**WALK, "format": "smpl"})
    assert status == 200
    smpl = np.load(io.BytesIO(raw))
    assert smpl["poses"].shape == (60, 72) and smpl["trans"].shape == (60, 3)
    status, headers, raw = call(server["port"], body={**WALK, "format": "bvh", "samples": 3})
    assert status == 200 and headers["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(raw)).namelist()
    assert names == ["motion_0.bvh", "motion_1.bvh", "motion_2.bvh"]


def test_pins_and_path_are_met(server):
    base = json.loads(call(server["port"], body={**WALK, "seed": 1})[2])["samples"][0]["joints"]
    pose = (np.array(base[10]) + [1.0, 0.0, 0.5]).tolist()  # a pose moved 1 m along x, 0.5 m along z
    body = {**WALK, "seed": 1, "pins": [{"frame": 30, "joints": pose}], "pin_space": "world",
            "path": [[0, 0.0, 0.0], [59, 2.0, 1.0]]}
    status, _, raw = call(server["port"], body=body)
    assert status == 200, raw
    joints = np.array(json.loads(raw)["samples"][0]["joints"])
    assert np.abs(joints[30, 0, [0, 2]] - np.array(pose)[0, [0, 2]]).max() < 0.02, "the world pin places the root"
    assert np.abs(joints[59, 0, [0, 2]] - [2.0, 1.0]).max() < 0.02, "the root reaches the path's end"


def test_joint_targets_are_met_and_reported(server):
    base = np.array(json.loads(call(server["port"], body={**WALK, "seed": 1})[2])["samples"][0]["joints"])
    wrist = (base[30, 21] + [0.1, 0.08, 0.05]).tolist()  # the right wrist moved ~14 cm at frame 30
    height = float(base[45, 0, 1]) - 0.05  # the pelvis 5 cm lower at frame 45, on y only
    body = {**WALK, "seed": 1, "joint_targets": [{"joint": "right_wrist", "frame": 30, "position": wrist},
                                                 {"joint": "pelvis", "frame": 45, "position": [9.0, height, 9.0],
                                                  "axes": "y"}]}
    status, _, raw = call(server["port"], body=body)
    assert status == 200, raw
    sample = json.loads(raw)["samples"][0]
    joints, errors = np.array(sample["joints"]), sample["control_errors"]
    assert np.linalg.norm(joints[30, 21] - wrist) < 0.02 and abs(joints[45, 0, 1] - height) < 0.02
    assert errors["joint_pin_error_max"] < 0.02 and errors["joint_pin_reachable"] == [True, True]
    assert errors["raw_joint_pin_error_max"] >= errors["joint_pin_error_max"]
    assert np.linalg.norm(base[30, 21] - wrist) > 0.1, "the target is away from where the wrist was"
    assert "joint_pin_error_max" not in json.loads(call(server["port"], body=WALK)[2])["samples"][0]["control_errors"]


def test_cleanup_reaches_the_pipeline(server):
    plain, cleaned = (np.array(json.loads(call(server["port"], body={**WALK, "seed": 3, "cleanup": flag})[2])
                               ["samples"][0]["joints"]) for flag in (False, True))
    assert plain.shape == cleaned.shape == (60, 22, 3) and np.isfinite(cleaned).all()
    assert np.abs(plain - cleaned).max() > 1e-3, "foot cleanup (SamplingOptions.cleanup_feet) changed the legs"


# ---------------------------------------------------------------------------------------
# Bad requests: a 4xx with one line each, and the server still answers
# ---------------------------------------------------------------------------------------
BAD_BODIES = [
    ({**WALK, "colour": "red"}, "unknown field 'colour'"),
    ({**WALK, "out": "/tmp/x.bvh"}, "unknown field 'out'"),
    ({"prompt": 42, "seconds": 3}, "prompt must be a string"),
    ({**WALK, "seed": "7"}, "seed must be a whole number"),
    ({**WALK, "samples": True}, "samples must be a whole number"),
    ({**WALK, "cleanup": "yes"}, "cleanup must be true or false"),
    ({"prompt": "a person walks", "seconds": 500}, "seconds must lie in"),
    ({"prompt": "a person walks", "length": 10 ** 9}, "length must lie in"),
    ({"prompt": "a person walks", "length": 3}, "needs more than"),
    ({"segments": [{"text": "walk", "seconds": 4}] * 31}, "the most accepted is 120 s"),
    ({"segments": [{"text": "walk", "seconds": 0.5}] * (MAX_SEGMENTS + 1)}, f"the most accepted is {MAX_SEGMENTS}"),
    ({"segments": [{"text": "walk", "seconds": 4, "speed": 2}]}, "unknown field 'speed' in segments[0]"),
    ({"segments": []}, "segments is empty"),
    ({"segments": [{"text": "  ", "seconds": 4}]}, "is empty"),
    ({**WALK, "pins": [{"frame": 5, "joints": [[0, 0, 0]] * 22}] * (MAX_PINS + 1)}, f"the most accepted is {MAX_PINS}"),
    ({**WALK, "pins": [{"frame": 5, "joints": [[0, 0, 0]] * 21}]}, "22 rows"),
    ({**WALK, "pins": [{"frame": 60, "joints": [[0, 0, 0]] * 22}]}, "pins[0].frame must lie in [0, 59]"),
    ({**WALK, "path": [[0, 1e300, 0]]}, "path[0] x must lie in"),
    ({**WALK, "path": [[0, 0, 0], [0, 1, 1]]}, "share a frame"),
    ({**WALK, "format": "../../etc/passwd"}, "format must be one of"),
    ({**WALK, "pin_space": "galaxy"}, "pin_space must be"),
    ({**WALK, "checkpoints": "/etc/passwd"}, "checkpoints must be an object"),
    ({**WALK, "joint_targets": {"joint": "head"}}, "joint_targets must be a list"),
    ({**WALK, "joint_targets": [{**TARGET, "speed": 1}]}, "unknown field 'speed' in joint_targets[0]"),
    ({**WALK, "joint_targets": [{"joint": "head", "frame": 5}]}, "joint_targets[0] needs joint, frame and position"),
    ({**WALK, "joint_targets": [{**TARGET, "joint": "tail"}]}, "joint_targets[0].joint 'tail' is unknown"),
    ({**WALK, "joint_targets": [{**TARGET, "joint": 21}]}, "joint_targets[0].joint must be a joint name"),
    ({**WALK, "joint_targets": [{**TARGET, "frame": 60}]}, "joint_targets[0].frame must lie in [0, 59]"),
    ({**WALK, "joint_targets": [{**TARGET, "frame": 2.5}]}, "joint_targets[0].frame must be a whole number"),
    ({**WALK, "joint_targets": [{**TARGET, "position": [0, 1]}]}, "position must be [x, y, z]"),
    ({**WALK, "joint_targets": [{**TARGET, "position": [0, "1", 0]}]}, "position must be a number"),
    ({**WALK, "joint_targets": [{**TARGET, "position": [0, 1e300, 0]}]}, "position must lie in"),
    ({**WALK, "joint_targets": [{**TARGET, "axes": "w"}]}, "joint_targets[0].axes must be a subset of 'xyz'"),
    ({**WALK, "joint_targets": [{**TARGET, "axes": ""}]}, "joint_targets[0].axes must be a subset of 'xyz'"),
    ({**WALK, "joint_targets": [{**TARGET, "axes": ["x"]}]}, "joint_targets[0].axes must be a string"),
    ({**WALK, "joint_targets": [TARGET, TARGET]}, "same joint at the same frame"),
    ({**WALK, "joint_targets": [{**TARGET, "joint": "pelvis", "axes": "x"}]}, "fixes x and z together"),
    ({**WALK, "joint_targets": [{**TARGET, "frame": f} for f in range(MAX_PINS + 1)]},
     f"{MAX_PINS + 1} joint targets; the most accepted is {MAX_PINS}"),
    ({"segments": [{"text": "walk", "seconds": 4}], "prompt": "run"}, "not both"),
    ([1, 2, 3], "must be a JSON object"),
]
BAD_RAW = [
    (b'{"prompt": "a person walks", "seconds": NaN}', "NaN"),
    (b'{"prompt": "a person walks", "seconds": Infinity}', "Infinity"),
    (b'{"prompt": "a person walks", "seconds": 1e999}', "finite"),
    (b'{"prompt": "a person walks", "seconds": 3, "joint_targets": [{"joint": "head", "frame": 5, '
     b'"position": [0, NaN, 0]}]}', "NaN"),
    (b'{"prompt": "a person walks", ', "not valid JSON"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"[" * 100000 + b"]" * 100000, "nests too deeply"),
]


@pytest.mark.parametrize("body,reason", BAD_BODIES + BAD_RAW, ids=lambda v: str(v)[:30] if isinstance(v, str) else None)
def test_bad_request_is_a_4xx_with_one_line(server, body, reason):
    status, headers, raw = call(server["port"], body=body)
    assert 400 <= status < 500, (status, raw[:200])
    error = json.loads(raw)["error"]
    assert reason in error and "\n" not in error
    assert healthy(server["port"]), "the server answers after a bad request"


def raw_exchange(port, head: bytes) -> str:
    """The whole reply to raw request bytes (the server closes the connection after an error)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def test_oversized_body_and_missing_length(server):
    port = server["port"]
    reply = raw_exchange(port, b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 5000000\r\n\r\n{" % port)
    assert reply.startswith("HTTP/1.1 413") and "the most accepted is 1048576" in reply
    reply = raw_exchange(port, b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nTransfer-Encoding: chunked\r\n\r\n" % port)
    assert reply.startswith("HTTP/1.1 411") and "Content-Length" in reply
    assert healthy(port)


def test_host_and_origin_are_checked(server):
    port = server["port"]
    for headers in ({"Host": "attacker.example:%d" % port}, {"Origin": "http://attacker.example"},
                    {"Host": "127.0.0.1:%d" % (port + 7)}):
        status, _, raw = call(port, body=WALK, headers=headers)
        assert status == 403 and ("Host" in json.loads(raw)["error"] or "Origin" in json.loads(raw)["error"])
    status, _, _ = call(port, body=WALK, headers={"Host": "localhost:%d" % port, "Origin": "http://127.0.0.1:%d" % port})
    assert status == 200
    assert call(port, "GET", "/nothing")[0] == 404 and call(port, "PUT", "/generate", b"{}")[0] == 501
    assert healthy(port)


def test_concurrent_clients_all_answered(server):
    """20 requests from 4 clients at once: every answer is the motion its seed gives alone."""
    port = server["port"]
    reference = {seed: np.array(json.loads(call(port, body={**WALK, "seed": seed})[2])["samples"][0]["joints"])
                 for seed in (10, 11)}
    answers, errors = [], []

    def client(index):
        try:
            for k in range(5):
                seed = 10 + (index + k) % 2
                status, _, raw = call(port, body={**WALK, "seed": seed})
                answers.append((seed, status, raw))
        except Exception as exc:  # noqa: BLE001  reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors and len(answers) == 20
    for seed, status, raw in answers:
        assert status == 200
        assert np.abs(np.array(json.loads(raw)["samples"][0]["joints"]) - reference[seed]).max() < 1e-5


def test_nothing_written_outside_the_output_folder(server):
    call(server["port"], body={**WALK, "format": "bvh"})
    assert sorted(os.listdir(server["cwd"])) == ["out"]
    assert os.listdir(os.path.join(server["cwd"], "out")) == [], "scratch folders are removed"


# ---------------------------------------------------------------------------------------
# generate.py reads a saved session and splits 'then' chains
# ---------------------------------------------------------------------------------------
def test_generate_reads_a_session_file(tiny_trained, tmp_path):
    session = {"segments": [{"text": "a person walks forward", "seconds": 2}, {"text": "a person waves", "seconds": 2}],
               "seed": 3, "samples": 2, "path": [[0, 0.0, 0.0], [79, 0.0, 1.5]], "format": "bvh",
               "joint_targets": [{"joint": "right_wrist", "frame": 60, "position": [0.0, 1.45, 0.0], "axes": "y"}]}
    (tmp_path / "session.json").write_text(json.dumps(session))
    proc = run_script("generate.py", "--session", tmp_path / "session.json", "--out", tmp_path / "s.npy",
                      "--format", "npy", "bvh", "--checkpoint_dir", tiny_trained["checkpoint_dir"])
    assert proc.returncode == 0, proc.stderr[-1500:]
    first, second = (np.load(tmp_path / f"s_{i}.npz") for i in (0, 1))
    assert first["segment_texts"].tolist() == ["a person walks forward", "a person waves"]
    assert first["segment_end"].tolist() == [40, 80] and first["motion"].shape == (80, 22, 3)
    assert not np.allclose(first["motion"], second["motion"]), "samples use seeds 3 and 4"
    assert np.abs(first["motion"][79, 0, [0, 2]] - [0.0, 1.5]).max() < 0.02, "the session's path is followed"
    assert abs(first["motion"][60, 21, 1] - 1.45) < 0.02 and abs(second["motion"][60, 21, 1] - 1.45) < 0.02, \
        "the session's joint target (the right wrist's height) is met in both samples"
    assert os.path.exists(tmp_path / "s_1.bvh")
    (tmp_path / "bad.json").write_text(json.dumps({**session, "samples": 0}))
    proc = run_script("generate.py", "--session", tmp_path / "bad.json", "--checkpoint_dir", tiny_trained["checkpoint_dir"])
    assert proc.returncode == 2 and "samples must lie in [1, 8]" in proc.stderr and proc.stderr.count("\n") == 1


def test_generate_split_then(tiny_trained, tmp_path):
    proc = run_script("generate.py", "--prompt", "a person walks forward and then waves", "--seconds", "4",
                      "--split_then", "--out", tmp_path / "t.npy", "--checkpoint_dir", tiny_trained["checkpoint_dir"])
    assert proc.returncode == 0, proc.stderr[-1500:]
    bundle = np.load(tmp_path / "t.npz")
    assert bundle["segment_texts"].tolist() == ["a person walks forward", "a person waves"]
    assert bundle["segment_start"].tolist() == [0, 40] and bundle["segment_end"].tolist() == [40, 80]


# ---------------------------------------------------------------------------------------
# The page's export formats (no server: a real motion through generate.save_outputs)
# ---------------------------------------------------------------------------------------
def test_page_exports_bundle_gif_mp4(tmp_path):
    from authoring.jobs import encode_motions
    from conftest import random_motion_joints
    from timeline import TimelineResult, TimelineSegment
    from utils import joints_to_features
    joints = random_motion_joints(31, seed=2)  # (31, 22, 3)
    features = joints_to_features(joints)  # (30, 263)
    motion = TimelineResult(prompt="a person walks:1.5", joints=joints[:30], features=features,
                            keyframes=joints[[0, 29]], keyframe_idx=np.array([0, 29]),
                            segments=[TimelineSegment("a person walks", 0, 30)])
    body, mime, name = encode_motions([motion], "bundle", str(tmp_path), 20)
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert (mime, name, archive.namelist()) == ("application/zip", "motions.zip", ["motion.npy", "motion.npz"])
    assert np.load(io.BytesIO(archive.read("motion.npy"))).shape == (30, 22, 3)
    assert np.load(io.BytesIO(archive.read("motion.npz")))["segment_texts"].tolist() == ["a person walks"]
    gif, mime, _ = encode_motions([motion], "gif", str(tmp_path), 20)
    assert gif[:6] == b"GIF89a" and mime == "image/gif"
    mp4, mime, _ = encode_motions([motion], "mp4", str(tmp_path), 20)
    assert mp4[4:8] == b"ftyp" and mime == "video/mp4"
    assert os.listdir(tmp_path) == [], "the scratch folder is removed"


# ---------------------------------------------------------------------------------------
# The schema without a server
# ---------------------------------------------------------------------------------------
def test_request_round_trips_as_a_session():
    data = {"segments": [{"text": "a person walks forward", "seconds": 4.0}, {"text": "a person waves", "seconds": 2.5}],
            "seed": 3, "samples": 2, "pins": [{"frame": 10, "joints": [[0.0, 1.0, 0.0]] * 22}], "pin_space": "world",
            "path": [[0, 0.0, 0.0], [129, 1.0, 2.0]],
            "joint_targets": [{"joint": "pelvis", "frame": 20, "position": [0.0, 0.8, 0.0], "axes": "y"},
                              {"joint": "right_wrist", "frame": 60, "position": [0.3, 1.5, 0.4], "axes": "xyz"}],
            "cleanup": False, "format": "bvh", "checkpoints": {"dir": "checkpoints", "sha256": {"vqvae": "ab"}}}
    request = parse_request(data)
    assert request.num_frames(20) == 130 and request.pins[0][0] == 10
    pins = request.joint_pins()
    assert list(pins.joints) == ["pelvis", "right_wrist"] and list(pins.frames) == [20, 60] and pins.axes == ["y", "xyz"]
    assert request.to_json() == data
    assert parse_request(request.to_json()) == request
    with pytest.raises(RequestError, match="drop 'length'"):
        parse_request({"segments": data["segments"], "length": 5})
    with pytest.raises(RequestError, match="NaN"):
        decode_body(b'{"seconds": NaN}')


@pytest.mark.parametrize("prompt,parts", [
    ("a person walks forward and then waves", ["a person walks forward", "a person waves"]),
    ("a person walks forward, then sits down, then jumps", ["a person walks forward", "a person sits down",
                                                            "a person jumps"]),
    ("someone runs; then stops", ["someone runs", "someone stops"]),
    ("a person walks forward then a man waves", ["a person walks forward", "a man waves"]),
    ("Then a person jumps", ["a person jumps"]),
    ("a person walks to the athenaeum", ["a person walks to the athenaeum"]),
    ("a person waves", ["a person waves"]),
])
def test_split_then(prompt, parts):
    assert split_then(prompt) == parts
