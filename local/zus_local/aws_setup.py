"""Creates, in moto or any account, the AWS resources template.yaml declares that the code needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zus_local.cfn_yaml import load_template

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def table_definition(name: str, template: Path = TEMPLATE) -> dict[str, Any]:
    """The DynamoDB table exactly as template.yaml declares it, so local tables cannot drift."""
    table = load_template(template)["Resources"]["Table"]["Properties"]
    return {
        "TableName": name,
        "KeySchema": table["KeySchema"],
        "AttributeDefinitions": table["AttributeDefinitions"],
        "BillingMode": table["BillingMode"],
    }


def create_table(dynamodb: Any, name: str) -> None:
    """Create the service table (idempotent) and wait until it is active."""
    try:
        dynamodb.create_table(**table_definition(name))
    except dynamodb.exceptions.ResourceInUseException:
        return
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
