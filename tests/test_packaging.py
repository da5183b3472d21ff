"""The repository installs as one distribution: one top-level package, an extra per service, a command each."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE = ROOT / "src" / "transcription"
SERVICES = ("downloader", "asr", "diarizer", "gateway")


def requirement_names(requirements: list[str]) -> set[str]:
    return {canonical(re.split(r"[\s=<>!~\[;]", line.strip(), maxsplit=1)[0]) for line in requirements if line.strip()}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    # from a clean copy: an in-tree build directory would hide files the package data misses
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("transcription_platform-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_has_one_top_level_package_with_its_data(wheel):
    names = wheel.namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top_level == {"transcription"}, "generic names such as asr or gateway must not be top-level modules"
    for needed in ("transcription/gateway/static/index.html", "transcription/gateway/static/app.js", "transcription/v1/asr_pb2.pyi"):
        assert needed in names, f"{needed} is missing from the wheel"
    for service in SERVICES:
        assert f"transcription/{service}/__main__.py" in names


def test_every_service_has_a_console_command(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    for service in SERVICES:
        assert f"transcription-{service} = transcription.{service}." in text
    assert "transcribe = transcription.cli:main" in text
    assert "transcription-run = transcription.launcher:main" in text


def third_party_imports(paths) -> set[str]:
    """Top-level names of the non-stdlib, non-project modules the files import."""
    modules = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m != "transcription"}


# Imported only when the service's optional route runs, and declared elsewhere on purpose.
OPTIONAL = {
    # the ASR and the diarizer find CUDA through whichever of these they already have
    "ctranslate2",
    "torch",
}


@pytest.mark.parametrize("service", SERVICES)
def test_each_extra_declares_what_its_service_imports(service):
    """A service's own imports come from the base dependencies, its extra, or its --no-deps requirements file."""
    distributions = importlib.metadata.packages_distributions()
    declared = requirement_names(PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"][service])
    nodeps = ROOT / "requirements" / f"{service}-nodeps.txt"  # what pip installs with --no-deps
    if nodeps.exists():
        declared |= requirement_names(line.split("#")[0] for line in nodeps.read_text().splitlines())
    for module in sorted(third_party_imports((PACKAGE / service).rglob("*.py"))):
        providers = {canonical(d) for d in distributions.get(module, [])}
        assert providers, f"{service} imports {module}, which no installed distribution provides"
        assert providers & declared, f"{service} imports {module} (from {providers}) but neither its extra nor the base declares it"


def test_shared_code_needs_only_the_base_dependencies():
    distributions = importlib.metadata.packages_distributions()
    declared = requirement_names(PYPROJECT["project"]["dependencies"])
    shared = [*PACKAGE.glob("*.py"), *(PACKAGE / "v1").glob("*.py")]
    for module in sorted(third_party_imports(shared) - OPTIONAL):
        providers = {canonical(d) for d in distributions.get(module, [])}
        assert providers & declared, f"the shared package imports {module} (from {providers}) but the base dependencies lack it"
