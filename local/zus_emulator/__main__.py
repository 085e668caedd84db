"""``python -m zus_emulator``: run the Zus emulator until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import sys
from collections.abc import Sequence

from .config import DIALECTS, PROPAGATION_MODES, EmulatorConfig
from .http_server import stop_requested, wait_until_stopped
from .server import EmulatorServer


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
    """Every option but --host and --port sets the EmulatorConfig field of its ``dest``."""
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
    for flag, name, kind, metavar, meaning in (
        ("--token-lifetime", "token_lifetime_seconds", int, "S", "seconds an access token lives"),
        ("--token-limit", "token_limit_per_hour", int, "N", "token requests per client per rolling hour"),
        (
            "--secret-propagation",
            "secret_propagation_seconds",
            float,
            "S",
            "seconds a rotated secret takes to take effect everywhere",
        ),
    ):
        parser.add_argument(
            flag,
            dest=name,
            type=kind,
            default=getattr(defaults, name),
            metavar=metavar,
            help=f"{meaning} (default %(default)s)",
        )
    parser.add_argument(
        "--dialect",
        choices=DIALECTS,
        default=defaults.dialect,
        help="how /oauth/token words its answers: auth0 (401 access_denied, 429 with x-ratelimit-* headers, "
        "as Zus's Auth0 tenant does) or rfc6749 (401 invalid_client, 429 with Retry-After); default %(default)s",
    )
    parser.add_argument(
        "--propagation-mode",
        choices=PROPAGATION_MODES,
        default=defaults.propagation_mode,
        help="during --secret-propagation after a rotation, each request meets the old or the new secret at "
        "random (as Auth0 does), or the old one alone until the window ends; default %(default)s",
    )
    parser.add_argument("--roles-as-array", action="store_true", help="answer role lookups with a one-element array")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    return parser


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    names = {field.name for field in dataclasses.fields(EmulatorConfig)}
    return EmulatorConfig(**{name: value for name, value in vars(args).items() if name in names})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from(args)
    if config.token_lifetime_seconds < 1 or config.token_limit_per_hour < 1 or config.secret_propagation_seconds < 0:
        print(
            "zus-emulator: --token-lifetime and --token-limit must be >= 1, --secret-propagation >= 0",
            file=sys.stderr,
        )
        return 2
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
    stopping = stop_requested()
    print(
        f"Zus emulator listening on {server.url} (audience {config.audience}, admin client {config.admin_client_id})",
        flush=True,
    )
    try:
        wait_until_stopped(stopping)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
