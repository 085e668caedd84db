"""Read a CloudFormation/SAM YAML template into plain Python data.

CloudFormation's short-form intrinsics (``!Ref x``, ``!GetAtt a.b``, ``!Sub …``, ``!If […]`` and the
rest) become their long JSON forms (``{"Ref": "x"}``, ``{"Fn::GetAtt": ["a", "b"]}``,
``{"Fn::Sub": …}``), exactly as CloudFormation itself reads them. Values stay strings where YAML 1.1
would guess a date, as CloudFormation does (``AWSTemplateFormatVersion: 2010-09-09``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["CfnLoader", "load_template", "loads"]

# Tags whose long form is not ``Fn::<Tag>``.
_PLAIN_TAGS = {"Ref": "Ref", "Condition": "Condition"}


class CfnLoader(yaml.SafeLoader):
    """A safe YAML loader that understands CloudFormation's ``!Tag`` intrinsics."""


# CloudFormation reads unquoted dates as strings; drop YAML 1.1's timestamp guess.
CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - yaml has no other node kinds
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node for !{suffix}", node.start_mark)
    if suffix in _PLAIN_TAGS:
        return {_PLAIN_TAGS[suffix]: value}
    if suffix == "GetAtt" and isinstance(value, str):
        # "Resource.Attribute" (the attribute may itself contain dots: "Db.Endpoint.Address").
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def loads(text: str) -> dict[str, Any]:
    """Parse a template's text; the top level must be a mapping."""
    data = yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader
    if not isinstance(data, dict):
        raise ValueError("a CloudFormation template must be a YAML mapping")
    return data


def load_template(path: str | Path) -> dict[str, Any]:
    """Read the template at ``path`` (``template.yaml``) into plain dicts, lists and strings."""
    return loads(Path(path).read_text(encoding="utf-8"))
