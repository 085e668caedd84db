"""The composition root: builds, from the settings, the use cases a handler serves and the adapters
they run on, once per container.

Handlers build a ``Container`` at module scope; tests and the local stack pass their own boto3
clients and Zus client. Provisioning and rotation load on first need: the token vending function,
whose cold start matters most, never imports them (nor requests, nor makes its Secrets Manager
client, until its first token request).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import botocore.session
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config

from zus_m2m import deadline
from zus_m2m.access import AccessPolicy
from zus_m2m.aws.secrets import SecretsManagerStore
from zus_m2m.aws.table import TableKeys
from zus_m2m.aws.token_table import DynamoTokenTable
from zus_m2m.ports import (
    Checkpoint,
    ClientRecords,
    Clock,
    PageTokens,
    RequestGuards,
    Runtime,
    SecretReader,
    SecretStore,
    TokenEndpoint,
    TokenIssuer,
    TokenTable,
    no_checkpoint,
)
from zus_m2m.settings import Settings
from zus_m2m.tokens.memory import MemoryTier
from zus_m2m.tokens.policy import VendingPolicy
from zus_m2m.tokens.single_flight import SingleFlight
from zus_m2m.tokens.upstream import UpstreamTokens
from zus_m2m.tokens.vendor import TokenVendor
from zus_m2m.values import AccessToken, SecretNaming
from zus_m2m.zus.endpoints import ZusEndpoints

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

    from zus_m2m.aws.due_index import DynamoDueIndex
    from zus_m2m.provisioning.admin import BootstrapAdmin
    from zus_m2m.provisioning.consumers import UpdateConsumers
    from zus_m2m.provisioning.create import CreateClient
    from zus_m2m.provisioning.drift import Drift
    from zus_m2m.provisioning.policy import ProvisioningPolicy
    from zus_m2m.provisioning.queries import ClientQueries
    from zus_m2m.provisioning.retire import RetireClient
    from zus_m2m.provisioning.start_rotation import StartRotation
    from zus_m2m.rotation.repair import RotationRepair
    from zus_m2m.rotation.steps import RotationSteps
    from zus_m2m.rotation.sweep import RotationSweep
    from zus_m2m.work.dispatch import DueWorkDispatch
    from zus_m2m.work.worker import Worker
    from zus_m2m.zus.client import ZusClient

# AWS calls of background functions (rotation, worker, dispatcher, provisioning): standard retries,
# 3 retries after the first attempt (botocore's max_attempts counts retries), 5 s to answer.
AWS_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})
# The vending path fails fast (docs/reliability.md, "AWS-side faults"): a stalled DynamoDB or Secrets
# Manager call gets 1 s and one retry, so that it becomes a 503 well within the function's 10 s, not a
# Lambda timeout (with AWS_CONFIG, four 5-s attempts: the AWS fault rows saw 500s after 10 s).
VENDING_AWS_CONFIG = Config(connect_timeout=1, read_timeout=1, retries={"mode": "standard", "total_max_attempts": 2})
# The token vending function has 10 s (template.yaml): a token request gets 1 s to connect (urllib3
# retries a failed connect 3 times) and 3 s to answer, and the vendor starts no retry later than
# VendingPolicy.retry_window_seconds into a vend call, so one that Zus leaves hanging answers 503 in
# about 7 s.
TOKEN_VENDING_ZUS_TIMEOUT = (1.0, 3.0)
# An admin token must outlive the admin calls made with it (rotate-secret: seconds); where tokens live
# no longer than this, the vendor settles for one with half a lifetime left.
ADMIN_TOKEN_MIN_TTL = 60


@functools.cache
def aws_session() -> botocore.session.Session:
    """The container's one SDK session, as ``boto3.client``'s default session is: a second one would load
    the endpoint and model data again (about 35 ms on 3.13). The benchmarks hook its events."""
    return botocore.session.get_session()


def aws_client(service: str, config: Config = AWS_CONFIG) -> Any:
    """An SDK client, made with botocore's session as ``boto3.client`` makes it, without importing boto3:
    its import brings s3transfer and multiprocessing, about 14 ms of a cold start the vending function
    does not need (docs/design.md). ``AWS_ENDPOINT_URL`` (set by the local stack) points it at moto."""
    return aws_session().create_client(service, config=config)


class FirstUseAwsClient:
    """A boto3 client made at its first request, not at init: the vending function reads a secret only
    to mint, which most containers never do, so their cold start skips making a Secrets Manager client
    (its service model and endpoint rules are loaded then)."""

    def __init__(self, service: str, config: Config = AWS_CONFIG) -> None:
        self._service = service
        self._config = config
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = aws_client(self._service, self._config)
        return getattr(self._client, name)


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class PowertoolsMetrics:
    """``MetricsSink`` over Powertools Metrics (CloudWatch EMF)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def count(self, name: str, value: float = 1.0) -> None:
        self._metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)

    def duration(self, name: str, seconds: float) -> None:
        self._metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=round(seconds * 1000, 1))


