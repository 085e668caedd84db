"""The local stack: moto, the Zus emulator, the local API, the scheduler and the rotation player,
started in order and stopped in reverse, all owned by this process (moto is its child).

Modes, per side: AWS is moto started here (default), a moto already running (``aws_endpoint`` a URL),
or the real account of the environment (``aws_endpoint=""``); Zus is the emulator started here
(default) or the URLs given (``zus_api_base`` / ``zus_auth_base``, e.g. the real sandbox). Only what
this process starts is set up by it: a moto it started (or a given endpoint) gets the table, the KMS
key, the rotation function and, with the emulator, the bootstrap admin secret; a real account is
only checked, never written to at start.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from zus_emulator import EmulatorConfig, EmulatorServer
from zus_local.aws_setup import create_kms_key, create_table, store_admin_secret
from zus_local.cfn_yaml import load_template
from zus_local.console import Console, FilteredStdout
from zus_local.lambda_runtime import FunctionLoadError, Invocation, LambdaRuntime
from zus_local.local_api import LocalApi
from zus_local.moto_process import MotoProcess
from zus_local.rotation_player import RotationPlayer
from zus_local.scheduler import Scheduler
from zus_local.secrets_manager_rotation import register_rotation_function
from zus_local.template_model import ResolveContext, TemplateError, TemplateModel
from zus_m2m.aws.token_table import DynamoTokenTable
from zus_m2m.errors import ZusM2MError
from zus_m2m.settings import Settings
from zus_m2m.values import ClientCredentials
from zus_m2m.zus.client import ZusClient

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
MOTO_ACCOUNT = "123456789012"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local"}


class StackError(Exception):
    """Why the stack cannot start, in one line."""


@dataclass(frozen=True)
class StackOptions:
    host: str = "127.0.0.1"
    api_port: int = 3000
    moto_port: int = 5000
    zus_port: int = 8090
    # None: start moto; "": the real AWS account of the environment; a URL: a moto already running.
    aws_endpoint: str | None = None
    # Either set: use these Zus URLs instead of starting the emulator (the other from the template).
    zus_api_base: str = ""
    zus_auth_base: str = ""
    template: Path = TEMPLATE
    parameters: Mapping[str, str] = field(default_factory=dict)
    # Environment variables set in every function after the template's (``--env NAME=VALUE``).
    environment: Mapping[str, str] = field(default_factory=dict)
    stack_name: str = "zus-m2m-local"
    table_name: str = ""  # default: the stack name
    region: str = "us-east-1"
    schedule_scale: float = 1.0  # 0: no schedules
    concurrency: int = 4
    verbose: bool = False
    # The bootstrap admin client: the emulator's (it starts with it), or, with another Zus, the
    # operator's (the guide's steps 1-3); stored as the admin secret in moto. Empty: none stored.
    admin_client_id: str = "local-admin"
    admin_client_secret: str = field(default="local-admin-secret", repr=False)

    @property
    def starts_moto(self) -> bool:
        return self.aws_endpoint is None

    @property
    def uses_moto(self) -> bool:
        return self.aws_endpoint is None or bool(self.aws_endpoint)

    @property
    def starts_emulator(self) -> bool:
        return not (self.zus_api_base or self.zus_auth_base)


def check_port(host: str, port: int, what: str, flag: str) -> None:
    """StackError naming the port if something listens on it."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StackError(f"port {port} is in use ({what}); pass {flag}") from None
            raise StackError(f"cannot listen on {host}:{port} ({what}): {exc.strerror or exc}") from None


