"""What a template's resources stand for when the local stack runs it: their physical names, and what
``!Ref`` and ``!GetAtt`` of them give, computed as CloudFormation would for a stack deployed in the
context's region and account, unless the context pins a value (a table's name, a key's ARN)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
FUNCTION_TYPES = (SERVERLESS_FUNCTION, LAMBDA_FUNCTION)
TABLE = "AWS::DynamoDB::Table"
KMS_KEY = "AWS::KMS::Key"
SQS_QUEUE = "AWS::SQS::Queue"


class TemplateError(ValueError):
    """The template asks for something the local stack cannot resolve or run (the message says what)."""


@dataclass(frozen=True)
class ResolveContext:
    """The deployment the template is resolved for, and the local stand-ins of its resources."""

    region: str = "us-east-1"
    account_id: str = "123456789012"
    stack_name: str = "zus-m2m-local"
    partition: str = "aws"
    url_suffix: str = "amazonaws.com"
    # Parameter overrides (``--param Name=Value``); the rest take their template defaults.
    parameters: Mapping[str, str] = field(default_factory=dict)
    # ``!Ref Logical`` of a resource, pinned (e.g. {"Table": "zus-m2m-local"}).
    refs: Mapping[str, str] = field(default_factory=dict)
    # ``!GetAtt Logical.Attribute``, pinned (e.g. {"KmsKey.Arn": "arn:aws:kms:…"}).
    attributes: Mapping[str, str] = field(default_factory=dict)


# The property that names a resource, where CloudFormation lets the template choose the name.
_NAME_PROPERTIES = {
    SERVERLESS_FUNCTION: "FunctionName",
    LAMBDA_FUNCTION: "FunctionName",
    TABLE: "TableName",
    "AWS::Logs::LogGroup": "LogGroupName",
    SQS_QUEUE: "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Serverless::LayerVersion": "LayerName",
}

# ``!Ref`` of a resource, where it is not the resource's name ({name}: its physical name).
_REF_FORMATS = {
    SQS_QUEUE: "https://sqs.{region}.{url_suffix}/{account}/{name}",
    "AWS::SNS::Topic": "arn:{partition}:sns:{region}:{account}:{name}",
    "AWS::Serverless::LayerVersion": "arn:{partition}:lambda:{region}:{account}:layer:{name}:1",
}

# ``!GetAtt Resource.Arn`` ({ref}: what ``!Ref`` of it gives); other types get the generic form.
_ARN_FORMATS = {
    **dict.fromkeys(FUNCTION_TYPES, "arn:{partition}:lambda:{region}:{account}:function:{name}"),
    TABLE: "arn:{partition}:dynamodb:{region}:{account}:table/{ref}",
    KMS_KEY: "arn:{partition}:kms:{region}:{account}:key/{ref}",
    SQS_QUEUE: "arn:{partition}:sqs:{region}:{account}:{name}",
    "AWS::IAM::Role": "arn:{partition}:iam::{account}:role/{name}",
    "AWS::Logs::LogGroup": "arn:{partition}:logs:{region}:{account}:log-group:{name}:*",
    "AWS::SNS::Topic": "{ref}",
}
_GENERIC_ARN = "arn:{partition}:{service}:{region}:{account}:{name}"

# Other attributes with a local stand-in, by resource type and attribute ({name}, {ref} as above).
_ATTRIBUTE_FORMATS = {
    (SQS_QUEUE, "QueueName"): "{name}",
    (SQS_QUEUE, "QueueUrl"): "{ref}",
    (KMS_KEY, "KeyId"): "{ref}",
}

# Resolves a value to one string (``Resolver.resolve_text``), naming the place in errors.
TextResolver = Callable[[Any, str], str]


class StandIns:
    """The local stand-ins of the resources of one template, for one context."""

    def __init__(self, resources: Mapping[str, Any], context: ResolveContext, text: TextResolver) -> None:
        self.resources = resources
        self.context = context
        self._text = text

    def pseudo_parameter(self, name: str, no_value: object) -> Any:
        """``AWS::Region`` and the rest; KeyError for a name that is not one."""
        context = self.context
        stack_id = (
            f"arn:{context.partition}:cloudformation:{context.region}:{context.account_id}:stack/"
            f"{context.stack_name}/{uuid.uuid5(uuid.NAMESPACE_URL, context.stack_name)}"
        )
        return {
            "AWS::Region": context.region,
            "AWS::AccountId": context.account_id,
            "AWS::StackName": context.stack_name,
            "AWS::Partition": context.partition,
            "AWS::URLSuffix": context.url_suffix,
            "AWS::StackId": stack_id,
            "AWS::NoValue": no_value,
            "AWS::NotificationARNs": [],
        }[name]

    def ref(self, name: str) -> str:
        if name in self.context.refs:
            return self.context.refs[name]
        kind = self.resource_type(name)
        if kind == KMS_KEY:
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.context.stack_name}/{name}"))
        return _REF_FORMATS.get(kind, "{name}").format(**self._fields(name))

    def get_att(self, name: str, attribute: str) -> str:
        pinned = self.context.attributes.get(f"{name}.{attribute}")
        if pinned is not None:
            return pinned
        kind = self.resource_type(name)
        if attribute == "Arn":
            return _ARN_FORMATS.get(kind, _GENERIC_ARN).format(**self._fields(name), ref=self.ref(name))
        known = _ATTRIBUTE_FORMATS.get((kind, attribute))
        if known is not None:
            return known.format(name=self.resource_name(name), ref=self.ref(name))
        # An attribute nothing local stands in for: a recognisable placeholder.
        return f"{self.resource_name(name)}.{attribute}"

    def resource_name(self, name: str) -> str:
        """The physical name of a resource: its name property, or ``<stack>-<LogicalId>``."""
        kind = self.resource_type(name)
        if name in self.context.refs and kind in (TABLE, *FUNCTION_TYPES):
            return self.context.refs[name]
        prop = _NAME_PROPERTIES.get(kind)
        properties = self.resources[name].get("Properties") or {}
        if prop and prop in properties:
            return self._text(properties[prop], f"{name}.{prop}")
        return f"{self.context.stack_name}-{name}"

    def resource_type(self, name: str) -> str:
        resource = self.resources.get(name)
        if not isinstance(resource, dict):
            raise TemplateError(f"unknown parameter or resource {name!r}")
        return str(resource.get("Type", ""))

    def _fields(self, name: str) -> dict[str, str]:
        context, kind = self.context, self.resource_type(name)
        return {
            "partition": context.partition,
            "region": context.region,
            "account": context.account_id,
            "url_suffix": context.url_suffix,
            "service": kind.split("::")[1].lower() if kind.count("::") == 2 else "unknown",
            "name": self.resource_name(name),
        }
