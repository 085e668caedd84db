"""Secrets Manager adapter: reads client credentials by version stage through a short cache.

Powertools Parameters caches by secret name alone and drops the version stage from its cache key,
so a read of AWSPENDING would overwrite the cached AWSCURRENT; this adapter keys its cache by
(secret, stage) instead. Reads always name a stage: moto can answer an unstaged read with a value
from before a stage move.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from zus_m2m.aws._errors import error_code, translated
from zus_m2m.credentials import ClientCredentials
from zus_m2m.ports import Clock

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

# Secrets Manager's answers for a secret or a stage that is not (or no longer) there.
_ABSENT = {"ResourceNotFoundException", "InvalidRequestException"}


class SecretsManagerReader:
    def __init__(self, secretsmanager: SecretsManagerClient, max_age: float = 60.0, clock: Clock = time.time):
        self._sm = secretsmanager
        self._max_age = max_age
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, ClientCredentials | None]] = {}
        self._lock = threading.Lock()

    def read(self, secret_id: str, stage: str, *, fresh: bool = False) -> ClientCredentials | None:
        key = (secret_id, stage)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and not fresh and now - cached[0] < self._max_age:
            return cached[1]
        credentials = self._fetch(secret_id, stage)
        with self._lock:
            self._cache[key] = (now, credentials)
        return credentials

    def forget(self, secret_id: str) -> None:
        with self._lock:
            for key in [key for key in self._cache if key[0] == secret_id]:
                del self._cache[key]

    def _fetch(self, secret_id: str, stage: str) -> ClientCredentials | None:
        with translated("reading a client secret"):
            try:
                response = self._sm.get_secret_value(SecretId=secret_id, VersionStage=stage)
            except ClientError as exc:
                if error_code(exc) in _ABSENT:
                    return None
                raise
        return ClientCredentials.from_json(response["SecretString"], secret_id)
