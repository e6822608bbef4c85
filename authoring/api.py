"""The local HTTP API: POST /generate with a JSON request (authoring/session.py) returns the motion.

    curl -s http://127.0.0.1:8081/generate -H 'Content-Type: application/json' \
         -d '{"prompt": "a person walks forward", "seconds": 4, "format": "bvh"}' -o walk.bvh

GET /health answers {"ok", "model", "checkpoints", "queue", "completed"}. Every bad request gets a
4xx status with a one-line JSON {"error": reason}; nothing a request says names a file (answers
are built in a fresh folder inside the output folder and removed). Being a local server it
answers only requests whose Host is an address it listens on and whose Origin, when a browser
sends one, is one of them too, so a web page the user visits cannot drive it (DNS rebinding).
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable

from authoring.jobs import MotionService, QueueFull, encode_motions
from authoring.session import MAX_BODY_BYTES, RequestError, decode_body, parse_request

REQUEST_TIMEOUT_S = 600  # longest wait for one generation before answering 503
SOCKET_TIMEOUT_S = 30  # a client that sends nothing for this long is dropped


def trusted_names(host: str) -> list[str]:
    """The host names a request (Host) or a page (Origin) may use to reach a server bound to
    `host`: the loopback names, and the bound host itself unless it is a wildcard address
    (IPv6 in brackets, as in URLs)."""
    names = ["127.0.0.1", "localhost", "[::1]"]
    if host not in ("0.0.0.0", "::", ""):
        names.append(f"[{host}]" if ":" in host else host)
    return names


def allowed_hosts(host: str, ports: Iterable[int]) -> set[str]:
    """Host header values this server answers: the trusted names with each port."""
    return {f"{name}:{port}" for name in trusted_names(host) for port in ports}


class ApiHandler(BaseHTTPRequestHandler):
    server: "ApiServer"
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S

    def log_message(self, format, *args):  # noqa: A002  quiet: the app prints its own lines
        pass

    def answer(self, status: int, body: bytes, mime: str = "application/json", filename: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", mime)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        if filename:
            self.send_header("Content-Disposition", f'attachment; filename="{filename}"')
        self.end_headers()
        self.wfile.write(body)

    def error(self, status: int, reason: str) -> None:
        self.close_connection = True
        self.answer(status, json.dumps({"error": reason.splitlines()[0] if reason else "error"}).encode())

    def trusted(self) -> bool:
        """Host (and Origin, when present) name this server; answers 403 otherwise."""
        host = self.headers.get("Host", "")
        if host not in self.server.hosts:
            self.error(403, f"Host {host[:60]!r} is not this server's address; call http://127.0.0.1:<port>")
            return False
        origin = self.headers.get("Origin")
        if origin is not None and origin.removeprefix("http://") not in self.server.hosts:
            self.error(403, f"Origin {origin[:60]!r} may not call this server; call it from a script or this app's page")
            return False
        return True

    def do_GET(self):  # noqa: N802
        if not self.trusted():
            return
        if self.path != "/health":
            self.error(404, f"no {self.path[:60]} here; POST /generate or GET /health")
            return
        service = self.server.service
        info = {"ok": service.composite is not None, "model": service.missing or "loaded",
                "checkpoints": service.checkpoints, "queue": service.queue.qsize(), "completed": service.completed}
        self.answer(200, json.dumps(info).encode())

    def do_POST(self):  # noqa: N802
        if not self.trusted():
            return
        if self.path != "/generate":
            self.error(404, f"no {self.path[:60]} here; POST /generate")
            return
        try:
            body = self.read_body()
            request = parse_request(decode_body(body), self.server.service.fps, self.server.service.interval)
        except RequestError as exc:
            self.error(getattr(exc, "status", 400), str(exc))
            return
        self.generate(request)

    def read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None:
            raise status_error(411, "send the body with a Content-Length header (no chunked encoding)")
        if not length.isdigit():
            raise status_error(400, f"Content-Length {length[:20]!r} is not a number")
        if int(length) > MAX_BODY_BYTES:
            raise status_error(413, f"the body has {length} bytes; the most accepted is {MAX_BODY_BYTES}")
        return self.rfile.read(int(length))

    def generate(self, request) -> None:
        service = self.server.service
        if service.composite is None:
            self.error(503, service.missing)
            return
        try:
            job = service.submit(request)
            motions = job.future.result(timeout=REQUEST_TIMEOUT_S)
            body, mime, filename = encode_motions(motions, request.format, service.out_dir, service.fps)
        except (QueueFull, TimeoutError) as exc:
            self.error(503, str(exc) or "the model is busy; try again shortly")
        except ValueError as exc:  # the pipeline's own checks (e.g. a pin the model cannot meet)
            self.error(422, str(exc))
        except Exception as exc:  # noqa: BLE001  the server stays up and says what failed
            self.error(500, f"generation failed: {type(exc).__name__}: {exc}")
        else:
            self.answer(200, body, mime, filename)


def status_error(status: int, reason: str) -> RequestError:
    exc = RequestError(reason)
    exc.status = status
    return exc


class ApiServer(ThreadingHTTPServer):
    """A threaded HTTP server around one MotionService (generation itself is one at a time)."""
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, service: MotionService, host: str, port: int, page_port: int | None = None):
        super().__init__((host, port), ApiHandler)
        self.service = service
        port = self.server_address[1]
        self.hosts = allowed_hosts(host, [port] + ([page_port] if page_port else []))

    def handle_error(self, request, client_address):  # a broken connection must not print a trace
        pass

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="http-api", daemon=True)
        thread.start()
        return thread
