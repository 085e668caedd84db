"""The locked builds: requirements/lock.txt pins what pyproject.toml asks for, and the layer's
requirements (what `sam build` installs) are the lock's pins. `make lock` rewrites both."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest
from infra_support import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements" / "lock.txt"
LAYER_REQUIREMENTS = ROOT / "layers" / "zus_m2m" / "python" / "requirements.txt"
REGENERATE = "run `make lock`"
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;\\]+)\s*(?:;\s*(?P<marker>[^\\]+?))?\s*\\?$")
_HASH = re.compile(r"--hash=(sha256:[0-9a-f]{64})")
_DIRECT = "zus-m2m (pyproject.toml)"


@dataclass
class Pin:
    name: str
    version: str
    marker: str
    hashes: set[str] = field(default_factory=set)
    via: list[str] = field(default_factory=list)


def read_pins(path: Path) -> list[Pin]:
    """The pins of a `uv pip compile --generate-hashes` file, with their hashes and `# via` notes."""
    pins: list[Pin] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        match = _PIN.match(line)
        if match:
            name = str(canonicalize_name(match["name"]))
            pins.append(Pin(name, match["version"], (match["marker"] or "").strip()))
        elif pins and stripped.startswith("--hash="):
            pins[-1].hashes.update(_HASH.findall(stripped))
        elif pins and line.startswith("    #"):
            note = stripped.lstrip("#").strip().removeprefix("via").strip()
            if note:
                pins[-1].via.append(note)
    return pins


def load_lock_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_script", ROOT / "scripts" / "lock.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    return [Requirement(line) for line in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


@pytest.fixture(scope="module")
def lock() -> dict[str, list[Pin]]:
    by_name: dict[str, list[Pin]] = {}
    for pin in read_pins(LOCK):
        by_name.setdefault(pin.name, []).append(pin)
    return by_name


def test_every_requirement_of_pyproject_is_pinned_within_its_range(lock: dict[str, list[Pin]]) -> None:
    for requirement in pyproject_requirements():
        pins = lock.get(str(canonicalize_name(requirement.name)))
        assert pins, f"{requirement} is not in {LOCK.name}: {REGENERATE}"
        for pin in pins:
            assert requirement.specifier.contains(pin.version, prereleases=True), (
                f"{LOCK.name} pins {pin.name}=={pin.version}, outside pyproject.toml's {requirement}: {REGENERATE}"
            )


def test_the_lock_pins_nothing_directly_that_pyproject_no_longer_asks_for(lock: dict[str, list[Pin]]) -> None:
    direct = {name for name, pins in lock.items() if any(_DIRECT in pin.via for pin in pins)}
    asked = {str(canonicalize_name(requirement.name)) for requirement in pyproject_requirements()}
    assert direct == asked, f"{LOCK.name} was resolved from another pyproject.toml: {REGENERATE}"


def test_every_pin_carries_hashes(lock: dict[str, list[Pin]]) -> None:
    unhashed = [f"{pin.name}=={pin.version}" for pins in lock.values() for pin in pins if not pin.hashes]
    assert unhashed == []
    layer_unhashed = [f"{pin.name}=={pin.version}" for pin in read_pins(LAYER_REQUIREMENTS) if not pin.hashes]
    assert layer_unhashed == []


def test_the_layer_requirements_are_the_locks_pins_of_the_runtime_less_what_lambda_provides(
    lock: dict[str, list[Pin]],
) -> None:
    script = load_lock_script()
    layer = {pin.name: pin for pin in read_pins(LAYER_REQUIREMENTS)}
    for line in script.layer_inputs(PYPROJECT):
        assert str(canonicalize_name(Requirement(line).name)) in layer, f"the layer lacks {line}: {REGENERATE}"
    for provided in script.RUNTIME_PROVIDED:
        assert canonicalize_name(provided) not in layer, f"the Lambda runtime provides {provided}"
    for name, pin in layer.items():
        assert pin.marker == "", f"{name}: the layer is resolved for one Python and platform"
        locked = [candidate for candidate in lock.get(name, []) if candidate.version == pin.version]
        assert locked, f"the layer pins {name}=={pin.version}, which {LOCK.name} does not: {REGENERATE}"
        assert pin.hashes == locked[0].hashes, f"{name}=={pin.version}: other hashes than {LOCK.name}'s"
