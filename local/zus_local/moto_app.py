"""moto as every part of this project runs it: made to behave as the real services do where the
service's guarantees rest on it, and able to cut its connections when stopped.

Requests of one service are served one at a time; requests of different services at once, as AWS
serves them. moto answers on concurrent threads without a lock (its own server locks only the choice
of a service's app, not the request), so two conditional writes that race can both succeed; real
DynamoDB conditional writes (and Secrets Manager's version checks) are atomic, and the single-flight
lease, the token budget and the provisioning claim rely on that. A service's backend is state of that
service alone, so one lock per service (named by the request's SigV4 credential scope) keeps each
correct; a request that names no service (``/moto-api``: reset, config, data) takes every lock, and the
IAM signer route below takes none (it only reads, as the real authorizer's lookups run beside AWS).

Secrets Manager's rotation bookkeeping, where moto 5.2 differs from the real service (so that the
service's code speaks of the real service alone):

* RotateSecret refuses to start a rotation while one is in progress (AWSPENDING on a version other
  than AWSCURRENT's: "A previous rotation isn't complete"). moto checks the opposite case: it refuses
  when AWSPENDING sits on the AWSCURRENT version (a finished rotation's label, which the real service
  simply moves to the new version) and lets racing requests each start a rotation.
* RotateSecret turns rotation on (RotationEnabled); moto reports it only once rotation rules were set.
* RotateSecret with RotateImmediately false only tests the configuration; moto leaves a new
  AWSPENDING version behind (holding a copy of an old value), which reads as a rotation in progress.
* A version's value never changes: reusing its ClientRequestToken with another value is refused
  (ResourceExistsException). moto overwrites a version labelled AWSPENDING that already has one.
* GetSecretValue without a stage or version reads AWSCURRENT. moto reads a "default version" that a
  stage move leaves behind (and that RotateSecret points at the new version, before it has a value).
* A staging label is on one version at most: a new AWSCURRENT version (PutSecretValue) takes the label
  from the version that holds it, which becomes AWSPREVIOUS. moto moves it from its default version,
  so once that differs from the AWSCURRENT version two versions end up labelled AWSCURRENT.
* A rotation schedules the next one from itself (NextRotationDate: the rotation's date plus the rules'
  days). moto computes NextRotationDate only when RotateSecret is given rotation rules, so after a
  later rotation it still counts from the first configuration (a client's creation).

And one route of its own, for the local API's IAM authorizer (``zus_local.iam_authorizer``): ``POST
/_zus_local/iam/signer`` with ``{"accessKeyId", "securityToken"}`` answers who holds that access key in
moto's IAM (an IAM user's key, or an assumed role's temporary one), its secret key, so that the local API
can check a signature, and the identity policies that apply to it, found the way moto's own IAM
enforcement finds them: 404 for a key moto does not know, 403 for a wrong or expired session token or
an inactive key.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import ThreadedWSGIServer

from zus_emulator.http_server import TracksConnections
from zus_local.iam_authorizer import SIGNER_ROUTE
from zus_m2m.values import AWSCURRENT, AWSPENDING, rotation_started

__all__ = ["MotoServer", "make_moto_server", "moto_wsgi_app"]

_patch_lock = threading.Lock()
_patched = False
# moto's own methods, kept when they are patched: the patches call them for what moto does right.
_moto: dict[str, Any] = {}


def secrets_manager_as_aws() -> None:
    """Patch moto's Secrets Manager backend where it differs from the real service (once per process)."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        from moto.secretsmanager.models import FakeSecret, SecretsManagerBackend

        _moto.update(
            rotate_secret=SecretsManagerBackend.rotate_secret,
            update_secret_version_stage=SecretsManagerBackend.update_secret_version_stage,
            check_with_existing_secrets_and_versions=SecretsManagerBackend._check_with_existing_secrets_and_versions,
            reset_default_version=FakeSecret.reset_default_version,
        )
        SecretsManagerBackend.rotate_secret = _rotate_secret  # type: ignore[method-assign]
        FakeSecret.reset_default_version = _reset_default_version  # type: ignore[method-assign]
        SecretsManagerBackend.update_secret_version_stage = _update_secret_version_stage  # type: ignore[method-assign]
        SecretsManagerBackend._check_with_existing_secrets_and_versions = (  # type: ignore[method-assign]
            _check_with_existing_secrets_and_versions
        )
        _patched = True


