"""The bootstrap admin secret the local stack stores: the admin client's credentials, checked at Zus
first (a token, the client's id, the Builder Admin role), in the JSON every managed client's secret
holds."""

from __future__ import annotations

import json
from typing import Any

from zus_local.aws_setup import store_admin_secret
from zus_m2m.aws.table import BUDGET, TOKEN, TableKeys
from zus_m2m.errors import ZusM2MError
from zus_m2m.settings import Settings
from zus_m2m.values import ClientCredentials
from zus_m2m.zus.client import ZusClient


class AdminClientRefused(Exception):
    """Zus does not accept the admin client (the message names it and why, never its secret)."""


def store_bootstrap_admin(
    settings: Settings, client_id: str, client_secret: str, secretsmanager: Any, dynamodb: Any
) -> None:
    """Store ``client_id``'s credentials as ``settings.admin_secret_name`` and forget any admin token
    cached from an earlier run (a moto kept across runs may hold one of an earlier emulator)."""
    try:
        zus = ZusClient(settings.zus, timeout=(2.0, 5.0))
        token = zus.request_token(client_id, client_secret).access_token
        admin = next(c for c in zus.list_app_clients(token) if c.client_id == client_id)
        role = zus.find_role("Builder Admin", token)
    except (ZusM2MError, StopIteration) as exc:
        reason = "it does not list it" if isinstance(exc, StopIteration) else type(exc).__name__
        raise AdminClientRefused(
            f"Zus at {settings.zus.api_base} refused the admin client {client_id} ({reason})"
        ) from None
    credentials = ClientCredentials(
        name=settings.admin_client_name,
        app_client_id=admin.id,
        client_id=client_id,
        client_secret=client_secret,
        role_id=role.id,
        role_name=role.name,
        audience=settings.zus.audience,
    )
    store_admin_secret(
        secretsmanager,
        settings.admin_secret_name,
        json.loads(credentials.to_json()),
        kms_key_id=settings.kms_key_id,
    )
    keys = TableKeys(settings.admin_client_name)
    for kind in (TOKEN, BUDGET):
        dynamodb.delete_item(TableName=settings.table_name, Key=keys.key(settings.admin_client_name, kind))
