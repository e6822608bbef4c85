"""The motion-authoring page and the local HTTP API, in one command.

    python app.py                                # page on http://127.0.0.1:8080, API on :8081
    python app.py --checkpoint_dir my_run --port 9000
    python app.py --api --port 8081              # the HTTP API alone
    curl -s http://127.0.0.1:8081/generate -d '{"prompt": "a person walks forward", "seconds": 4, "format": "bvh"}' -o walk.bvh

Binding another interface than 127.0.0.1 needs an explicit --host. See authoring/ for the parts.
"""
from __future__ import annotations

import sys
from typing import Optional

from config import config_from_args, make_parser


def make_cli_parser():
    parser = make_parser(__doc__.split("\n\n")[0], prog="app.py")
    opts = parser.add_argument_group("server")
    opts.add_argument("--host", default="127.0.0.1", help="interface to listen on (another one exposes the app)")
    opts.add_argument("--port", type=int, default=8080, help="the page's port; the API listens on the next one")
    opts.add_argument("--api", action="store_true", help="serve only the HTTP API, on --port")
    opts.add_argument("--out_dir", default="results/app", help="the one folder the server writes (scratch files)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = make_cli_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(args, parser)
    if not 0 < args.port < 65535:
        parser.exit(2, f"app.py: error: --port must lie in 1..65534, got {args.port}\n")
    from authoring.server import ServeOptions, serve_forever
    return serve_forever(cfg, ServeOptions(args.host, args.port, args.out_dir, args.api))


if __name__ == "__main__":
    sys.exit(main())
