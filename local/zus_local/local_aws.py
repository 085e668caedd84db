"""The local stack's AWS: moto (started by the stack or already running) or the environment's real account.

With moto, the stack owns AWS: the template's resources get local stand-ins decided before the template
is resolved (``stand_ins``), and ``set_up`` makes them real afterwards: the table gets the name the
stack chose, the queues theirs (visibility timeouts scaled like the schedules), the KMS key is known by
its alias (created here), a rotation function is registered in
moto under the ARN the model gives it, the bootstrap admin secret is stored, and the local admin and
consumer (``local_principals``) get their IAM users and keys. A real account is only checked, never
written to at start; there the local API checks signatures of the environment's own credentials only.

The template's ``AdminPrincipals`` (no default) is the local admin in moto, the environment's own
principal in a real account, unless ``--param`` gives it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from zus_emulator.http_server import local_url
from zus_local.admin_secret import AdminClientRefused, store_bootstrap_admin
from zus_local.apigw import LOCAL_API_ID
from zus_local.aws_setup import create_kms_key, create_queues, create_table
from zus_local.iam_authorizer import EnvironmentSigner, MotoSigners, Signer, Signers
from zus_local.local_principals import (
    ADMIN_USER,
    LocalPrincipal,
    create_local_principals,
    user_arn,
    write_credentials,
)
from zus_local.options import StackError, StackOptions
from zus_local.secrets_manager_rotation import register_rotation_function
from zus_local.stand_ins import KMS_KEY, TABLE, ResolveContext
from zus_local.template_model import TemplateModel, invoked_by_secrets_manager, logical_ids
from zus_m2m.errors import ZusM2MError
from zus_m2m.settings import Settings

MOTO_ACCOUNT = "123456789012"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local"}
ADMIN_PRINCIPALS_PARAMETER = "AdminPrincipals"


@contextlib.contextmanager
def applied_environment(variables: Mapping[str, str | None]) -> Iterator[None]:
    """``variables`` in ``os.environ`` for the duration (None: unset), then the previous values back."""
    saved = {name: os.environ.get(name) for name in variables}
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _as_principal(caller_arn: str) -> str:
    """A caller's ARN as an ``AdminPrincipals`` entry: an assumed role's session → the role."""
    if ":assumed-role/" in caller_arn:
        head, _, rest = caller_arn.partition(":assumed-role/")
        return f"{head.replace(':sts::', ':iam::')}:role/{rest.split('/', 1)[0]}"
    return caller_arn


class LocalAws:
    def __init__(self, options: StackOptions) -> None:
        self.options = options
        # moto's URL, or "" for the real account.
        self.endpoint = (
            (options.aws_endpoint or local_url(options.host, options.moto_port)) if options.uses_moto else ""
        )
        self.account_id = MOTO_ACCOUNT
        self.admin_secret_name = ""
        self.notes: list[str] = []
        self.principals: list[LocalPrincipal] = []
        # Each queue's URL in moto, by logical id.
        self.queue_urls: dict[str, str] = {}
        self._caller: tuple[str, str] = ("", "")  # a real account's: the environment's ARN and user id

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=self.options.region, endpoint_url=self.endpoint or None)  # type: ignore[call-overload]

    def environment(self) -> contextlib.AbstractContextManager[None]:
        """This process's AWS settings, which its boto3 clients and the functions' environments read, for
        the duration: moto and fake credentials (so nothing can reach a real account), or the
        environment's real account."""
        region = self.options.region
        variables: dict[str, str | None] = {"AWS_DEFAULT_REGION": region, "AWS_REGION": region}
        if self.endpoint:
            variables.update({"AWS_PROFILE": None, **FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint})
        else:
            variables["AWS_ENDPOINT_URL"] = None
        return applied_environment(variables)

    def find_account(self) -> None:
        """The real account's id (moto's is fixed); StackError without usable credentials."""
        if self.endpoint:
            return
        try:
            identity = self.client("sts").get_caller_identity()
        except (BotoCoreError, ClientError) as exc:
            raise StackError(f"no usable AWS credentials in the environment ({type(exc).__name__}): {exc}") from None
        self.account_id = str(identity["Account"])
        self._caller = (str(identity["Arn"]), str(identity["UserId"]))

    def resolve_context(self, template: Mapping[str, Any]) -> ResolveContext:
        """The deployment to resolve ``template`` for, with the stand-ins ``set_up`` makes real (in a
        real account, nothing stands in for the key or the rotation function: set them with --env if
        the code needs them)."""
        options = self.options
        tables = logical_ids(template, TABLE)
        refs = {table: options.table_for(index, table) for index, table in enumerate(tables)}
        attributes: dict[str, str] = {}
        for key in logical_ids(template, KMS_KEY):
            alias = options.kms_alias(key)
            if self.endpoint:
                refs[key] = alias
            attributes[f"{key}.Arn"] = (
                f"arn:aws:kms:{options.region}:{self.account_id}:{alias}" if self.endpoint else ""
            )
        if not self.endpoint:
            attributes.update({f"{function}.Arn": "" for function in invoked_by_secrets_manager(template)})
        parameters = dict(options.parameters)
        if ADMIN_PRINCIPALS_PARAMETER in (template.get("Parameters") or {}):
            admin = user_arn(self.account_id, ADMIN_USER) if self.endpoint else _as_principal(self._caller[0])
            parameters.setdefault(ADMIN_PRINCIPALS_PARAMETER, admin)
        return ResolveContext(
            region=options.region,
            account_id=self.account_id,
            stack_name=options.stack_name,
            parameters=parameters,
            refs=refs,
            attributes=attributes,
        )

    def signers(self) -> Signers:
        """Whose signatures the local API checks: moto's IAM, or the environment's own credentials."""
        if self.endpoint:
            return MotoSigners(self.endpoint)
        credentials = boto3.Session().get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
        if frozen is None or not frozen.access_key or not frozen.secret_key:
            raise StackError("no AWS credentials in the environment to sign requests to the local API with")
        arn, user_id = self._caller
        signer = Signer(frozen.access_key, frozen.secret_key, arn, user_id, self.account_id, evaluate_policies=False)
        return EnvironmentSigner(signer, frozen.token)

    def set_up(self, model: TemplateModel, overrides: Mapping[str, str], *, emulator: bool) -> None:
        """Create what the functions need in moto, or say what a real account lacks; StackError if it
        fails. ``overrides``: the variables the stack sets in every function over the template's."""
        if not self.endpoint:
            self._check_real_account(emulator=emulator)
            return
        options = self.options
        try:
            for key in model.kms_keys:
                create_kms_key(self.client("kms"), options.kms_alias(key), f"{options.stack_name} {key} (local)")
            for index, table in enumerate(model.tables):
                create_table(self.client("dynamodb"), options.table_for(index, table))
            scale = options.schedule_scale if options.schedule_scale > 0 else 1.0
            self.queue_urls = create_queues(self.client("sqs"), model.queues, scale)
            for function in model.rotation_functions:
                arn = model.functions[function].arn
                registered = register_rotation_function(self.endpoint, arn, options.region)
                if registered != arn:
                    raise StackError(f"moto registered the rotation function as {registered}, not {arn}")
            self.principals = create_local_principals(self.client("iam"), options.region, self.account_id, LOCAL_API_ID)
            write_credentials(options.credentials_file, self.principals)
            first = next(iter(model.functions.values()), None)
            if not (options.admin_client_id and options.admin_client_secret):
                self.notes.append(
                    "no bootstrap admin secret stored: set ZUS_M2M_ADMIN_CLIENT_ID and ZUS_M2M_ADMIN_CLIENT_SECRET"
                )
            elif first is not None:
                self._store_admin_secret(Settings.from_env({**first.environment, **overrides}))
                if emulator and not options.starts_moto:
                    self.notes.append(
                        "moto keeps its data across runs and the emulator starts empty: "
                        "clients provisioned by an earlier run are unknown to this emulator"
                    )
        except (BotoCoreError, ClientError, ZusM2MError) as exc:
            raise StackError(f"setting up AWS at {self.endpoint} failed: {exc}") from None
        except OSError as exc:
            raise StackError(f"cannot write {options.credentials_file}: {exc.strerror or exc}") from None

    def _check_real_account(self, *, emulator: bool) -> None:
        table = self.options.table
        try:
            self.client("dynamodb").describe_table(TableName=table)
        except ClientError:
            self.notes.append(f"table {table} was not found in account {self.account_id}; pass --table-name")
        if emulator:
            self.notes.append("the emulator's admin client is not stored in a real account; store it yourself")
        self.notes.append(
            "the local API checks signatures of this environment's own credentials only (IAM keeps other "
            "principals' secret keys), and does not evaluate their IAM policies"
        )

    def _store_admin_secret(self, settings: Settings) -> None:
        options = self.options
        try:
            store_bootstrap_admin(
                settings,
                options.admin_client_id,
                options.admin_client_secret,
                self.client("secretsmanager"),
                self.client("dynamodb"),
            )
        except AdminClientRefused as exc:
            raise StackError(str(exc)) from None
        self.admin_secret_name = settings.admin_secret_name
