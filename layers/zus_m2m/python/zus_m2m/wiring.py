"""Builds the adapters and services a handler needs, once per container, from the settings.

Handlers call these at module scope; tests and the local stack pass their own boto3 clients.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config

from zus_m2m import deadline
from zus_m2m.aws.secrets import SecretsManagerStore, managed_tags
from zus_m2m.aws.token_table import DynamoTokenTable
from zus_m2m.ports import TokenIssuer
from zus_m2m.settings import Settings
from zus_m2m.tokens.vendor import TokenVendor, VendingPolicy
from zus_m2m.zus.endpoints import ZusEndpoints
from zus_m2m.zus.models import AccessToken

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

    from zus_m2m.provisioning import Provisioner
    from zus_m2m.rotation import Rotator
    from zus_m2m.zus.client import ZusClient

# Fail fast on the vending path: a slow AWS call should become a clear 503, not a Lambda timeout.
AWS_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})
# The token vending function has 10 s (template.yaml): a token request gets 1 s to connect (urllib3
# retries a failed connect 3 times) and 3 s to answer, and the vendor starts no retry later than
# VendingPolicy.retry_window_seconds into a vend call, so one that Zus leaves hanging answers 503 in
# about 7 s.
TOKEN_VENDING_ZUS_TIMEOUT = (1.0, 3.0)


def aws_client(service: str) -> Any:
    """A boto3 client; ``AWS_ENDPOINT_URL`` (set by the local stack) points it at moto."""
    return boto3.client(service, config=AWS_CONFIG)  # type: ignore[call-overload]


# Powertools keeps one metric set per process and neither its add nor its flush is thread-safe;
# on Lambda one invocation runs at a time, but the local stack, the benchmarks and this package's
# background refreshes add metrics from several threads.
_METRICS_LOCK = threading.Lock()

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class PowertoolsMetrics:
    """``MetricsSink`` over Powertools Metrics (CloudWatch EMF)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def count(self, name: str, value: float = 1.0) -> None:
        with _METRICS_LOCK:
            self._metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def invocation(metrics: Metrics) -> Callable[[Handler], Handler]:
    """Each invocation runs within the Lambda context's remaining time (``zus_m2m.deadline``) and
    publishes its metrics after: ``@metrics.log_metrics``, made safe for several threads at once."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def invoke(event: dict[str, Any], context: Any) -> dict[str, Any]:
            try:
                with deadline.within(context.get_remaining_time_in_millis() / 1000):
                    return handler(event, context)
            finally:
                with _METRICS_LOCK:
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
        self._lock = threading.Lock()

    def request_token(self, client_id: str, client_secret: str) -> AccessToken:
        with self._lock:
            if self._client is None:
                self._client = zus_client(self._endpoints, self._timeout)
        return self._client.request_token(client_id, client_secret)


def secret_id_for(settings: Settings) -> Callable[[str], str]:
    """Maps a client name to its secret; the bootstrap admin's secret has its own configured name."""

    def secret_id(client: str) -> str:
        if client == settings.admin_client_name:
            return settings.admin_secret_name
        return settings.secret_name(client)

    return secret_id


def token_vendor(
    settings: Settings,
    metrics: Metrics,
    *,
    dynamodb: DynamoDBClient | None = None,
    secretsmanager: SecretsManagerClient | None = None,
    zus: TokenIssuer | None = None,
) -> TokenVendor:
    return TokenVendor(
        table=DynamoTokenTable(dynamodb or aws_client("dynamodb"), settings.table_name),
        secrets=SecretsManagerStore(secretsmanager or aws_client("secretsmanager")),
        issuer=zus or FirstUseZusClient(settings.zus, TOKEN_VENDING_ZUS_TIMEOUT),
        secret_id=secret_id_for(settings),
        metrics=PowertoolsMetrics(metrics),
        policy=VendingPolicy(
            refresh_margin=settings.token_refresh_margin_seconds,
            budget_per_hour=settings.token_budget_per_hour,
        ),
    )


def provisioner(
    settings: Settings,
    metrics: Metrics,
    *,
    dynamodb: DynamoDBClient | None = None,
    secretsmanager: SecretsManagerClient | None = None,
    zus: ZusClient | None = None,
    checkpoint: Callable[[str], None] | None = None,
) -> Provisioner:
    """The provisioning service: admin calls use a Builder Admin token vended from the bootstrap secret."""
    # Imported here, not at the top: the token vending function never needs them (cold start).
    from zus_m2m.aws.client_records import DynamoClientRecords
    from zus_m2m.provisioning import Provisioner, ProvisioningPolicy

    dynamodb = dynamodb or aws_client("dynamodb")
    secretsmanager = secretsmanager or aws_client("secretsmanager")
    zus = zus or zus_client(settings.zus)
    vendor = token_vendor(settings, metrics, dynamodb=dynamodb, secretsmanager=secretsmanager, zus=zus)
    return Provisioner(
        records=DynamoClientRecords(dynamodb, settings.table_name),
        secrets=SecretsManagerStore(secretsmanager),
        zus=zus,
        admin_token=lambda: vendor.vend(settings.admin_client_name, 60).access_token,
        verifier=vendor,
        tokens=DynamoTokenTable(dynamodb, settings.table_name),
        secret_id=secret_id_for(settings),
        secret_tags=lambda name: managed_tags(settings.stage, name),
        policy=ProvisioningPolicy(
            stage=settings.stage,
            audience=settings.zus.audience,
            admin_client_name=settings.admin_client_name,
            kms_key_id=settings.kms_key_id,
            recovery_window_days=settings.secret_recovery_window_days,
            rotation_interval_days=settings.rotation_interval_days,
            rotation_function_arn=settings.rotation_function_arn,
            token_budget_per_hour=settings.token_budget_per_hour,
        ),
        metrics=PowertoolsMetrics(metrics),
        checkpoint=checkpoint,
    )


def rotator(
    settings: Settings,
    metrics: Metrics,
    *,
    dynamodb: DynamoDBClient | None = None,
    secretsmanager: SecretsManagerClient | None = None,
    zus: ZusClient | None = None,
    vendor: TokenVendor | None = None,
) -> Rotator:
    """The rotation steps and the sweep. Its tests' tokens go through ``vendor`` (built here unless
    given), so they are cached; admin calls use a Builder Admin token vended from the bootstrap secret."""
    from zus_m2m.rotation import RotationPolicy, Rotator  # not at the top: see provisioner()

    secretsmanager = secretsmanager or aws_client("secretsmanager")
    zus = zus or zus_client(settings.zus)
    tokens = vendor or token_vendor(settings, metrics, dynamodb=dynamodb, secretsmanager=secretsmanager, zus=zus)
    return Rotator(
        store=SecretsManagerStore(secretsmanager),
        zus=zus,
        vendor=tokens,
        admin_token=lambda: tokens.vend(settings.admin_client_name, ADMIN_TOKEN_MIN_TTL).access_token,
        secret_id=secret_id_for(settings),
        policy=RotationPolicy.from_settings(settings),
        metrics=PowertoolsMetrics(metrics),
    )


# An admin token must outlive the admin calls made with it (rotate-secret: seconds).
ADMIN_TOKEN_MIN_TTL = 60
