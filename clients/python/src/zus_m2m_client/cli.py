"""``zus-m2m``: the operators' command line for a zus-m2m deployment, in the AWS CLI's habits.

Requests are signed with the AWS credentials of ``--profile`` (or botocore's default chain). Results
print as JSON (``--output json``, the default) or as a table; ``token`` prints the access token alone
unless ``--output`` is given.
An error prints one line on stderr and exits with its class's code (see ``--help``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import botocore.session

from zus_m2m_client.api import MAX_MIN_TTL, MAX_PAGE_SIZE, ZusM2MApi, validate_client_name
from zus_m2m_client.errors import ConfigurationError, ZusM2MError
from zus_m2m_client.output import CLIENT_COLUMNS, as_json, as_table
from zus_m2m_client.tokens import TokenProvider
from zus_m2m_client.transport import SigV4Transport, Transport, normalize_api_url

PROG = "zus-m2m"
API_URL_VARIABLE = "ZUS_M2M_API_URL"
EXIT_INTERRUPTED = 130
_ARN = re.compile(r"arn:[a-z-]+:[a-z0-9-]+:[a-z0-9-]*:\d{12}:\S+")

EXIT_CODES = """\
exit codes:
  0  done
  1  the API refused the request (400, 422, or another error)
  2  usage: a bad command line
  3  not found (404)
  4  forbidden (401, 403: the IAM identity may not call the route, or the signature was refused)
  5  conflict (409)
  6  throttled (429)
  7  unavailable (5xx)
  8  no answer from the API
  9  configuration: no AWS credentials, region or profile
