"""The local stack: moto, the Zus emulator, the local API, the scheduler, the queue pollers and the
rotation player, started in order and stopped in reverse, all owned by this process (moto is its child).

Modes, per side: AWS is moto started here (default), a moto already running (``aws_endpoint`` a URL),
or the real account of the environment (``aws_endpoint=""``); Zus is the emulator started here
(default) or the URLs given (``zus_api_base`` / ``zus_auth_base``, e.g. the real sandbox). Only what
this process starts is set up by it: a moto it started (or a given endpoint) gets the table, the KMS
key, the rotation function and, with the emulator, the bootstrap admin secret; a real account is
only checked, never written to at start.

The template is resolved once, before any port is taken, into the model every part runs from; its
resources' local stand-ins are decided before and made real after (``local_aws``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from zus_emulator import EmulatorConfig, EmulatorServer
from zus_local.cfn_yaml import load_template
from zus_local.console import Console
from zus_local.iam_authorizer import IamAuthorizer
from zus_local.lambda_runtime import FunctionLoadError, Invocation, LambdaRuntime
from zus_local.local_api import LocalApi
from zus_local.local_aws import LocalAws
from zus_local.moto_process import MotoProcess
from zus_local.options import StackError, StackOptions
from zus_local.queue_poller import QueuePoller
from zus_local.rotation_player import RotationPlayer
from zus_local.scheduler import Scheduler
from zus_local.stand_ins import TemplateError
from zus_local.template_model import TemplateModel


def _cannot_listen(exc: OSError, host: str, port: int, what: str, flag: str) -> StackError:
    if exc.errno == errno.EADDRINUSE:
        return StackError(f"port {port} is in use ({what}); pass {flag}")
    return StackError(f"cannot listen on {host}:{port} ({what}): {exc.strerror or exc}")


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
            raise _cannot_listen(exc, host, port, what, flag) from None


class LocalStack:
    def __init__(self, options: StackOptions, console: Console | None = None) -> None:
        self.options = options
        self.console = console or Console()
        self.aws = LocalAws(options)
        self.model: TemplateModel | None = None
        self.api: LocalApi | None = None
        self.moto: MotoProcess | None = None
        self.emulator: EmulatorServer | None = None
        self.runtime: LambdaRuntime | None = None
        self.scheduler: Scheduler | None = None
        self.pollers: list[QueuePoller] = []
        self.player: RotationPlayer | None = None
        self.zus_api_base = options.zus_api_base
        self.zus_auth_base = options.zus_auth_base
        # What was started, stopped in reverse order.
        self._running = contextlib.ExitStack()

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
        self._running.enter_context(self.aws.environment())
        self.model = model = self._resolve_template()
        if options.schedule_scale < 0:
            raise StackError("--schedule-scale must be positive (or 0 for no schedules)")
        api = self._take_ports()
        if self.moto is not None:
            try:
                self.moto.wait_ready()
            except RuntimeError as exc:
                raise StackError(str(exc)) from None
        self.aws.set_up(model, self._function_overrides(), emulator=self.emulator is not None)
        self.runtime = LambdaRuntime(
            model,
            self._function_overrides(),
            region=options.region,
            account_id=self.aws.account_id,
            concurrency=options.concurrency,
            console=self.console,
            verbose=options.verbose,
            freeze=options.freeze,
            idle_seconds=options.idle_seconds,
        )
        self._on_stop(self.runtime.stop)
        self._quiet_libraries()
        try:
            self.runtime.warm_up()
        except FunctionLoadError as exc:
            raise StackError(str(exc)) from None
        authorizer = IamAuthorizer(self.aws.signers(), region=options.region, account_id=self.aws.account_id)
        api.serve(model, self.runtime, authorizer)
        if options.schedule_scale > 0 and model.schedules:
            self.scheduler = Scheduler(model.schedules, self._invoke, self.console, options.schedule_scale).start()
            self._on_stop(self.scheduler.stop)
        if options.uses_moto:
            self._start_queue_pollers(model)
            self._start_rotation_player(model)

    def _resolve_template(self) -> TemplateModel:
        """The model every part runs from, resolved once, before any port is taken: a template or
        parameters the stack cannot run stop it here."""
        options = self.options
        try:
            template = load_template(options.template)
            self.aws.find_account()
            context = self.aws.resolve_context(template)
            return TemplateModel.from_template(template, context, options.template.resolve().parent)
        except (OSError, TemplateError) as exc:
            raise StackError(f"{options.template.name}: {exc}") from None

    def _take_ports(self) -> LocalApi:
        """Check every port first, then start moto and the emulator and bind the API (requests wait in
        its backlog until the handlers are loaded)."""
        options = self.options
        check_port(options.host, options.api_port, "local API", "--api-port")
        if options.starts_moto:
            check_port(options.host, options.moto_port, "moto, the local AWS", "--moto-port")
        if options.starts_emulator:
            check_port(options.host, options.zus_port, "Zus emulator", "--zus-port")
        if options.starts_moto:
            self.moto = MotoProcess(options.host, options.moto_port).start()
            self._on_stop(self.moto.stop)
        if options.starts_emulator:
            self._start_emulator()
        try:
            self.api = LocalApi(self.console, options.host, options.api_port).bind()
        except OSError as exc:
            raise _cannot_listen(exc, options.host, options.api_port, "local API", "--api-port") from None
        self._on_stop(self.api.stop)
        return self.api

    def _on_stop(self, stop: Callable[[], None]) -> None:
        """Call ``stop`` when the stack stops (before what started earlier is stopped)."""

        def stop_and_go_on() -> None:
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                self.console.error(f"stopping: {type(exc).__name__}: {exc}")

        self._running.callback(stop_and_go_on)

    def _start_emulator(self) -> None:
        options = self.options
        config = EmulatorConfig(
            audience=os.environ.get("ZUS_EMULATOR_AUDIENCE") or EmulatorConfig.audience,
            admin_client_id=options.admin_client_id,
            admin_client_secret=options.admin_client_secret,
            quiet=not options.verbose,
        )
        try:
            emulator = EmulatorServer(options.host, options.zus_port, config=config).start()
        except OSError as exc:
            raise _cannot_listen(exc, options.host, options.zus_port, "Zus emulator", "--zus-port") from None
        self.emulator = emulator
        self._on_stop(emulator.stop)
        self.zus_api_base = self.zus_auth_base = emulator.url

    def _function_overrides(self) -> dict[str, str]:
        overrides: dict[str, str] = {}
        if self.zus_api_base:
            overrides["ZUS_API_BASE_URL"] = self.zus_api_base
        if self.zus_auth_base:
            overrides["ZUS_AUTH_BASE_URL"] = self.zus_auth_base
        if not self.options.verbose:
            # One line per request: the handlers' INFO logs are for --verbose.
            overrides["POWERTOOLS_LOG_LEVEL"] = "WARNING"
            # Powertools warns when an invocation recorded no metric (e.g. a 404); harmless locally.
            overrides["PYTHONWARNINGS"] = "ignore:No application metrics to publish:UserWarning"
        overrides.update(self.options.environment)
        return overrides

    def _quiet_libraries(self) -> None:
        # The rotation player prints one line per step itself; the module's own warnings would repeat them.
        logging.getLogger("zus_local.secrets_manager_rotation").setLevel(logging.CRITICAL)

    def _invoke(self, function: str, event: Any) -> Invocation:
        assert self.runtime is not None
        return self.runtime.invoke(function, event)

    def _start_queue_pollers(self, model: TemplateModel) -> None:
        """Each SQS event source of the template, played against its queue in moto."""
        sqs = self.aws.client("sqs")
        for subscription in model.subscriptions:
            poller = QueuePoller(
                sqs,
                subscription,
                model.queues[subscription.queue],
                self.aws.queue_urls[subscription.queue],
                self._invoke,
                self.console,
                region=self.options.region,
                concurrency=self.options.concurrency,
            ).start()
            self.pollers.append(poller)
            self._on_stop(poller.stop)

    def _start_rotation_player(self, model: TemplateModel) -> None:
        def function_for_arn(arn: str) -> str | None:
            spec = model.function_by_arn(arn)
            return spec.logical_id if spec else None

        default = model.rotation_functions[0] if model.rotation_functions else None
        self.player = RotationPlayer(
            self.aws.client("secretsmanager"), self._invoke, function_for_arn, default, self.console
        ).start()
        self._on_stop(self.player.stop)

    # --- stop ----------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything this stack started, in reverse order; safe to call twice."""
        self._running.close()
