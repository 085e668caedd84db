"""``python -m zus_local`` (``make dev``): the whole system on this machine, until Ctrl-C or SIGTERM.

moto (AWS), the Zus emulator, the local API serving template.yaml's routes through the real
handlers, the scheduler firing template.yaml's schedules, and Secrets Manager's part in rotations.
Every address can be changed by flag or environment variable; ``--aws-endpoint ''`` uses the real AWS
account of the environment and ``--zus-api-base``/``--zus-auth-base`` a real Zus instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STARTED = time.monotonic()

# The clock starts before the imports.
from zus_emulator.http_server import stop_requested, wait_until_stopped  # noqa: E402
from zus_local.banner import banner  # noqa: E402
from zus_local.console import Console  # noqa: E402
from zus_local.local_principals import DEFAULT_CREDENTIALS_FILE  # noqa: E402
from zus_local.options import TEMPLATE, StackError, StackOptions  # noqa: E402
from zus_local.stack import LocalStack  # noqa: E402
from zus_local.terminal import foreground_of_its_own  # noqa: E402

PROG = "python -m zus_local"


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"zus-local: {name} must be a port number, got {raw!r}") from None


def _pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"zus-local: {flag} takes NAME=VALUE, got {item!r}")
        pairs[name] = value
    return pairs


def _url(value: str) -> str:
    return value.rstrip("/")


def build_parser() -> argparse.ArgumentParser:
    """Each option sets the StackOptions field of its ``dest``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run zus-m2m locally: moto, the Zus emulator, the local API and the schedules.",
    )
    parser.add_argument("--host", default=_env("ZUS_M2M_HOST", "127.0.0.1"), help="[ZUS_M2M_HOST] %(default)s")
    parser.add_argument(
        "--api-port", type=int, default=_env_int("ZUS_M2M_API_PORT", 3000), help="[ZUS_M2M_API_PORT] %(default)s"
    )
    parser.add_argument(
        "--moto-port", type=int, default=_env_int("ZUS_M2M_MOTO_PORT", 5000), help="[ZUS_M2M_MOTO_PORT] %(default)s"
    )
    parser.add_argument(
        "--zus-port", type=int, default=_env_int("ZUS_M2M_ZUS_PORT", 8090), help="[ZUS_M2M_ZUS_PORT] %(default)s"
    )
    parser.add_argument(
        "--aws-endpoint",
        default=os.environ.get("ZUS_M2M_AWS_ENDPOINT"),
        metavar="URL",
        help="[ZUS_M2M_AWS_ENDPOINT] a moto already running; '' for the real AWS account of the environment "
        "(default: start moto on --moto-port)",
    )
    for flag, variable, what in (
        (
            "--zus-api-base",
            "ZUS_M2M_ZUS_API_BASE",
            "a real Zus API instead of the emulator, e.g. https://api.sandbox.zusapi.com",
        ),
        ("--zus-auth-base", "ZUS_M2M_ZUS_AUTH_BASE", "a real Zus auth server, e.g. https://auth.sandbox.zusapi.com"),
    ):
        parser.add_argument(
            flag, type=_url, default=_url(_env(variable, "")), metavar="URL", help=f"[{variable}] {what}"
        )
    parser.add_argument(
        "--schedule-scale",
        type=float,
        default=float(_env("ZUS_M2M_SCHEDULE_SCALE", "1")),
        metavar="N",
        help="[ZUS_M2M_SCHEDULE_SCALE] run schedules N times as often (60: rate(1 minute) every second; 0: off)",
    )
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="the SAM template (default %(default)s)")
    parser.add_argument(
        "--credentials-file",
        type=Path,
        default=Path(_env("ZUS_M2M_CREDENTIALS_FILE", str(DEFAULT_CREDENTIALS_FILE))),
        metavar="PATH",
        help="[ZUS_M2M_CREDENTIALS_FILE] where the local admin's and consumer's keys go (an AWS shared "
        "credentials file; keys.env beside it) (default %(default)s)",
    )
    for flag, dest, what in (
        ("--param", "parameters", "a template parameter override"),
        ("--env", "environment", "set a variable in every function"),
    ):
        parser.add_argument(flag, dest=dest, action="append", default=[], metavar="NAME=VALUE", help=what)
    parser.add_argument(
        "--stack-name", default=_env("ZUS_M2M_STACK_NAME", "zus-m2m-local"), help="[ZUS_M2M_STACK_NAME] %(default)s"
    )
    parser.add_argument(
        "--table-name", default=_env("ZUS_M2M_TABLE_NAME", ""), help="[ZUS_M2M_TABLE_NAME] default: the stack name"
    )
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        help="[AWS_REGION] %(default)s",
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="execution environments per function at most (default %(default)s)"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=300.0,
        metavar="S",
        help="end an execution environment idle this long (default %(default)g; 0: never)",
    )
    parser.add_argument(
        "--no-freeze",
        dest="freeze",
        action="store_false",
        help="debugging only: do not freeze environments between invocations (Lambda always does)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="also the handlers' INFO logs and metrics, and the emulator's requests"
    )
    return parser


def options_from(args: argparse.Namespace) -> StackOptions:
    values: dict[str, Any] = {
        field.name: getattr(args, field.name) for field in dataclasses.fields(StackOptions) if field.name in args
    }
    values["parameters"] = _pairs(args.parameters, "--param")
    values["environment"] = _pairs(args.environment, "--env")
    values.update(admin_client(external_zus=bool(args.zus_api_base or args.zus_auth_base)))
    return StackOptions(**values)


def admin_client(*, external_zus: bool) -> dict[str, str]:
    """The bootstrap admin client the stack stores in moto: the emulator's, or with another Zus the
    operator's from ZUS_M2M_ADMIN_CLIENT_ID / ZUS_M2M_ADMIN_CLIENT_SECRET (none if unset)."""
    if external_zus:
        return {
            "admin_client_id": _env("ZUS_M2M_ADMIN_CLIENT_ID", ""),
            "admin_client_secret": _env("ZUS_M2M_ADMIN_CLIENT_SECRET", ""),
        }
    return {
        "admin_client_id": _env("ZUS_EMULATOR_ADMIN_CLIENT_ID", "local-admin"),
        "admin_client_secret": _env("ZUS_EMULATOR_ADMIN_CLIENT_SECRET", "local-admin-secret"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    options = options_from(build_parser().parse_args(argv))
    # Ctrl-C reaches the stack alone: under make, make then exits 0 after a clean stop (zus_local.terminal).
    with foreground_of_its_own():
        return run(options)


def run(options: StackOptions) -> int:
    """Start the stack, wait for Ctrl-C or SIGTERM, stop it; 0 after a clean stop."""
    console = Console()
    # A second Ctrl-C while stopping: give up waiting.
    stopping = stop_requested(on_second=lambda: os._exit(130))
    stack = LocalStack(options, console)
    try:
        stack.start()
    except StackError as exc:
        console.error(f"zus-local: {exc}")
        return 1
    if stopping.is_set():  # a signal arrived while starting
        stack.stop()
        return 0
    console.raw(banner(stack, time.monotonic() - STARTED))
    wait_until_stopped(stopping)
    console.raw("stopping ...")
    stack.stop()
    console.raw("stopped")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything this process started is stopped; a thread of a library (e.g. boto3's) may still sit
    # in a network call to the moto that just stopped. Do not wait for it.
    os._exit(code)
