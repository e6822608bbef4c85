"""Load the model and start the page and the HTTP API together (what `python app.py` runs)."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Optional

from authoring.api import ApiServer
from authoring.jobs import MotionService
from authoring.session import checkpoint_identity
from config import CompositeConfig
from pipeline import Composite
from runtime import CheckpointError

TRAIN_COMMAND = "python train.py"


@dataclass
class ServeOptions:
    """Where to listen and what to serve. port: the page's (the API takes port + 1 when the
    page is on); api_only: no page, the API on port itself."""
    host: str = "127.0.0.1"
    port: int = 8080
    out_dir: str = "results/app"
    api_only: bool = False


def load_service(cfg: CompositeConfig, out_dir: str) -> MotionService:
    """The MotionService of cfg's checkpoints, or one that says why there is no model and how to train it."""
    try:
        composite = Composite.from_checkpoints(cfg)
        missing = ""
    except CheckpointError as exc:
        composite = None
        missing = f"no usable model in {cfg.checkpoint_dir}/: {exc}"
        if TRAIN_COMMAND not in missing:
            missing += f"; train one with `{TRAIN_COMMAND}` or pass --checkpoint_dir"
    return MotionService(composite, out_dir, cfg.fps, cfg.keyframe_interval, missing, checkpoint_identity(cfg))


@dataclass
class RunningApp:
    service: MotionService
    api: ApiServer
    page: Optional[object]  # authoring.page.AuthoringPage
    page_url: str
    api_url: str

    def stop(self) -> None:
        self.api.shutdown()
        self.api.server_close()
        if self.page is not None:
            self.page.stop()


def url(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def start(cfg: CompositeConfig, options: ServeOptions) -> RunningApp:
    """Load the model, start the page (viser, on options.port) and the API (the next port: viser's
    server answers no POST); returns at once, both serving from their own threads."""
    service = load_service(cfg, options.out_dir)
    if service.missing:
        print(f"app.py: {service.missing}", file=sys.stderr)
    page, page_port = None, None
    if not options.api_only:
        from authoring.page import AuthoringPage
        page = AuthoringPage(service, options.host, options.port)
        page_port = page.port
    api_port = options.port if options.api_only else page_port + 1
    try:
        api = ApiServer(service, options.host, api_port, page_port)
    except OSError as exc:
        if page is not None:
            page.stop()
        raise SystemExit(f"app.py: error: cannot listen on {options.host}:{api_port} ({exc.strerror}); "
                         f"pass another --port")
    api.start()
    running = RunningApp(service, api, page, url(options.host, page_port) if page else "", url(options.host, api_port))
    if page is not None:
        page.api_url = running.api_url
        print(f"page: {running.page_url}", flush=True)
    print(f"api:  POST {running.api_url}/generate", flush=True)
    return running


def serve_forever(cfg: CompositeConfig, options: ServeOptions) -> int:
    running = start(cfg, options)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        running.stop()
    return 0
