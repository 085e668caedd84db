"""``python -m zus_emulator``: run the Zus emulator until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .server import EmulatorServer
from .state import EmulatorConfig


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        print(f"zus-emulator: {name} must be an integer, got {raw!r}", file=sys.stderr)
        raise SystemExit(2) from None


def build_parser() -> argparse.ArgumentParser:
    defaults = EmulatorConfig()
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m zus_emulator",
        description="Serve a local emulator of the Zus auth API (app clients, roles, OAuth tokens).",
    )
    parser.add_argument("--host", default=env.get("ZUS_EMULATOR_HOST") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=_env_int("ZUS_EMULATOR_PORT", 8090))
    parser.add_argument(
        "--audience",
        default=env.get("ZUS_EMULATOR_AUDIENCE") or defaults.audience,
        help="the audience token requests must name (default %(default)s)",
    )
    parser.add_argument(
        "--admin-client-id", default=env.get("ZUS_EMULATOR_ADMIN_CLIENT_ID") or defaults.admin_client_id
    )
    parser.add_argument(
        "--admin-client-secret",
        default=env.get("ZUS_EMULATOR_ADMIN_CLIENT_SECRET") or defaults.admin_client_secret,
        help="the bootstrap admin client's secret (default from ZUS_EMULATOR_ADMIN_CLIENT_SECRET)",
    )
    parser.add_argument("--token-lifetime", type=int, default=defaults.token_lifetime_seconds, metavar="S")
    parser.add_argument("--token-limit", type=int, default=defaults.token_limit_per_hour, metavar="N")
    parser.add_argument("--secret-propagation", type=float, default=defaults.secret_propagation_seconds, metavar="S")
    parser.add_argument("--roles-as-array", action="store_true", help="answer role lookups with a one-element array")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.token_lifetime < 1 or args.token_limit < 1 or args.secret_propagation < 0:
        print(
            "zus-emulator: --token-lifetime and --token-limit must be >= 1, --secret-propagation >= 0",
            file=sys.stderr,
        )
        return 2
    config = EmulatorConfig(
        audience=args.audience,
        admin_client_id=args.admin_client_id,
        admin_client_secret=args.admin_client_secret,
        token_lifetime_seconds=args.token_lifetime,
        token_limit_per_hour=args.token_limit,
        secret_propagation_seconds=args.secret_propagation,
        roles_as_array=args.roles_as_array,
        quiet=args.quiet,
    )
    server = EmulatorServer(host=args.host, port=args.port, config=config)
    try:
        server.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"zus-emulator: port {args.port} on {args.host} is already in use", file=sys.stderr)
        else:
            reason = exc.strerror or type(exc).__name__
            print(f"zus-emulator: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(
        f"Zus emulator listening on {server.url} (audience {config.audience}, admin client {config.admin_client_id})",
        flush=True,
    )
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
