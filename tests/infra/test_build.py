"""What `sam build` produced (``make build`` runs before pytest in ``make test``) is what Lambda will run:
every handler imports with nothing but its function folder, the layer and the runtime's own SDK on
its path, under Python 3.13; every compiled extension is built for aarch64 and CPython 3.13; and the
layer ships every module's bytecode, as Lambda cannot write it to its read-only /opt."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from infra_support import (
    BUILD_DIR,
    FUNCTIONS,
    ROOT,
    function_property,
    import_handler,
    resources_of_type,
)

from zus_local.cfn_yaml import load_template

# What the Lambda python3.13 runtime ships besides the standard library (the AWS SDK and its deps).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")

EM_AARCH64 = 183
CPYTHON_TAG = re.compile(r"\.cpython-(\d+)-([a-z0-9_]+)-linux-gnu\.so$")

# Run isolated (-I: no PYTHON* variables, no user site, no script dir) and without site-packages
# (-S), so only the folders put on sys.path here can satisfy an import - as on Lambda, where the path
# is the function folder, then the layer's python/, then the runtime.
IMPORT_HANDLER = """
import importlib, json, sys
sys.path[:0] = json.loads(sys.argv[1])
module = importlib.import_module(sys.argv[2])
if not callable(getattr(module, sys.argv[3], None)):
    sys.exit(f"{sys.argv[2]}.{sys.argv[3]} is not callable")
