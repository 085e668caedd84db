"""Creates, in moto or any account, the AWS resources template.yaml declares that the code needs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zus_local.cfn_yaml import load_template
from zus_local.event_sources import QueueSpec

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def table_definition(name: str, template: Path = TEMPLATE) -> dict[str, Any]:
    """The DynamoDB table exactly as template.yaml declares it (its indexes too), so local tables cannot
    drift."""
    table = load_template(template)["Resources"]["Table"]["Properties"]
    definition = {
        "TableName": name,
        "KeySchema": table["KeySchema"],
        "AttributeDefinitions": table["AttributeDefinitions"],
        "BillingMode": table["BillingMode"],
    }
    indexes = [
        {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
        for index in table.get("GlobalSecondaryIndexes", [])
    ]
    return {**definition, "GlobalSecondaryIndexes": indexes} if indexes else definition


def create_table(dynamodb: Any, name: str) -> None:
    """Create the service table (idempotent) and wait until it is active."""
    try:
        dynamodb.create_table(**table_definition(name))
    except dynamodb.exceptions.ResourceInUseException:
        return
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def create_queues(sqs: Any, queues: Mapping[str, QueueSpec], time_scale: float = 1.0) -> dict[str, str]:
    """The template's queues (dead-letter targets first, so that redrive policies can name them), with
    their visibility timeouts divided by ``time_scale`` (as the local stack divides its schedules' rates);
    idempotent by name. Returns each queue's URL by logical id."""
    urls: dict[str, str] = {}
    targets = [name for name, spec in queues.items() if spec.dead_letter_queue is None]
    for logical_id in [*targets, *(name for name in queues if name not in targets)]:
        spec = queues[logical_id]
        attributes = {
            "VisibilityTimeout": str(max(1, round(spec.visibility_timeout / time_scale))),
            "MessageRetentionPeriod": str(spec.message_retention),
        }
        if spec.dead_letter_queue is not None:
            target = queues[spec.dead_letter_queue]
            redrive = {"deadLetterTargetArn": target.arn, "maxReceiveCount": spec.max_receive_count}
            attributes["RedrivePolicy"] = json.dumps(redrive)
        try:
            urls[logical_id] = str(sqs.create_queue(QueueName=spec.name, Attributes=attributes)["QueueUrl"])
        except sqs.exceptions.QueueNameExists:
            urls[logical_id] = str(sqs.get_queue_url(QueueName=spec.name)["QueueUrl"])
            sqs.set_queue_attributes(QueueUrl=urls[logical_id], Attributes=attributes)
    return urls


def store_admin_secret(
    secretsmanager: Any,
    name: str,
    credentials: Mapping[str, str],
    *,
    tags: Mapping[str, str] | None = None,
    kms_key_id: str = "",
) -> str:
    """Store the bootstrap admin client's credentials (the JSON of docs/design.md) as secret ``name``;
    idempotent: an existing secret gets the credentials as its new current version. Returns the ARN."""
    value = json.dumps(dict(credentials))
    options: dict[str, Any] = {"KmsKeyId": kms_key_id} if kms_key_id else {}
    if tags:
        options["Tags"] = [{"Key": key, "Value": val} for key, val in sorted(tags.items())]
    try:
        return str(secretsmanager.create_secret(Name=name, SecretString=value, **options)["ARN"])
    except secretsmanager.exceptions.ResourceExistsException:
        secretsmanager.put_secret_value(SecretId=name, SecretString=value, VersionStages=["AWSCURRENT"])
        return str(secretsmanager.describe_secret(SecretId=name)["ARN"])


def create_kms_key(kms: Any, alias: str, description: str = "") -> str:
    """A symmetric KMS key known by ``alias`` (``alias/…``), as template.yaml's key; idempotent by alias.
    Returns the key's ARN."""
    try:
        return str(kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"])
    except kms.exceptions.NotFoundException:
        pass
    metadata = kms.create_key(Description=description or alias, KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
    kms.create_alias(AliasName=alias, TargetKeyId=metadata["KeyId"])
    return str(metadata["Arn"])


def create_user_with_key(iam: Any, name: str, policy_name: str, policy: Mapping[str, Any]) -> tuple[str, str, str]:
    """An IAM user with one inline policy and one new access key (any earlier key of it deleted, so that
    only the key returned works); idempotent by name. Returns its ARN, the key id and the secret key."""
    try:
        arn = str(iam.create_user(UserName=name)["User"]["Arn"])
    except iam.exceptions.EntityAlreadyExistsException:
        arn = str(iam.get_user(UserName=name)["User"]["Arn"])
    iam.put_user_policy(UserName=name, PolicyName=policy_name, PolicyDocument=json.dumps(policy))
    for key in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return arn, str(key["AccessKeyId"]), str(key["SecretAccessKey"])
