"""Fixtures for the infrastructure tests: template.yaml as data, and the CloudFormation the SAM
transform expands it into (``make validate`` writes it)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_support import ROOT, TEMPLATE, TRANSLATED, template_digest

from zus_local.cfn_yaml import load_template


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="session")
def translated() -> dict[str, Any]:
    """The CloudFormation `make validate` produced from the current template.yaml."""
    digest_file = TRANSLATED.with_suffix(".sha256")
    if not TRANSLATED.exists() or not digest_file.exists():
        pytest.fail(f"{TRANSLATED.relative_to(ROOT)} is missing: run `make validate` first")
    if digest_file.read_text(encoding="utf-8").strip() != template_digest():
        pytest.fail(f"{TRANSLATED.relative_to(ROOT)} is older than template.yaml: run `make validate` again")
    data: dict[str, Any] = json.loads(TRANSLATED.read_text(encoding="utf-8"))
    return data