"""


@functools.cache
def python313() -> str:
    """The interpreter `make build` used: ZUS_PYTHON313, pyenv's 3.13.0, or python3.13 on PATH."""
    candidates = [os.environ.get("ZUS_PYTHON313", "")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        prefix = subprocess.run([pyenv, "prefix", "3.13.0"], capture_output=True, text=True, check=False)
        if prefix.returncode == 0:
            candidates.append(str(Path(prefix.stdout.strip()) / "bin" / "python3.13"))
    candidates.append(shutil.which("python3.13") or "")
    for candidate in filter(None, candidates):
        # A pyenv shim exists even where its version is not selected: ask the interpreter itself.
        probe = [candidate, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 13))"]
        if os.access(candidate, os.X_OK) and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            return candidate
    pytest.fail("Python 3.13 is missing: the built artifacts must be imported by Lambda's Python (pyenv 3.13.0)")


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    built_template = BUILD_DIR / "template.yaml"
    if not built_template.is_file():
        pytest.fail(f"{BUILD_DIR.relative_to(ROOT)} is missing: run `make build` first")
    return load_template(built_template)


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding just the SDK that the Lambda runtime provides, linked from this venv."""
    folder = tmp_path_factory.mktemp("lambda-runtime")
    for name in RUNTIME_PROVIDED:
        spec = importlib.util.find_spec(name)
        assert spec is not None, f"{name} is not installed in the test venv"
        assert spec.origin, f"{name} has no file"
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (folder / source.name).symlink_to(source, target_is_directory=source.is_dir())
    return folder


def layer_dirs(built: dict[str, Any], function: str) -> list[Path]:
    folders = []
    for layer in function_property(built, function, "Layers") or []:
        resource = built["Resources"][layer["Ref"]]
        folders.append(BUILD_DIR / resource["Properties"]["ContentUri"] / "python")
    return folders


def test_every_function_was_built(built: dict[str, Any]) -> None:
    assert set(resources_of_type(built, "AWS::Serverless::Function")) == set(FUNCTIONS)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_handler_imports_from_the_built_function_and_layer(
    built: dict[str, Any], runtime_dir: Path, function: str
) -> None:
    code = BUILD_DIR / built["Resources"][function]["Properties"]["CodeUri"]
    module, _, attribute = function_property(built, function, "Handler").rpartition(".")
    assert (code / f"{module.replace('.', '/')}.py").is_file(), f"{function}: no {module}.py in {code}"
    layers = layer_dirs(built, function)
    assert layers, f"{function} has no layer"
    for layer in layers:
        assert (layer / "zus_m2m" / "__init__.py").is_file(), f"the layer {layer} lacks zus_m2m"
    search_path = [str(code), *map(str, layers), str(runtime_dir)]
    result = import_handler(
        [python313(), "-I", "-S", "-c", IMPORT_HANDLER, json.dumps(search_path), module, attribute], code
    )
    assert result.returncode == 0, f"{function}: {module}.{attribute} does not import from the build:\n{result.stderr}"


def _elf_machine(path: Path) -> int | None:
    header = path.read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def test_compiled_extensions_are_for_aarch64_and_cpython_313(built: dict[str, Any]) -> None:
    problems = []
    for path in sorted(BUILD_DIR.rglob("*.so*")):
        if not path.is_file() or not re.search(r"\.so(\.\d+)*$", path.name):
            continue
        where = path.relative_to(BUILD_DIR)
        if _elf_machine(path) != EM_AARCH64:
            problems.append(f"{where}: not an aarch64 ELF")
        tag = CPYTHON_TAG.search(path.name)
        if tag and tag.groups() != ("313", "aarch64"):
            problems.append(f"{where}: built for cpython-{tag.group(1)}-{tag.group(2)}")
    assert not problems


def test_wheels_in_the_build_are_pure_or_for_aarch64_cp313(built: dict[str, Any]) -> None:
    problems = []
    for wheel in sorted(BUILD_DIR.rglob("*.dist-info/WHEEL")):
        tags = [line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines() if line.startswith("Tag:")]
        for tag in tags:
            python, abi, platform = tag.split("-")
            pure = abi == "none" and platform == "any"
            native = "aarch64" in platform and (python == "cp313" or abi == "abi3")
            if not (pure or native):
                problems.append(f"{wheel.parent.relative_to(BUILD_DIR)}: {tag}")
    assert not problems


# Run by Lambda's Python over the layer's python/ folder: each .py outside dist-info folders that has no
# cpython-313 .pyc beside it (in __pycache__), or one that is not unchecked-hash (flags 0b01, PEP 552),
# or was not compiled by this Python from this very source (magic number, source hash).
CHECK_BYTECODE = """
import importlib.util, json, pathlib, sys
site = pathlib.Path(sys.argv[1])
problems = []
for source in sorted(site.rglob("*.py")):
    if any(part.endswith((".dist-info", ".data")) for part in source.relative_to(site).parts):
        continue
    where = str(source.relative_to(site))
    cached = pathlib.Path(importlib.util.cache_from_source(str(source)))
    if not cached.is_file():
        problems.append(f"{where}: no {cached.name}")
        continue
    header = cached.read_bytes()[:16]
    if header[:4] != importlib.util.MAGIC_NUMBER:
        problems.append(f"{where}: not compiled by Python 3.13")
    elif int.from_bytes(header[4:8], "little") != 0b01:
        problems.append(f"{where}: not an unchecked-hash .pyc")
    elif header[8:16] != importlib.util.source_hash(source.read_bytes()):
        problems.append(f"{where}: compiled from another source")
print(json.dumps({"sources": len(list(site.rglob("*.py"))), "problems": problems}))
"""


def test_the_layer_ships_unchecked_hash_bytecode_for_python_313(built: dict[str, Any]) -> None:
    """/opt is read-only on Lambda: without its .pyc every cold start compiles every module it imports."""
    site = BUILD_DIR / built["Resources"]["SharedLayer"]["Properties"]["ContentUri"] / "python"
    result = subprocess.run(
        [python313(), "-I", "-S", "-c", CHECK_BYTECODE, str(site)], capture_output=True, text=True, check=True
    )
    report = json.loads(result.stdout)
    assert (site / "zus_m2m" / "__init__.py").is_file()
    assert report["sources"] > 0
    assert report["problems"] == []
