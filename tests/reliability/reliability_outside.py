"""The Zus emulator and moto, as the suite reads them: never through the service."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import requests
from botocore.config import Config
from e2e_support import zus_token
from reliability_support import ADMIN_CLIENT_ID, ADMIN_CLIENT_NAME, ADMIN_CLIENT_SECRET

from zus_m2m.aws.client_records import DynamoClientRecords
from zus_m2m.aws.table import TableKeys
from zus_m2m.values import ClientRecord


class Emulator:
    def __init__(self, url: str) -> None:
        self.url = url
        self._admin_token = ""
        self._admin_until = 0.0

    def fault(self, **spec: Any) -> None:
        requests.post(f"{self.url}/_emulator/faults", json=spec, timeout=5).raise_for_status()

    def clear_faults(self) -> None:
        self.fault()

    @contextlib.contextmanager
    def faulted(self, **spec: Any) -> Iterator[None]:
        self.fault(**spec)
        try:
            yield
        finally:
            self.clear_faults()

    def config(self, **values: Any) -> None:
        requests.post(f"{self.url}/_emulator/config", json=values, timeout=5).raise_for_status()

    @contextlib.contextmanager
    def speaking(self, dialect: str) -> Iterator[None]:
        """The token endpoint in ``dialect`` (auth0, rfc6749) for the block, then in Auth0's, the default."""
        self.config(dialect=dialect)
        try:
            yield
        finally:
            self.config(dialect="auth0")

    def stats(self) -> dict[str, Any]:
        response = requests.get(f"{self.url}/_emulator/stats", timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def token(self, client_id: str, client_secret: str) -> requests.Response:
        return zus_token(self.url, client_id, client_secret, timeout=10)

    def admin_token(self) -> str:
        """The bootstrap admin's token for this suite's own reads, kept for its lifetime (its hourly
        allowance is shared with the service)."""
        if time.time() > self._admin_until:
            response = self.token(ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET)
            response.raise_for_status()
            self._admin_token = response.json()["access_token"]
            self._admin_until = time.time() + response.json()["expires_in"] - 120
        return self._admin_token

    def faults_fired(self) -> int:
        """How many requests an injected fault has hit since the emulator started (every kind, path)."""
        fired = self.stats().get("faultsFired", {})
        return sum(count for paths in fired.values() for count in paths.values())

    def app_clients(self) -> list[dict[str, Any]]:
        """Every app client at Zus (id, clientId, name, updatedAt: when its secret last changed)."""
        found: list[dict[str, Any]] = []
        url: str | None = f"{self.url}/auth/app-clients?page[size]=100"
        headers = {"Authorization": f"Bearer {self.admin_token()}", "Accept": "application/vnd.api+json"}
        while url:
            response = requests.get(url, headers=headers, timeout=10)
            response.raise_for_status()
            document = response.json()
            found.extend(
                {
                    "id": item["id"],
                    "clientId": item["attributes"]["clientId"],
                    "name": item["attributes"]["name"],
                    "updatedAt": item["attributes"]["updatedAt"],
                }
                for item in document["data"]
            )
            url = (document.get("links") or {}).get("next")
        return found


class Aws:
    """moto, as the suite reads it (never through the service)."""

    def __init__(self, endpoint: str, table: str, stage: str = "sandbox") -> None:
        config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=2, read_timeout=10)
        options: dict[str, Any] = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "local",
            "aws_secret_access_key": "local",
            "config": config,
        }
        self.endpoint = endpoint
        self.table = table
        self.stage = stage
        self.dynamodb = boto3.client("dynamodb", **options)
        self.secretsmanager = boto3.client("secretsmanager", **options)
        self.records = DynamoClientRecords(self.dynamodb, table, TableKeys("zus-m2m-admin"))

    def secret_id(self, name: str) -> str:
        # zus-m2m/<stack name>/<stage>/<name>; the local stack names its table after the stack.
        return f"zus-m2m/{self.table}/{self.stage}/{name}"

    def active_records(self) -> list[ClientRecord]:
        found: list[ClientRecord] = []
        token: str | None = None
        while True:
            page, token = self.records.list_page(100, token)
            found.extend(page)
            if token is None:
                return found

    def forget_token(self, name: str) -> None:
        """Delete the client's cached token item (its lease and block too): the next vend goes to Zus."""
        self.dynamodb.delete_item(TableName=self.table, Key={"pk": {"S": f"client#{name}"}, "sk": {"S": "token"}})

    def replaceable_on_report(self, name: str) -> None:
        """The client's cached token as if Zus minted it 11 s ago and no report replaced one for a minute:
        the service replaces a reported token only then (issue 22). No token item: nothing to change."""
        with contextlib.suppress(self.dynamodb.exceptions.ConditionalCheckFailedException):
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"client#{name}"}, "sk": {"S": "token"}},
                UpdateExpression="SET tokenLifetime = tokenLifetime + :older REMOVE refusedReplacedAt",
                ConditionExpression="attribute_exists(accessToken) AND attribute_exists(tokenLifetime)",
                ExpressionAttributeValues={":older": {"N": "11"}},
            )

    def token_item(self, name: str) -> dict[str, Any] | None:
        key = {"pk": {"S": f"client#{name}"}, "sk": {"S": "token"}}
        item = self.dynamodb.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        return None if item is None else dict(item)

    def managed_secrets(self) -> dict[str, bool]:
        """Every client secret moto holds under this stage's prefix (the bootstrap admin's aside), by
        client name: whether it is scheduled for deletion."""
        prefix = self.secret_id("")
        found: dict[str, bool] = {}
        for page in self.secretsmanager.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
            for secret in page["SecretList"]:
                name = secret["Name"].removeprefix(prefix)
                if secret["Name"].startswith(prefix) and name != ADMIN_CLIENT_NAME:
                    found[name] = "DeletedDate" in secret
        return found

    def rotating(self) -> set[str]:
        """The clients whose secret has a rotation in progress (AWSPENDING on a version that is not
        AWSCURRENT's)."""
        prefix = self.secret_id("")
        found: set[str] = set()
        for page in self.secretsmanager.get_paginator("list_secrets").paginate():
            for secret in page["SecretList"]:
                stages = secret.get("SecretVersionsToStages") or {}
                if secret["Name"].startswith(prefix) and any(
                    "AWSPENDING" in labels and "AWSCURRENT" not in labels for labels in stages.values()
                ):
                    found.add(secret["Name"].removeprefix(prefix))
        return found

    def current_secret(self, name: str) -> tuple[str, dict[str, Any]] | None:
        """AWSCURRENT's version id and value."""
        try:
            value = self.secretsmanager.get_secret_value(SecretId=self.secret_id(name), VersionStage="AWSCURRENT")
        except (
            self.secretsmanager.exceptions.ResourceNotFoundException,
            self.secretsmanager.exceptions.InvalidRequestException,  # scheduled for deletion
        ):
            return None
        return value["VersionId"], dict(json.loads(value["SecretString"]))

    def current_credentials(self, name: str) -> dict[str, Any] | None:
        try:
            value = self.secretsmanager.get_secret_value(SecretId=self.secret_id(name), VersionStage="AWSCURRENT")
        except self.secretsmanager.exceptions.ResourceNotFoundException:
            return None
        return dict(json.loads(value["SecretString"]))

    def version_count(self, name: str) -> int:
        versions = self.secretsmanager.list_secret_version_ids(SecretId=self.secret_id(name), IncludeDeprecated=True)
        return len(versions["Versions"])

    def every_secret_value(self) -> set[str]:
        """Every clientSecret of every version of every secret moto holds (deleted ones included)."""
        values: set[str] = set()
        paginator = self.secretsmanager.get_paginator("list_secrets")
        for page in paginator.paginate(IncludePlannedDeletion=True):
            for secret in page["SecretList"]:
                arn = secret["ARN"]
                versions = self.secretsmanager.list_secret_version_ids(SecretId=arn, IncludeDeprecated=True)
                for version in versions["Versions"]:
                    try:
                        value = self.secretsmanager.get_secret_value(SecretId=arn, VersionId=version["VersionId"])
                    except self.secretsmanager.exceptions.InvalidRequestException:
                        continue  # scheduled for deletion: sample before deleting (every_secret_value again)
                    except self.secretsmanager.exceptions.ResourceNotFoundException:
                        continue  # a rotation's value-less AWSPENDING version
                    secret_value = json.loads(value.get("SecretString") or "{}").get("clientSecret")
                    if secret_value:
                        values.add(str(secret_value))
        return values

    def cached_tokens(self) -> set[str]:
        tokens: set[str] = set()
        paginator = self.dynamodb.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table):
            for item in page["Items"]:
                if "accessToken" in item:
                    tokens.add(item["accessToken"]["S"])
        return tokens
