"""docs/design.md's module map and its table of where a change goes stay true to the tree."""

from __future__ import annotations

import re

from infra_support import ROOT

DESIGN = ROOT / "docs" / "design.md"
PACKAGE = ROOT / "layers" / "zus_m2m" / "python" / "zus_m2m"


def _section(title: str) -> str:
    text = DESIGN.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_module_map_shows_every_module_of_the_package() -> None:
    # Given the map's Mermaid diagram
    diagram = _section("Module map").split("```mermaid", 1)[1].split("```", 1)[0]
    nodes = set(re.findall(r"[A-Za-z_]+", diagram))
    # When the package's modules and subpackages are listed
    modules = {path.stem for path in PACKAGE.iterdir() if path.suffix == ".py" and path.stem != "__init__"}
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    # Then each is a node of the diagram
    assert sorted((modules | packages) - nodes) == []


def test_every_path_where_a_change_goes_exists() -> None:
    table = _section("Where a change goes")
    paths = {path for path in re.findall(r"`([\w./<>-]+\.(?:py|yaml|toml|md))`", table) if "<" not in path}
    assert paths, "the table names no file"
    package_files = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")}
    missing = [
        path
        for path in sorted(paths)
        if not (ROOT / path).exists()
        and path not in package_files
        and not (ROOT / "local" / "zus_local" / path).exists()
    ]
    assert missing == []


# Each package's row of the code layout, and the folder whose modules it must name.
LAYOUT_ROWS = {
    "zus_m2m/aws/": PACKAGE / "aws",
    "zus_m2m/zus/": PACKAGE / "zus",
    "zus_m2m/tokens/": PACKAGE / "tokens",
    "zus_m2m/provisioning/": PACKAGE / "provisioning",
    "zus_m2m/rotation/": PACKAGE / "rotation",
    "zus_m2m/work/": PACKAGE / "work",
    "local/zus_emulator/": ROOT / "local" / "zus_emulator",
    "local/zus_local/": ROOT / "local" / "zus_local",
    "clients/python/src/zus_m2m_client/": ROOT / "clients" / "python" / "src" / "zus_m2m_client",
}


def test_the_code_layout_names_every_module_of_each_package() -> None:
    # Given the code layout's rows, by the path they start with
    rows = {
        match.group(1): match.group(0)
        for match in re.finditer(r"^\| `([\w./]+/)` \|.*$", _section("Code layout"), flags=re.MULTILINE)
    }
    missing: dict[str, list[str]] = {}
    for row, folder in LAYOUT_ROWS.items():
        # When a package's modules are listed (its entry points and private helpers included)
        modules = {path.stem for path in folder.glob("*.py") if path.stem not in ("__init__", "__main__")}
        named = set(re.findall(r"`([\w.]+?)(?:\.py)?`", rows.get(row, "")))
        # Then its row names each of them
        unnamed = sorted(modules - named)
        if unnamed:
            missing[row] = unnamed
    assert missing == {}
