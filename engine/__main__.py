"""`python -m engine serve|start|stop|status|attach`: run and manage the engine process.

argparse, not typer: this is what every private engine child is started with, and the engine room keeps off the
front door's CLI library (`difflens engine ...` in tui/cli/engine_cmd.py is the typer side and hands over here)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engine.errors import UserError
from engine.protocol import paths, wire


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="difflens engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_socket(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--socket", type=Path, default=None,
                       help="Unix socket (default: engine.sock in the user's runtime dir)")
        return p

    def with_serve_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tcp", metavar="HOST:PORT", help="also listen on TCP (token required)")
        p.add_argument("--token-file", type=Path, help="0600 token file (created if missing)")
        p.add_argument("--workers", type=int, default=1, help="jobs run at once (default 1)")

    serve = with_socket(sub.add_parser("serve", help="run the engine in the foreground"))
    serve.add_argument("--stdio", action="store_true", help="serve one client over stdin/stdout")
    with_serve_options(serve)
    with_serve_options(with_socket(sub.add_parser("start", help="start a background engine")))
    with_socket(sub.add_parser("stop", help="stop the background engine (cancels its jobs)"))
    status = with_socket(sub.add_parser("status", help="show the background engine"))
    status.add_argument("--json", action="store_true", help="print the raw engine.status result")
    attach = with_socket(sub.add_parser("attach", help="bridge stdio to the engine (starts one if needed)"))
    attach.add_argument("--stdio", action="store_true", required=True, help="bridge stdin/stdout")
    attach.add_argument("--no-start", action="store_true", help="fail instead of starting an engine")
    return parser


def _serve_args(args: argparse.Namespace) -> list[str]:
    out = ["--workers", str(args.workers)]
    if args.tcp:
        out += ["--tcp", args.tcp]
    if args.token_file:
        out += ["--token-file", str(args.token_file.resolve())]
    return out


def _status(sock: Path, as_json: bool) -> int:
    from engine.server import local

    try:
        info = local.call(sock, wire.ENGINE_STATUS)
    except local.NotRunning:
        print(f"no engine running on {sock}", file=sys.stderr if as_json else sys.stdout)
        return 1
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    running = [j for j in info["jobs"] if j["state"] not in wire.FINISHED_STATES]
    print(f"engine pid {info['pid']} on {sock}, up {info['uptime_s']:.0f} s, device {info['device']}, "
          f"{info['clients']} client(s)")
    for model in info["models"]:
        print(f"  model {model['spec']} on {model['device']} ({model['dtype']}, {model['bytes'] / 2**20:.0f} MiB)")
    for job in running:
        print(f"  job {job['job']} {job['method']} {job['state']}, since {time.ctime(job['created'])}")
    for module, err in info.get("op_errors", {}).items():
        print(f"  ops not loaded from {module}: {err}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        sock = (args.socket or paths.default_socket_path()).absolute()
        if args.command == "serve":
            from engine.server.run import serve

            return serve(stdio=args.stdio, socket_path=sock, tcp=args.tcp, token_file=args.token_file,
                         workers=args.workers)
        if args.command == "start":
            from engine.server import daemon

            pid = daemon.start(sock, _serve_args(args))
            print(f"engine started (pid {pid}) on {sock}; log: {daemon.log_path(sock)}")
            return 0
        if args.command == "stop":
            from engine.server import daemon

            stopped = daemon.stop(sock)
            print(f"engine on {sock} stopped" if stopped else f"no engine running on {sock}")
            return 0 if stopped else 1
        if args.command == "status":
            return _status(sock, args.json)
        from engine.server.attach import attach_stdio

        return attach_stdio(sock, start=not args.no_start)
    except (UserError, PermissionError) as exc:
        print(f"difflens engine: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
