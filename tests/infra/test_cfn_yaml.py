"""zus_local.cfn_yaml reads CloudFormation's short-form intrinsics into their long JSON forms."""

from __future__ import annotations

import pytest
import yaml

from zus_local.cfn_yaml import loads


def test_short_forms_become_long_forms() -> None:
    template = loads(
        """
AWSTemplateFormatVersion: 2010-09-09
Resources:
  Thing:
    Properties:
      A: !Ref Table
      B: !GetAtt Table.Arn
      C: !GetAtt Db.Endpoint.Address
      D: !GetAtt [Table, StreamArn]
      E: !Sub "arn:${AWS::Partition}:s3:::${Bucket}/*"
      F: !Sub ["${Name}-x", {Name: !Ref Stage}]
      G: !If [HasName, !Ref Name, !Sub "${Stage}-default"]
      H: !Not [!Equals [!Ref Email, ""]]
      I: !FindInMap [Envs, !Ref Env, Url]
      J: !Condition IsProd
      K: !Join [",", [a, b]]
      L: !Base64 text
"""
    )
    props = template["Resources"]["Thing"]["Properties"]
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    assert props["A"] == {"Ref": "Table"}
    assert props["B"] == {"Fn::GetAtt": ["Table", "Arn"]}
    assert props["C"] == {"Fn::GetAtt": ["Db", "Endpoint.Address"]}
    assert props["D"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert props["E"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${Bucket}/*"}
    assert props["F"] == {"Fn::Sub": ["${Name}-x", {"Name": {"Ref": "Stage"}}]}
    assert props["G"] == {"Fn::If": ["HasName", {"Ref": "Name"}, {"Fn::Sub": "${Stage}-default"}]}
    assert props["H"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "Email"}, ""]}]}
    assert props["I"] == {"Fn::FindInMap": ["Envs", {"Ref": "Env"}, "Url"]}
    assert props["J"] == {"Condition": "IsProd"}
    assert props["K"] == {"Fn::Join": [",", ["a", "b"]]}
    assert props["L"] == {"Fn::Base64": "text"}


def test_plain_yaml_is_unchanged_and_unsafe_tags_are_refused() -> None:
    assert loads("a: 1\nb: [x, true]\n") == {"a": 1, "b": ["x", True]}
    with pytest.raises(ValueError, match="mapping"):
        loads("- just a list\n")
    # Still a safe loader: Python tags are refused, not constructed.
    with pytest.raises(yaml.constructor.ConstructorError):
        loads("x: !!python/name:os.system\n")