def invocation(metrics: Metrics) -> Callable[[Handler], Handler]:
    """Each invocation runs within the Lambda context's remaining time (``zus_m2m.deadline``) and
    publishes its metrics after, as ``@metrics.log_metrics`` does, unless it recorded none."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def invoke(event: dict[str, Any], context: Any) -> dict[str, Any]:
            try:
                with deadline.within(context.get_remaining_time_in_millis() / 1000):
                    return handler(event, context)
            finally:
                if metrics.metric_set:  # a request refused before any metric: nothing to publish
                    metrics.flush_metrics()

        return invoke

    return decorate


def zus_client(endpoints: ZusEndpoints, timeout: tuple[float, float] | None = None) -> ZusClient:
    from zus_m2m.zus.client import DEFAULT_TIMEOUT, ZusClient

    return ZusClient(endpoints, timeout=timeout or DEFAULT_TIMEOUT)


class FirstUseZusClient:
    """The vending function's Zus client, built (and requests imported) at its first token request:
    most containers are served from the DynamoDB tier and never need one, so their cold start skips it."""

    def __init__(self, endpoints: ZusEndpoints, timeout: tuple[float, float]) -> None:
        self._endpoints = endpoints
        self._timeout = timeout
        self._client: ZusClient | None = None

    def request_token(self, client_id: str, client_secret: str) -> AccessToken:
        if self._client is None:
            self._client = zus_client(self._endpoints, self._timeout)
        return self._client.request_token(client_id, client_secret)


def token_vendor(
    table: TokenTable,
    secrets: SecretReader,
    endpoint: TokenEndpoint,
    naming: SecretNaming,
    access: AccessPolicy,
    policy: VendingPolicy,
    runtime: Runtime,
) -> TokenVendor:
    """The vendor and its tiers: this container's memory, ``table``, and Zus at ``endpoint`` behind the
    single flight's lease."""
    upstream = UpstreamTokens(table, secrets, endpoint, naming, policy, runtime)
    flight = SingleFlight(table, upstream, MemoryTier(naming.admin_client_name), policy, runtime)
    return TokenVendor(flight, secrets, naming, access, runtime)


class VendedAdminTokens:
    """``AdminTokens`` from token vending: the bootstrap admin's token, cached like any client's."""

    def __init__(self, vendor: TokenVendor, admin_client_name: str) -> None:
        self._vendor = vendor
        self._name = admin_client_name

    def bearer(self) -> str:
        # Best effort: where Zus's tokens live no longer than ADMIN_TOKEN_MIN_TTL, a fresh one must do.
        return self._vendor.admin_token(ADMIN_TOKEN_MIN_TTL).access_token


@dataclass(frozen=True)
class ProvisioningPorts:
    """What the provisioning use cases run on: AWS and Zus adapters here, fakes in unit tests.
    ``admin``: Zus's admin API called with the bootstrap admin's tokens."""

    records: ClientRecords
    guards: RequestGuards
    secrets: SecretStore
    table: TokenTable
    admin: BootstrapAdmin
    issuer: TokenIssuer
    page_tokens: PageTokens


@dataclass(frozen=True)
class Provisioning:
    """The provisioning function's use cases (``zus_m2m.provisioning``)."""

    create_client: CreateClient
    queries: ClientQueries
    retire_client: RetireClient
    start_rotation: StartRotation
    update_consumers: UpdateConsumers
    drift: Drift


