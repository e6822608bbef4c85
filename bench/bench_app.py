"""The authoring page and the HTTP API, measured: time from Generate to the first frame drawn in a
real browser for a 6 s motion and a 30 s timeline, and the server's memory over 200 API requests.

    python bench/bench_app.py                              # trained checkpoints in --checkpoint_dir
    python bench/bench_app.py --checkpoint_dir DIR --repeats 5 --requests 200 --threads 2

Uses the trained checkpoints in --checkpoint_dir when there are any, else random weights at the
config's sizes (bench_timeline.load; time does not depend on the weights' values). The page and
the API run in this process (the server); Debian's chromium, driven by selenium, is the user.

- Generate -> first frame drawn: in the page, the time from the Generate button's click event to
  the first animation frame after the status line says 'Ready' (the pose update reaches the
  browser before that line does, so the frame drawn then shows the motion's first pose). The
  30 s timeline is loaded through the page's 'Load session' button. Median and range of
  --repeats clicks, and the server's own generation seconds.
- Memory: the server process's resident memory (VmRSS) after the page's runs and 20 warm-up API
  requests, then after --requests more (formats json, bvh, npz, smpl in turn, 6 s each).
Prints the numbers and writes results/bench_app.json.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from http.client import HTTPConnection

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import torch  # noqa: E402
from bench.json_report import write_json_report  # noqa: E402

from authoring.api import ApiServer  # noqa: E402
from authoring.jobs import MotionService  # noqa: E402
from authoring.page import AuthoringPage  # noqa: E402
from authoring.session import checkpoint_identity  # noqa: E402
from bench_timeline import load  # noqa: E402
from config import config_from_args, make_parser  # noqa: E402

SIX_SECONDS = {"segments": [{"text": "a person walks forward", "seconds": 6}]}
THIRTY_SECONDS = {"segments": [{"text": text, "seconds": 6} for text in (
    "a person walks forward", "a person waves with the right hand", "a person walks backward",
    "a person jumps in place", "a person sits down")]}
CLICK_TO_DRAWN_JS = r"""
const done = arguments[arguments.length - 1];
const button = [...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Generate');
const count = () => (document.body.innerText.match(/Ready \(generation (\d+)\)/) || [0, 0])[1] * 1;
const before = count();
const status = () => count() > before;
let start = null;
const watch = () => {
  if (status()) { requestAnimationFrame(() => done(performance.now() - start)); return; }
  setTimeout(watch, 2);
};
setTimeout(() => done(-1), 100000);
button.addEventListener('click', () => { start = performance.now(); setTimeout(watch, 0); }, {once: true});
button.click();
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:"))


def start_server(cfg, out_dir: str):
    composite, source = load(cfg)
    service = MotionService(composite, out_dir, checkpoints=checkpoint_identity(cfg))
    page = AuthoringPage(service, "127.0.0.1", free_port())
    api = ApiServer(service, "127.0.0.1", page.port + 1, page.port)
    api.start()
    return service, page, api, source


def load_session(driver, data: dict, folder: str) -> None:
    """Load a session JSON through the page's upload button and wait until the page took it."""
    from selenium.webdriver.common.by import By
    from test_app_browser import page_text, wait_for
    path = os.path.join(folder, f"session_{len(data['segments'])}.json")
    with open(path, "w") as fh:
        json.dump(data, fh)
    driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(path)
    wait_for(lambda: f"Loaded a session of {len(data['segments'])} segment(s)" in page_text(driver), 30,
             "the session", driver)


def click_to_drawn(driver, repeats: int) -> list[float]:
    """Seconds from Generate's click to the first frame drawn after 'Ready', repeats times."""
    from test_app_browser import page_text, wait_for
    times = []
    for _ in range(repeats):
        milliseconds = driver.execute_async_script(CLICK_TO_DRAWN_JS)
        if milliseconds < 0:
            raise RuntimeError("no motion within 100 s; the page said: " + page_text(driver)[:400].replace("\n", " "))
        times.append(milliseconds / 1000.0)
        time.sleep(0.3)
    return times


def page_latency(page, repeats: int, folder: str) -> dict:
    from test_app_browser import open_browser, page_text, wait_for
    driver = open_browser(folder)
    driver.set_script_timeout(110)
    report = {}
    try:
        driver.get(f"http://127.0.0.1:{page.port}/")
        wait_for(lambda: "Prompt 1" in page_text(driver), 60, "the page", driver)
        for name, data in (("6 s motion", SIX_SECONDS), ("30 s timeline", THIRTY_SECONDS)):
            load_session(driver, data, folder)
            times = click_to_drawn(driver, repeats)
            session = next(iter(page.sessions.values()))
            report[name] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                            "server_first_frame_s": session.first_frame_s}
    finally:
        driver.quit()
    return report


def api_memory(port: int, requests: int) -> dict:
    formats = ("json", "bvh", "npz", "smpl")

    def one(i):
        conn = HTTPConnection("127.0.0.1", port, timeout=300)
        conn.request("POST", "/generate", json.dumps({**SIX_SECONDS, "seed": i, "format": formats[i % 4]}),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        conn.close()
        assert response.status == 200, response.status

    for i in range(20):
        one(i)
    before = rss_mb()
    start = time.perf_counter()
    for i in range(requests):
        one(20 + i)
    seconds = time.perf_counter() - start
    return {"rss_after_warmup_mb": before, "rss_after_mb": rss_mb(), "requests": requests,
            "seconds_per_request": seconds / requests}


def make_cli_parser():
    parser = make_parser(__doc__.split("\n\n")[0], prog="bench_app.py")
    parser.add_argument("--repeats", type=int, default=5, help="Generate clicks per motion")
    parser.add_argument("--requests", type=int, default=200, help="API requests for the memory figure")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    return parser


def main(argv=None) -> int:
    parser = make_cli_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(args, parser)
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = tempfile.mkdtemp(prefix="bench_app_")
    service, page, api, source = start_server(cfg, os.path.join(folder, "out"))
    report = {"weights": source, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_average": os.getloadavg()[0], "rss_loaded_mb": rss_mb()}
    report["page"] = page_latency(page, args.repeats, folder)
    report["memory"] = api_memory(api.server_address[1], args.requests)
    page.stop()
    api.shutdown()
    path = write_json_report(report, os.path.join(cfg.results_dir, "bench_app.json"))
    print(f"weights: {source}; {report['threads']} threads, load average {report['load_average']:.1f}")
    for name, row in report["page"].items():
        print(f"Generate -> first frame drawn, {name}: median {row['median_s']:.3f} s "
              f"(min {row['min_s']:.3f}, max {row['max_s']:.3f}; server-side {row['server_first_frame_s']:.3f} s)")
    memory = report["memory"]
    print(f"server memory: {report['rss_loaded_mb']:.0f} MB loaded, {memory['rss_after_warmup_mb']:.0f} MB after "
          f"the page runs and 20 requests, {memory['rss_after_mb']:.0f} MB after {memory['requests']} more "
          f"({memory['seconds_per_request']:.3f} s each)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