class LocalStack:
    def __init__(self, options: StackOptions, console: Console | None = None) -> None:
        self.options = options
        self.console = console or Console()
        self.model: TemplateModel | None = None
        self.runtime: LambdaRuntime | None = None
        self.api: LocalApi | None = None
        self.moto: MotoProcess | None = None
        self.emulator: EmulatorServer | None = None
        self.scheduler: Scheduler | None = None
        self.player: RotationPlayer | None = None
        self.aws_endpoint = ""
        self.zus_api_base = ""
        self.zus_auth_base = ""
        self.account_id = MOTO_ACCOUNT
        self.admin_secret_name = ""
        self.table_name = options.table_name or options.stack_name
        self.notes: list[str] = []
        self._saved_stdout: Any = None
        self._saved_environment: dict[str, str | None] = {}
        self._template: dict[str, Any] = {}
        self._stopped = False

    # --- start -------------------------------------------------------------------------------------

    def start(self) -> LocalStack:
        """Start everything; StackError (one line) if something cannot start. On error, whatever
        started is stopped again before the error propagates."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        options = self.options
        try:
            self._template = load_template(options.template)
            # Resolved once now to refuse a template or parameters the stack cannot run, before any port.
            self._build_model({}, {})
        except (OSError, TemplateError) as exc:
            raise StackError(f"{options.template.name}: {exc}") from None
        if options.schedule_scale < 0:
            raise StackError("--schedule-scale must be positive (or 0 for no schedules)")

        check_port(options.host, options.api_port, "local API", "--api-port")
        if options.starts_moto:
            check_port(options.host, options.moto_port, "moto, the local AWS", "--moto-port")
        if options.starts_emulator:
            check_port(options.host, options.zus_port, "Zus emulator", "--zus-port")

        if options.starts_moto:
            self.moto = MotoProcess(options.host, options.moto_port).start()
        self._start_emulator()
        self._aws_environment()
        # The API's port is taken now (requests wait in the backlog until the handlers are loaded).
        try:
            self.api = LocalApi(self.console, options.host, options.api_port).bind()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StackError(f"port {options.api_port} is in use (local API); pass --api-port") from None
            raise StackError(f"cannot listen on {options.host}:{options.api_port}: {exc.strerror or exc}") from None
        if self.moto is not None:
            try:
                self.moto.wait_ready()
            except RuntimeError as exc:
                raise StackError(str(exc)) from None
        refs, attributes = self._set_up_aws()
        try:
            self.model = self._build_model(refs, attributes)
        except TemplateError as exc:
            raise StackError(f"{options.template.name}: {exc}") from None
        self._install_stdout_filter()
        self.runtime = LambdaRuntime(
            self.model,
            self._function_overrides(),
            region=options.region,
            account_id=self.account_id,
            concurrency=options.concurrency,
        )
        self._quiet_libraries()
        try:
            self.runtime.warm_up()
        except FunctionLoadError as exc:
            raise StackError(str(exc)) from None
        self.api.serve(self.model, self.runtime, account_id=self.account_id)
        if options.schedule_scale > 0 and self.model.schedules:
            self.scheduler = Scheduler(self.model.schedules, self._invoke, self.console, options.schedule_scale).start()
        if options.uses_moto:
            self._start_rotation_player()

    def _build_model(self, refs: Mapping[str, str], attributes: Mapping[str, str]) -> TemplateModel:
        options = self.options
        resources = self._template.get("Resources") or {}
        tables = [name for name, res in resources.items() if (res or {}).get("Type") == "AWS::DynamoDB::Table"]
        table_refs = {name: self._table_name(index, name) for index, name in enumerate(tables)}
        context = ResolveContext(
            region=options.region,
            account_id=self.account_id,
            stack_name=options.stack_name,
            parameters=dict(options.parameters),
            refs={**table_refs, **refs},
            attributes=dict(attributes),
        )
        return TemplateModel.from_template(self._template, context, options.template.resolve().parent)

    def _start_emulator(self) -> None:
        options = self.options
        if not options.starts_emulator:
            self.zus_api_base = options.zus_api_base
            self.zus_auth_base = options.zus_auth_base
            return
        config = EmulatorConfig(
            audience=os.environ.get("ZUS_EMULATOR_AUDIENCE") or EmulatorConfig.audience,
            admin_client_id=options.admin_client_id,
            admin_client_secret=options.admin_client_secret,
            quiet=not options.verbose,
        )
        try:
            self.emulator = EmulatorServer(options.host, options.zus_port, config=config).start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StackError(f"port {options.zus_port} is in use (Zus emulator); pass --zus-port") from None
            raise
        self.zus_api_base = self.zus_auth_base = self.emulator.url

    def _aws_environment(self) -> None:
        """This process's AWS settings, which the handlers' boto3 clients read: moto and fake
        credentials (so nothing can reach a real account), or the environment's real account."""
        options = self.options
        names = ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL", *FAKE_CREDENTIALS)
        self._saved_environment = {name: os.environ.get(name) for name in names}
        os.environ["AWS_DEFAULT_REGION"] = os.environ["AWS_REGION"] = options.region
        if options.uses_moto:
            self.aws_endpoint = self.moto.url if self.moto is not None else str(options.aws_endpoint)
            os.environ.pop("AWS_PROFILE", None)
            os.environ.update(FAKE_CREDENTIALS)
            os.environ["AWS_ENDPOINT_URL"] = self.aws_endpoint
        else:
            self.aws_endpoint = ""
            os.environ.pop("AWS_ENDPOINT_URL", None)

    def _client(self, service: str) -> Any:
        endpoint = self.aws_endpoint or None
        return boto3.client(service, region_name=self.options.region, endpoint_url=endpoint)  # type: ignore[call-overload]

    def _set_up_aws(self) -> tuple[dict[str, str], dict[str, str]]:
        """Create what the functions need where this stack owns AWS; returns the refs and attributes
        that pin the template's resources to what was created (or to nothing, for real AWS)."""
        assert self._template
        provisional = self._build_model({}, {})
        refs: dict[str, str] = {}
        attributes: dict[str, str] = {}
        try:
            if not self.options.uses_moto:
                return self._check_real_aws(provisional)
            for logical_id in provisional.kms_keys:
                arn = create_kms_key(
                    self._client("kms"),
                    f"alias/{self.options.stack_name}-{logical_id}",
                    f"{self.options.stack_name} {logical_id} (local)",
                )
                attributes[f"{logical_id}.Arn"] = arn
                refs[logical_id] = arn.rsplit("/", 1)[1]
            for index, logical_id in enumerate(provisional.tables):
                create_table(self._client("dynamodb"), self._table_name(index, logical_id))
            for logical_id in provisional.rotation_functions:
                spec = provisional.functions[logical_id]
                attributes[f"{logical_id}.Arn"] = register_rotation_function(
                    self.aws_endpoint, spec.arn, self.options.region
                )
            if self.options.admin_client_id and self.options.admin_client_secret:
                self._store_admin_secret(self._build_model(refs, attributes))
            else:
                self.notes.append(
                    "no bootstrap admin secret stored: set ZUS_M2M_ADMIN_CLIENT_ID and ZUS_M2M_ADMIN_CLIENT_SECRET"
                )
        except (BotoCoreError, ClientError, ZusM2MError) as exc:
            raise StackError(f"setting up AWS at {self.aws_endpoint} failed: {exc}") from None
        return refs, attributes

    def _check_real_aws(self, model: TemplateModel) -> tuple[dict[str, str], dict[str, str]]:
        try:
            self.account_id = str(self._client("sts").get_caller_identity()["Account"])
        except (BotoCoreError, ClientError) as exc:
            raise StackError(f"no usable AWS credentials in the environment ({type(exc).__name__}): {exc}") from None
        attributes: dict[str, str] = {}
        # Nothing local stands in for these in a real account: set them with --env if the code needs them.
        for logical_id in model.kms_keys:
            attributes[f"{logical_id}.Arn"] = ""
        for logical_id in model.rotation_functions:
            attributes[f"{logical_id}.Arn"] = ""
        try:
            self._client("dynamodb").describe_table(TableName=self.table_name)
        except ClientError:
            self.notes.append(f"table {self.table_name} was not found in account {self.account_id}; pass --table-name")
        if self.emulator is not None:
            self.notes.append("the emulator's admin client is not stored in a real account; store it yourself")
        return {}, attributes

    def _table_name(self, index: int, logical_id: str) -> str:
        return self.table_name if index == 0 else f"{self.table_name}-{logical_id}"

    def _store_admin_secret(self, model: TemplateModel) -> None:
        first = next(iter(model.functions.values()), None)
        if first is None:
            return
        settings = Settings.from_env({**first.environment, **self._function_overrides()})
        options = self.options
        try:
            zus = ZusClient(settings.zus, timeout=(2.0, 5.0))
            token = zus.request_token(options.admin_client_id, options.admin_client_secret).access_token
            admin = next(c for c in zus.list_app_clients(token) if c.client_id == options.admin_client_id)
            role = zus.find_role("Builder Admin", token)
        except (ZusM2MError, StopIteration) as exc:
            reason = "it does not list it" if isinstance(exc, StopIteration) else type(exc).__name__
            raise StackError(
                f"Zus at {settings.zus.api_base} refused the admin client {options.admin_client_id} ({reason})"
            ) from None
        credentials = ClientCredentials(
            name=settings.admin_client_name,
            app_client_id=admin.id,
            client_id=options.admin_client_id,
            client_secret=options.admin_client_secret,
            role_id=role.id,
            role_name=role.name,
            audience=settings.zus.audience,
        )
        store_admin_secret(
            self._client("secretsmanager"),
            settings.admin_secret_name,
            json.loads(credentials.to_json()),
            kms_key_id=settings.kms_key_id,
        )
        self.admin_secret_name = settings.admin_secret_name
        # A moto kept from an earlier run may cache an admin token of an earlier emulator: forget it.
        DynamoTokenTable(self._client("dynamodb"), settings.table_name).purge(settings.admin_client_name)
        if self.moto is None and self.emulator is not None:
            self.notes.append(
                "moto keeps its data across runs and the emulator starts empty: "
                "clients provisioned by an earlier run are unknown to this emulator"
            )

    def _function_overrides(self) -> dict[str, str]:
        overrides: dict[str, str] = {}
        if self.zus_api_base:
            overrides["ZUS_API_BASE_URL"] = self.zus_api_base
        if self.zus_auth_base:
            overrides["ZUS_AUTH_BASE_URL"] = self.zus_auth_base
        if not self.options.verbose:
            # One line per request: the handlers' INFO logs are for --verbose.
            overrides["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        overrides.update(self.options.environment)
        return overrides

    def _install_stdout_filter(self) -> None:
        if self._saved_stdout is None:
            self._saved_stdout = sys.stdout
            sys.stdout = FilteredStdout(self.console, keep_metrics=self.options.verbose)

    def _quiet_libraries(self) -> None:
        # The rotation player prints one line per step itself; the module's own warnings would repeat them.
        logging.getLogger("zus_local.secrets_manager_rotation").setLevel(logging.CRITICAL)
        if not self.options.verbose:
            # Powertools warns when an invocation recorded no metric (e.g. a 404); harmless locally.
            warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

    def _invoke(self, function: str, event: Any) -> Invocation:
        assert self.runtime is not None
        return self.runtime.invoke(function, event)

    def _start_rotation_player(self) -> None:
        assert self.model is not None
        model = self.model

        def function_for_arn(arn: str) -> str | None:
            spec = model.function_by_arn(arn)
            return spec.logical_id if spec else None

        default = model.rotation_functions[0] if model.rotation_functions else None
        self.player = RotationPlayer(
            self._client("secretsmanager"), self._invoke, function_for_arn, default, self.console
        ).start()

    # --- stop ----------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything this stack started, in reverse order; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        steps: list[Callable[[], None]] = []
        if self.player is not None:
            steps.append(self.player.stop)
        if self.scheduler is not None:
            steps.append(self.scheduler.stop)
        if self.api is not None:
            steps.append(self.api.stop)
        if self.emulator is not None:
            steps.append(self.emulator.stop)
        if self.moto is not None:
            steps.append(self.moto.stop)
        for step in steps:
            try:
                step()
            except Exception as exc:  # keep stopping the rest
                self.console.error(f"stopping: {type(exc).__name__}: {exc}")
        if self._saved_stdout is not None:
            sys.stdout = self._saved_stdout
            self._saved_stdout = None
        for name, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    # --- what to print ---------------------------------------------------------------------------

    def banner(self, elapsed: float) -> str:
        assert self.model is not None
        assert self.api is not None
        model, options = self.model, self.options
        api = self.api.url
        aws = (
            f"{self.aws_endpoint}  (moto{', started here' if self.moto else ''})"
            if self.aws_endpoint
            else f"the real AWS account {self.account_id} ({options.region})"
        )
        zus = (
            f"{self.zus_api_base}  (emulator, admin client {options.admin_client_id})"
            if self.emulator
            else f"{self.zus_api_base or 'the template API URL'} (API), "
            f"{self.zus_auth_base or 'the template auth URL'} (auth)"
        )
        lines = [
            f"zus-m2m local stack ({options.template.name}: {len(model.functions)} functions, "
            f"{len(model.routes)} routes, {len(model.schedules)} schedules)",
            f"  local API     {api}",
            f"  Zus           {zus}",
            f"  AWS           {aws}",
            f"  table         {self.table_name}"
            + (f"; bootstrap admin secret {self.admin_secret_name}" if self.admin_secret_name else ""),
        ]
        if self.scheduler is not None:
            every = ", ".join(
                f"{s.name} every {_seconds(self.scheduler.interval(s))}" for s in self.scheduler.schedules
            )
            scale = f" (--schedule-scale {options.schedule_scale:g})" if options.schedule_scale != 1 else ""
            lines.append(f"  schedules     {every}{scale}")
        elif model.schedules:
            lines.append("  schedules     off (--schedule-scale 0)")
        if self.player is not None:
            lines.append("  rotations     played here: Secrets Manager's four steps through the rotation function")
        if model.ignored_events:
            lines.append(f"  not played    {', '.join(model.ignored_events)}")
        lines.extend(f"  note          {note}" for note in self.notes)
        lines += [
            "",
            "Try:",
            f"  curl -s -X POST {api}/app-clients -H 'content-type: application/json' "
            """-d '{"name":"billing-service"}'""",
            f"  curl -s {api}/app-clients/billing-service/token",
            f"  curl -s -X POST {api}/app-clients/billing-service/rotations",
            "",
            f"ready in {elapsed:.1f}s - Ctrl-C stops everything",
        ]
        return "\n".join(lines)


def _seconds(value: float) -> str:
    if value >= 120 and value % 60 == 0:
        return f"{value / 60:g} min"
    return f"{value:g} s"


@contextlib.contextmanager
def running(options: StackOptions, console: Console | None = None) -> Iterator[LocalStack]:
    """The stack, started, for a ``with`` block (tests and scripts)."""
    stack = LocalStack(options, console).start()
    try:
        yield stack
    finally:
        stack.stop()