def provisioning_use_cases(
    ports: ProvisioningPorts, policy: ProvisioningPolicy, runtime: Runtime, *, repair: RotationRepair
) -> Provisioning:
    """The use cases, wired to one another and to ``ports``; ``repair`` repairs a rotation on request."""
    from zus_m2m.provisioning.consumers import UpdateConsumers
    from zus_m2m.provisioning.create import CreateClient
    from zus_m2m.provisioning.drift import Drift
    from zus_m2m.provisioning.queries import ClientQueries
    from zus_m2m.provisioning.retire import RetireClient
    from zus_m2m.provisioning.secret_keeper import SecretKeeper
    from zus_m2m.provisioning.start_rotation import StartRotation

    admin = ports.admin
    keeper = SecretKeeper(ports.secrets, admin.zus, ports.issuer, policy, clock=runtime.clock, sleep=runtime.sleep)
    queries = ClientQueries(ports.records, ports.secrets, ports.table, policy, ports.page_tokens, clock=runtime.clock)
    return Provisioning(
        create_client=CreateClient(ports.records, admin, keeper, policy, runtime),
        queries=queries,
        retire_client=RetireClient(ports.records, admin, keeper, ports.table, policy, runtime),
        start_rotation=StartRotation(queries, ports.guards, ports.secrets, repair, policy, runtime),
        update_consumers=UpdateConsumers(ports.records, policy, runtime.metrics),
        drift=Drift(queries, admin),
    )


@dataclass(frozen=True)
class AwsClients:
    """The boto3 clients a container uses; one left out is made with ``AWS_CONFIG`` when first needed
    (tests and the local stack pass theirs, the vending function its fail-fast ones)."""

    dynamodb: DynamoDBClient | None = None
    secretsmanager: SecretsManagerClient | None = None
    sqs: Any = None
    kms: Any = None