"""


def run() -> None:
    """The console script."""
    sys.exit(main())


def main(argv: Sequence[str] | None = None, *, transport: Transport | None = None) -> int:
    """Run one command; returns the exit code. ``transport`` replaces the SigV4 HTTP transport (tests)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    api_url = args.api_url or os.environ.get(API_URL_VARIABLE)
    if not api_url:
        parser.error(f"--api-url is required (or set {API_URL_VARIABLE})")
    try:
        api_url = normalize_api_url(api_url)
    except ConfigurationError as exc:
        parser.error(f"--api-url {api_url!r}: {exc}")
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if transport is None:
            session = botocore.session.Session(profile=args.profile) if args.profile else None
            transport = SigV4Transport(api_url, session=session, region=args.region)
        command: Callable[[argparse.Namespace, str, Transport], str | None] = args.command
        printed = command(args, api_url, transport)
    except ZusM2MError as exc:
        retry = getattr(exc, "retry_after", None)
        hint = f" (retry after {retry:.0f} s)" if retry else ""
        print(f"{PROG}: {exc}{hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if printed is not None:
        print(printed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Manage a zus-m2m deployment's Zus app clients and get their access tokens.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    _add_global_options(parser, defaults=True)
    # The global options are accepted after the command too (`zus-m2m clients list --output table`).
    anywhere = argparse.ArgumentParser(add_help=False)
    _add_global_options(anywhere, defaults=False)
    commands = parser.add_subparsers(metavar="COMMAND", required=True)

    clients = commands.add_parser(
        "clients", parents=[anywhere], help="create, list, show, grant, revoke, rotate, delete"
    )
    actions = clients.add_subparsers(metavar="ACTION", required=True)
    create = actions.add_parser("create", parents=[anywhere], help="provision a Zus app client")
    create.add_argument("name", metavar="NAME", type=_client_name)
    create.add_argument("--role", metavar="ROLE", help="its Zus role (default: the service's, Builder Admin)")
    create.add_argument(
        "--consumer",
        metavar="ARN",
        dest="consumers",
        action="append",  # one ARN each: `--consumer ARN NAME` leaves NAME to the positional
        type=_arn,
        default=[],
        help="an IAM principal allowed to get its tokens (repeatable)",
    )
    create.set_defaults(command=_create)
    listing = actions.add_parser("list", parents=[anywhere], help="every managed client (every page)")
    listing.add_argument("--limit", metavar="N", type=_count(1, None), help="at most N clients")
    listing.add_argument(
        "--page-size",
        metavar="N",
        type=_count(1, MAX_PAGE_SIZE),
        help=f"clients per request (1-{MAX_PAGE_SIZE}; default: the API's, 50)",
    )
    listing.set_defaults(command=_list)
    drift = actions.add_parser("drift", parents=[anywhere], help="app clients at Zus not managed here, and the reverse")
    drift.set_defaults(command=_drift)
    for name, help_text, command in (
        ("show", "one client: record, rotations, cached token expiry, budget", _show),
        ("rotate", "start a rotation of its secret", _rotate),
        ("delete", "delete it at Zus, schedule its secret's deletion, purge its tokens", _delete),
    ):
        action = actions.add_parser(name, parents=[anywhere], help=help_text)
        action.add_argument("name", metavar="NAME", type=_client_name)
        action.set_defaults(command=command)
    for name, help_text, command in (
        ("grant", "allow an IAM principal to get its tokens", _grant),
        ("revoke", "stop allowing an IAM principal to get its tokens", _revoke),
    ):
        action = actions.add_parser(name, parents=[anywhere], help=help_text)
        action.add_argument("name", metavar="NAME", type=_client_name)
        action.add_argument("arn", metavar="ARN", type=_arn)
        action.set_defaults(command=command)

    token = commands.add_parser("token", parents=[anywhere], help="print a client's access token, and nothing else")
    token.add_argument("name", metavar="NAME", type=_client_name)
    token.add_argument(
        "--min-ttl", metavar="N", type=_min_ttl, default=60, help="seconds the token has left at least (default 60)"
    )
    token.set_defaults(command=_token)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("zus-m2m-client")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "(not installed)"


def _add_global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--api-url", default=default(None), help=f"the zus-m2m API (default: ${API_URL_VARIABLE})")
    parser.add_argument("--profile", default=default(None), help="the AWS profile whose credentials sign requests")
    parser.add_argument(
        "--region", default=default(None), help="the region to sign for (default: the URL's, else the profile's)"
    )
    parser.add_argument(
        "--output",
        choices=("json", "table"),
        default=default(None),
        help="default: json (token: the token alone, unless --output is given)",
    )
    parser.add_argument(
        "--debug", action="store_true", default=default(False), help="log to stderr (never tokens or credentials)"
    )


def _client_name(value: str) -> str:
    try:
        return validate_client_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _arn(value: str) -> str:
    if not _ARN.fullmatch(value):
        raise argparse.ArgumentTypeError(f"not an IAM ARN: {value!r} (e.g. arn:aws:iam::123456789012:role/billing)")
    return value


def _count(low: int, high: int | None) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not value.isdigit() or int(value) < low or (high is not None and int(value) > high):
            raise argparse.ArgumentTypeError(f"a number from {low}{f' to {high}' if high else ' up'}, not {value!r}")
        return int(value)

    return parse


def _min_ttl(value: str) -> int:
    if not value.isdigit() or int(value) > MAX_MIN_TTL:
        raise argparse.ArgumentTypeError(f"seconds from 0 to {MAX_MIN_TTL}, not {value!r}")
    return int(value)


# --- the commands: each returns what to print, or None ----------------------------------------------


def _render(args: argparse.Namespace, result: dict[str, Any]) -> str:
    return as_table(result, ()) if args.output == "table" else as_json(result)


# What `show` adds to a client's record; a grant or revoke prints the record alone, changed or not.
_DETAILS = ("lastRotation", "nextRotation", "token", "budget")


def _create(args: argparse.Namespace, api_url: str, transport: Transport) -> str:
    api = ZusM2MApi(api_url, transport=transport)
    return _render(args, api.create_client(args.name, role_name=args.role, consumers=args.consumers))


def _list(args: argparse.Namespace, api_url: str, transport: Transport) -> str:
    clients = ZusM2MApi(api_url, transport=transport).list_clients(limit=args.limit, page_size=args.page_size)
    return as_table(clients, CLIENT_COLUMNS) if args.output == "table" else as_json({"appClients": clients})


def _drift(args: argparse.Namespace, api_url: str, transport: Transport) -> str:
    """Both lists; as a table, one row per app client with the side it is missing from."""
    drift = ZusM2MApi(api_url, transport=transport).drift()
    if args.output != "table":
        return as_json(drift)
    rows = [{"drift": "unmanaged at Zus", **client} for client in drift.get("unmanagedAtZus", [])]
    rows += [{"drift": "missing at Zus", **client} for client in drift.get("missingAtZus", [])]
    return as_table(
        rows, (("DRIFT", "drift"), ("NAME", "name"), ("APP CLIENT", "appClientId"), ("CLIENT ID", "clientId"))
    )


def _show(args: argparse.Namespace, api_url: str, transport: Transport) -> str:
    return _render(args, ZusM2MApi(api_url, transport=transport).get_client(args.name))


def _rotate(args: argparse.Namespace, api_url: str, transport: Transport) -> str:
    return _render(args, ZusM2MApi(api_url, transport=transport).start_rotation(args.name))


def _delete(args: argparse.Namespace, api_url: str, transport: Transport) -> str:
    ZusM2MApi(api_url, transport=transport).delete_client(args.name)
    return _render(args, {"name": args.name, "deleted": True})


def _grant(args: argparse.Namespace, api_url: str, transport: Transport) -> str:
    return _change_consumers(args, ZusM2MApi(api_url, transport=transport), add=True)


def _revoke(args: argparse.Namespace, api_url: str, transport: Transport) -> str:
    return _change_consumers(args, ZusM2MApi(api_url, transport=transport), add=False)


def _change_consumers(args: argparse.Namespace, api: ZusM2MApi, *, add: bool) -> str:
    """GET the client, then PATCH its consumers with the ARN added or removed; no PATCH if nothing changes."""
    record = api.get_client(args.name)
    current = record.get("consumers") or []
    if not isinstance(current, list):
        raise ZusM2MError(f"the API answered a client whose consumers are not a list: {type(current).__name__}")
    wanted = (
        ([*current, args.arn] if args.arn not in current else current) if add else [c for c in current if c != args.arn]
    )
    if wanted == current:
        return _render(args, {key: value for key, value in record.items() if key not in _DETAILS})
    return _render(args, api.set_consumers(args.name, wanted))


def _token(args: argparse.Namespace, api_url: str, transport: Transport) -> str:
    provider = TokenProvider(api_url, args.name, min_ttl=args.min_ttl, refresh_margin=0, transport=transport)
    token = provider.get_token()
    if args.output is None:
        return token.access_token
    document = {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_in": token.expires_in,
        "expires_at": token.expires_at,
    }
    return _render(args, document)