def _own_secret(backend: Any, secret_id: str) -> Any:
    """The backend's secret named ``secret_id``, or None where moto answers itself (not found, a replica)."""
    from moto.secretsmanager.models import FakeSecret

    secret = backend.secrets.get(secret_id) if backend._is_valid_identifier(secret_id) else None
    return secret if isinstance(secret, FakeSecret) else None


def _rotate_secret(
    self: Any,
    secret_id: str,
    client_request_token: str | None = None,
    rotation_lambda_arn: str | None = None,
    rotation_rules: dict[str, Any] | None = None,
    rotate_immediately: bool = True,
) -> str:
    from moto.secretsmanager.exceptions import InvalidRequestException

    def rotate() -> str:
        answer = _moto["rotate_secret"](
            self, secret_id, client_request_token, rotation_lambda_arn, rotation_rules, rotate_immediately
        )
        return str(answer)

    secret = _own_secret(self, secret_id)
    if secret is None:
        return rotate()
    if any(rotation_started(version["version_stages"]) for version in secret.versions.values()):
        raise InvalidRequestException("A previous rotation isn't complete. That rotation will be reattempted.")
    secret.remove_version_stages_from_old_versions([AWSPENDING])  # a finished rotation's label
    before = set(secret.versions)
    answer = rotate()
    if secret.rotation_lambda_arn:
        secret.rotation_enabled = True
    if not rotate_immediately:
        for version_id in set(secret.versions) - before:
            del secret.versions[version_id]
    elif secret.auto_rotate_after_days > 0:
        secret.next_rotation_date = int(time.time()) + secret.auto_rotate_after_days * 86400
    _follow_current(secret)
    return answer


def _reset_default_version(self: Any, secret_version: dict[str, Any], version_id: str) -> None:
    _follow_current(self)  # the label moves from the version that holds it
    _moto["reset_default_version"](self, secret_version, version_id)


def _update_secret_version_stage(self: Any, secret_id: str, *args: Any, **kwargs: Any) -> tuple[str, str]:
    answer: tuple[str, str] = _moto["update_secret_version_stage"](self, secret_id, *args, **kwargs)
    secret = _own_secret(self, secret_id)
    if secret is not None:
        _follow_current(secret)
    return answer


def _check_with_existing_secrets_and_versions(
    self: Any,
    secret_name: str,
    client_request_token: str | None,
    secret_string: str | None,
    secret_binary: str | None,
    on_create: bool = False,
) -> Any:
    from moto.secretsmanager.exceptions import ResourceExistsException

    secret = _own_secret(self, secret_name)
    version = secret.versions.get(client_request_token) if secret and client_request_token else None
    if version is not None and ("secret_string" in version or "secret_binary" in version):
        if (version.get("secret_string"), version.get("secret_binary")) == (secret_string, secret_binary):
            return secret
        raise ResourceExistsException(
            f"You can't use ClientRequestToken {client_request_token} because that value is already "
            f"in use for a version of secret {secret.arn}."
        )
    return _moto["check_with_existing_secrets_and_versions"](
        self, secret_name, client_request_token, secret_string, secret_binary, on_create
    )


def _follow_current(secret: Any) -> None:
    """Point moto's default version (what an unstaged read answers) at the AWSCURRENT version."""
    current = next((version_id for version_id, v in secret.versions.items() if AWSCURRENT in v["version_stages"]), None)
    if current is not None:
        secret.set_default_version_id(current)


def _policy_document(policy: Any) -> str:
    """A policy as moto's IAM enforcement holds it (an inline policy's item, a document, a managed
    policy), as its JSON document."""
    from moto.iam.models import Policy

    if isinstance(policy, Policy):
        return str(next(version.document for version in policy.versions if version.is_default))
    if isinstance(policy, str):
        return policy
    return str(policy["policy_document"])