class Container:
    """What one Lambda container builds from the settings: its AWS and Zus clients, and on request
    the token vendor, the provisioning use cases, the rotation steps and repair, or scheduled work
    (its dispatch and its worker). ``clock``: the time every part goes by (the benchmarks set it)."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        aws: AwsClients = AwsClients(),
        zus: ZusClient | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self._metrics = PowertoolsMetrics(metrics)
        self._dynamodb = aws.dynamodb or aws_client("dynamodb")
        self._secretsmanager = aws.secretsmanager or aws_client("secretsmanager")
        self._sqs = aws.sqs
        self._kms = aws.kms
        self._zus = zus
        self._clock = clock
        self.access = AccessPolicy.of(settings.admin_principals)
        self._keys = TableKeys(settings.admin_client_name)
        self._runtime = Runtime(self._metrics, clock=clock)

    @functools.cached_property
    def token_table(self) -> DynamoTokenTable:
        return DynamoTokenTable(
            self._dynamodb,
            self.settings.table_name,
            self._keys,
            refresh_margin=self.settings.token_refresh_margin_seconds,
        )

    @functools.cached_property
    def _secrets(self) -> SecretsManagerStore:
        """One store per container: its cache, and what invalidates it, is every user's."""
        return SecretsManagerStore(self._secretsmanager)

    def token_vendor(self, endpoint: TokenEndpoint | None = None, policy: VendingPolicy | None = None) -> TokenVendor:
        """Tokens from ``endpoint``; by default the vending function's Zus client, built at its first
        token request, with timeouts that fit the function's 10 s. ``policy``: by default the settings'."""
        settings = self.settings
        return token_vendor(
            self.token_table,
            self._secrets,
            endpoint or self._zus or FirstUseZusClient(settings.zus, TOKEN_VENDING_ZUS_TIMEOUT),
            settings.secret_naming,
            self.access,
            policy
            or VendingPolicy(
                refresh_margin=settings.token_refresh_margin_seconds,
                budget_per_hour=settings.token_budget_per_hour,
                budget_reserve_percent=settings.token_budget_reserve_percent,
                revalidate_seconds=settings.memory_revalidation_seconds,
                refused_replacement_min_gap=settings.refused_replacement_min_gap_seconds,
            ),
            self._runtime,
        )

    @functools.cached_property
    def _admin_vendor(self) -> TokenVendor:
        """The vendor of provisioning, rotation and scheduled work: admin calls and their tokens use
        the admin Zus client."""
        return self.token_vendor(self._zus_admin)

    def provisioning(self, checkpoint: Checkpoint = no_checkpoint) -> Provisioning:
        """Admin calls use a Builder Admin token vended from the bootstrap secret; the new client's
        proof goes through the vendor, so its token is cached."""
        from zus_m2m.aws.client_records import DynamoClientRecords
        from zus_m2m.aws.page_tokens import KmsPageTokens
        from zus_m2m.aws.request_guards import DynamoRequestGuards
        from zus_m2m.provisioning.policy import ProvisioningPolicy

        settings = self.settings
        vendor = self._admin_vendor
        ports = ProvisioningPorts(
            records=DynamoClientRecords(self._dynamodb, settings.table_name, self._keys),
            guards=DynamoRequestGuards(self._dynamodb, settings.table_name, self._keys),
            secrets=self._secrets,
            table=self.token_table,
            admin=self._admin(vendor),
            issuer=vendor,
            page_tokens=KmsPageTokens(self._kms or aws_client("kms"), settings.kms_key_id, settings.table_name),
        )
        policy = ProvisioningPolicy(
            naming=settings.secret_naming,
            audience=settings.zus.audience,
            kms_key_id=settings.kms_key_id,
            recovery_window_days=settings.secret_recovery_window_days,
            rotation_interval_days=settings.rotation_interval_days,
            rotation_function_arn=settings.rotation_function_arn,
            secret_policy=settings.secret_policy,
            token_budget_per_hour=settings.token_budget_per_hour,
            allowed_roles=settings.allowed_zus_roles,
            rotation_request_min_gap_seconds=settings.rotation_request_min_gap_seconds,
        )
        repair = self.rotation_repair(vendor)
        return provisioning_use_cases(ports, policy, replace(self._runtime, checkpoint=checkpoint), repair=repair)

    def rotation_steps(self, vendor: TokenVendor | None = None) -> RotationSteps:
        """The four steps. Their tests' tokens go through ``vendor`` (one is built unless given), so
        they are cached; admin calls use a Builder Admin token vended from the bootstrap secret; a
        failed step is recorded in the table."""
        from zus_m2m.aws.rotation_failures import DynamoRotationFailures
        from zus_m2m.rotation.policy import RotationPolicy
        from zus_m2m.rotation.steps import RotationSteps

        settings = self.settings
        vendor = vendor or self._admin_vendor
        return RotationSteps(
            secrets=self._secrets,
            admin=self._admin(vendor),
            issuer=vendor,
            failures=DynamoRotationFailures(self._dynamodb, settings.table_name),
            policy=RotationPolicy(
                naming=settings.secret_naming,
                rotation_function_arn=settings.rotation_function_arn,
                secret_policy=settings.secret_policy,
                rotation_interval=settings.rotation_interval_days * 86400.0,
            ),
            runtime=self._runtime,
        )

    def rotation_repair(self, vendor: TokenVendor | None = None) -> RotationRepair:
        """The repair (and the repair job), with the steps it rolls a rotation forward through; both
        share ``vendor``."""
        from zus_m2m.rotation.repair import RotationRepair

        vendor = vendor or self._admin_vendor
        steps = self.rotation_steps(vendor)
        return RotationRepair(steps.secrets, steps, vendor, steps.failures, steps.policy, self._runtime)

    def rotation_sweep(self, vendor: TokenVendor | None = None) -> RotationSweep:
        """A client's rotation check, with the repair it repairs a long-stuck rotation with; both share
        ``vendor``, whose cached tokens prove a secret works."""
        from zus_m2m.rotation.sweep import RotationSweep

        repair = self.rotation_repair(vendor)
        return RotationSweep(repair.secrets, repair, repair.policy, self._metrics, self.token_table, clock=self._clock)

    def due_index(self) -> DynamoDueIndex:
        from zus_m2m.aws.due_index import DynamoDueIndex

        return DynamoDueIndex(self._dynamodb, self.settings.table_name, self._keys)

    def work_dispatch(self) -> DueWorkDispatch:
        """The scheduled jobs' dispatch of due work to the work queue (``WORK_QUEUE_URL``)."""
        from zus_m2m.aws.work_queue import SqsWorkQueue
        from zus_m2m.work.dispatch import DueWorkDispatch

        queue = SqsWorkQueue(self._sqs or aws_client("sqs"), self.settings.work_queue_url)
        return DueWorkDispatch(
            self.due_index(), queue, self._metrics, self.settings.admin_client_name, clock=self._clock
        )

    def worker(self) -> Worker:
        """The worker: one client's refresh or rotation check per message, both through one vendor."""
        from zus_m2m.tokens.pre_refresh import TokenPreRefresh
        from zus_m2m.work.worker import Worker

        vendor = self._admin_vendor
        return Worker(
            self.due_index(),
            TokenPreRefresh(vendor.flight, clock=self._clock),
            self.rotation_sweep(vendor),
            self._metrics,
            clock=self._clock,
        )

    def _admin(self, vendor: TokenVendor) -> BootstrapAdmin:
        """Admin calls with a Builder Admin token vended from the bootstrap secret."""
        from zus_m2m.provisioning.admin import BootstrapAdmin

        name = self.settings.admin_client_name
        return BootstrapAdmin(self._zus_admin, VendedAdminTokens(vendor, name), name)

    @functools.cached_property
    def _zus_admin(self) -> ZusClient:
        """The Zus client of admin calls (and of their token requests): the default timeouts."""
        return self._zus or zus_client(self.settings.zus)
