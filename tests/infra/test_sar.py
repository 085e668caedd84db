"""template.yaml's Serverless Application Repository metadata (scripts/check_sar_metadata.py, which
``make validate`` runs): complete and as SAR takes it, its version pyproject.toml's; and the checker
names each way a template could go wrong."""

from __future__ import annotations

import copy
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from infra_support import ROOT

_spec = importlib.util.spec_from_file_location("check_sar_metadata", ROOT / "scripts" / "check_sar_metadata.py")
assert _spec is not None
assert _spec.loader is not None
check = importlib.util.module_from_spec(_spec)
sys.modules["check_sar_metadata"] = check
_spec.loader.exec_module(check)

VERSION = check.project_version(ROOT / "pyproject.toml")


def test_the_template_is_publishable_as_this_version(template: dict[str, Any]) -> None:
    assert check.problems(template, ROOT, VERSION) == []
    metadata = template["Metadata"][check.KEY]
    assert metadata["SemanticVersion"] == VERSION
    assert (ROOT / metadata["LicenseUrl"]).read_text().lstrip().startswith("Apache License\n")


def _set(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda metadata: metadata.__setitem__(key, value)


BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "no version": (lambda metadata: metadata.pop("SemanticVersion"), "lacks SemanticVersion"),
    "another version": (_set("SemanticVersion", "9.9.9"), "is not pyproject.toml's version"),
    "not semver": (_set("SemanticVersion", "1.0"), "is not a semantic version"),
    "capital author": (_set("Author", "Zus-M2M"), "Author is 1-127 characters"),
    "long description": (_set("Description", "x" * 257), "Description is 1-256 characters, not 257"),
    "spaced label": (_set("Labels", ["zus health"]), "label 'zus health'"),
    "eleven labels": (_set("Labels", [f"l{n}" for n in range(11)]), "Labels is a list of 1-10 labels"),
    "no readme": (_set("ReadmeUrl", "NOPE.md"), "ReadmeUrl names 'NOPE.md'"),
    "other license": (_set("SpdxLicenseId", "MIT"), "LICENSE is not the MIT license text"),
    "no source": (lambda metadata: metadata.pop("SourceCodeUrl"), "lacks SourceCodeUrl"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_the_checker_names_what_is_wrong(template: dict[str, Any], breakage: str) -> None:
    broken = copy.deepcopy(template)
    change, expected = BREAKAGES[breakage]
    change(broken["Metadata"][check.KEY])
    found = check.problems(broken, ROOT, VERSION)
    assert any(expected in problem for problem in found), found


def test_a_template_without_the_metadata(tmp_path: Path) -> None:
    assert check.problems({"Resources": {}}, tmp_path, VERSION) == [f"template.yaml has no Metadata: {check.KEY}"]