def signer(access_key_id: str, security_token: str | None) -> tuple[int, dict[str, Any]]:
    """Who holds ``access_key_id`` in moto's IAM, and what applies to it (module docstring)."""
    from moto.iam.access_control import AssumedRoleAccessKey, IAMUserAccessKey
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    for account_id in list(iam_backends.keys()):
        backend = iam_backends[account_id]["aws"]
        for user in list(backend.users.values()):
            for key in user.access_keys:
                if key.access_key_id != access_key_id:
                    continue
                if key.status != "Active" or security_token:
                    return 403, {"reason": "inactive key" if key.status != "Active" else "unexpected session token"}
                policies = IAMUserAccessKey(account_id, "aws", access_key_id, {}).collect_policies()
                return 200, {
                    "secretAccessKey": key.secret_access_key,
                    "arn": user.arn,
                    "userId": user.id,
                    "accountId": account_id,
                    "policies": [_policy_document(policy) for policy in policies],
                }
    for account_id in list(sts_backends.keys()):
        for assumed in list(sts_backends[account_id]["aws"].assumed_roles):
            if assumed.access_key_id != access_key_id:
                continue
            if security_token != assumed.session_token:
                return 403, {"reason": "wrong session token"}
            if assumed.expiration < datetime.datetime.now(datetime.UTC).replace(tzinfo=None):
                return 403, {"reason": "expired session token"}
            headers = {"X-Amz-Security-Token": security_token}
            role = AssumedRoleAccessKey(assumed.account_id, "aws", access_key_id, headers)
            return 200, {
                "secretAccessKey": assumed.secret_access_key,
                "arn": assumed.arn,
                "userId": assumed.user_id,
                "accountId": assumed.account_id,
                "policies": [_policy_document(policy) for policy in role.collect_policies()],
            }
    return 404, {"reason": "unknown access key"}


def _answer_signer(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        asked = json.loads(environ["wsgi.input"].read(length) or b"{}")
        status, answer = signer(str(asked["accessKeyId"]), asked.get("securityToken") or None)
    except (ValueError, KeyError, TypeError):
        status, answer = 400, {"reason": "the body must be {accessKeyId, securityToken}"}
    body = json.dumps(answer).encode()
    reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}[status]
    start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")


class ServiceLocks:
    """One lock per service, shared by the requests of different services; ``everything()`` excludes
    every service's requests (a readers-writer lock whose readers are the services)."""

    def __init__(self) -> None:
        self._state = threading.Condition()
        self._services: dict[str, threading.Lock] = {}
        self._sharing = 0  # requests holding a service's lock
        self._exclusive = False

    @contextlib.contextmanager
    def service(self, name: str) -> Iterator[None]:
        with self._state:
            self._state.wait_for(lambda: not self._exclusive)
            self._sharing += 1
            lock = self._services.setdefault(name, threading.Lock())
        try:
            with lock:
                yield
        finally:
            with self._state:
                self._sharing -= 1
                self._state.notify_all()

    @contextlib.contextmanager
    def everything(self) -> Iterator[None]:
        with self._state:
            self._state.wait_for(lambda: not self._exclusive)
            self._exclusive = True
            self._state.wait_for(lambda: self._sharing == 0)
        try:
            yield
        finally:
            with self._state:
                self._exclusive = False
                self._state.notify_all()


def moto_wsgi_app() -> Any:
    secrets_manager_as_aws()
    app = DomainDispatcherApplication(create_backend_app)
    locks = ServiceLocks()

    def serve(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == SIGNER_ROUTE and environ.get("REQUEST_METHOD") == "POST":
            return _answer_signer(environ, start_response)
        scope = _SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
        with locks.service(scope.group(1)) if scope else locks.everything():
            return list(app(environ, start_response))

    return serve


class MotoServer(TracksConnections, ThreadedWSGIServer):
    """werkzeug's threaded server that can cut its open connections on stop. werkzeug (3.x) answers every
    request with ``Connection: close``: each SDK call opens a connection of its own, where AWS's
    endpoints keep one open (benchmarks compare calls that both pay it)."""

    daemon_threads = True

    def __init__(self, host: str, port: int, app: Any) -> None:
        self.track_connections()
        super().__init__(host, port, app, handler=MotoRequestHandler)


def make_moto_server(host: str, port: int, app: Any = None) -> MotoServer:
    return MotoServer(host, port, app or moto_wsgi_app())
