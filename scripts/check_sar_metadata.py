"""Checks template.yaml's ``AWS::ServerlessRepo::Application`` metadata (what ``sam publish`` sends to the
Serverless Application Repository) as SAR would, offline: every field present and well formed, the
license and readme files there, the license file the SPDX id's, the version pyproject.toml's.
``make validate`` runs it; exits 1 naming every problem.

    python scripts/check_sar_metadata.py [template.yaml]
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

from zus_local.cfn_yaml import load_template  # noqa: E402

KEY = "AWS::ServerlessRepo::Application"
REQUIRED = (
    "Name",
    "Description",
    "Author",
    "SpdxLicenseId",
    "LicenseUrl",
    "ReadmeUrl",
    "SemanticVersion",
    "SourceCodeUrl",
    "Labels",
)
# SAR's own constraints (AWS SAM developer guide, "Metadata section properties").
NAME = re.compile(r"[a-zA-Z0-9-]{1,140}")
AUTHOR = re.compile(r"[a-z0-9](([a-z0-9]|-(?!-))*[a-z0-9])?")
LABEL = re.compile(r"[a-zA-Z0-9+\-_:/@]{1,127}")
SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")
# The license texts the SPDX ids this project may use must contain.
LICENSE_TEXT = {"Apache-2.0": "Apache License\n                           Version 2.0", "MIT": "MIT License"}
MAX_FILE = 5 * 1024 * 1024


def problems(template: dict[str, Any], base: Path, version: str) -> list[str]:
    """Every way the metadata would fail to publish, or would publish something other than this
    project; ``base`` is the directory relative file references start from."""
    metadata = template.get("Metadata", {}).get(KEY)
    if not isinstance(metadata, dict):
        return [f"template.yaml has no Metadata: {KEY}"]
    missing = [f"{KEY} lacks {key}" for key in REQUIRED if key not in metadata]
    text = {key: value for key, value in metadata.items() if isinstance(value, str)}
    return missing + _fields(text, metadata.get("Labels", [])) + _version(text, version) + _files(text, base)


def _fields(text: dict[str, str], labels: object) -> list[str]:
    found = []
    if not NAME.fullmatch(text.get("Name", "-")):
        found.append("Name is 1-140 characters of a-zA-Z0-9-")
    if not (len(text.get("Author", "a")) <= 127 and AUTHOR.fullmatch(text.get("Author", "a"))):
        found.append("Author is 1-127 characters of a-z0-9 and single hyphens, not starting or ending with one")
    if not 1 <= len(text.get("Description", "-")) <= 256:
        found.append(f"Description is 1-256 characters, not {len(text['Description'])}")
    if not re.fullmatch(r"https://[^\s/]+/\S+", text.get("SourceCodeUrl", "https://-/-")):
        found.append("SourceCodeUrl is an https URL of the public repository")
    if not (isinstance(labels, list) and 1 <= len(labels) <= 10):
        return [*found, "Labels is a list of 1-10 labels"]
    bad = [label for label in labels if not LABEL.fullmatch(str(label))]
    return found + [f"label {label!r} is 1-127 characters of a-zA-Z0-9+-_:/@" for label in bad]


def _version(text: dict[str, str], version: str) -> list[str]:
    semantic = text.get("SemanticVersion", version)
    if not SEMVER.fullmatch(semantic):
        return [f"SemanticVersion {semantic!r} is not a semantic version"]
    if semantic != version:
        return [f"SemanticVersion {semantic} is not pyproject.toml's version {version}"]
    return []


def _files(text: dict[str, str], base: Path) -> list[str]:
    found = []
    for key in ("LicenseUrl", "ReadmeUrl"):
        path = base / text.get(key, "")
        if key in text and (not path.is_file() or path.stat().st_size > MAX_FILE):
            found.append(f"{key} names {text[key]!r}: not a file of at most 5 MB beside template.yaml")
    spdx = text.get("SpdxLicenseId")
    license_file = base / text.get("LicenseUrl", "")
    if spdx is not None and spdx not in LICENSE_TEXT:
        found.append(f"SpdxLicenseId {spdx!r} is none of {', '.join(LICENSE_TEXT)}")
    elif spdx is not None and license_file.is_file() and LICENSE_TEXT[spdx] not in license_file.read_text("utf-8"):
        found.append(f"{text['LicenseUrl']} is not the {spdx} license text")
    return found


def project_version(pyproject: Path) -> str:
    return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])


def main(argv: list[str]) -> int:
    template = Path(argv[0]) if argv else ROOT / "template.yaml"
    found = problems(load_template(template), template.parent, project_version(ROOT / "pyproject.toml"))
    for problem in found:
        print(f"{template.name}: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
