"""The Dockerfile, read since no Docker engine runs here: it copies what the package and alembic
need, none of it excluded by .dockerignore, and installs with the pinned versions CI tests; the
pins are exact and cover every dependency."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = "requirements/constraints.txt"


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def copied() -> set[str]:
    sources: set[str] = set()
    for op, args in instructions():
        if op == "COPY":
            sources |= set(shlex.split(args)[:-1])
    return sources


def ignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        if fnmatch.fnmatch(path, pattern.lstrip("!").removeprefix("**/")):
            verdict = not negate
    return verdict


def test_it_copies_the_packages_the_pins_and_alembic_and_nothing_is_ignored() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    wanted = {p.rstrip("*") for p in packages["packages"]["find"]["include"]}
    wanted |= {"pyproject.toml", "README.md", "alembic.ini", "requirements"}
    assert wanted <= copied()
    for source in copied():
        assert (ROOT / source).exists(), source
        assert not ignored(source), f"{source} is in .dockerignore"


def test_it_installs_with_the_pinned_versions() -> None:
    installs = [args for op, args in instructions() if op == "RUN" and "pip install" in args]
    assert installs
    for command in installs:
        assert re.search(rf"(-c|--constraint)\s+{re.escape(CONSTRAINTS)}\b", command), command
    assert (ROOT / CONSTRAINTS).is_file()


def test_every_pin_is_exact_and_every_dependency_is_pinned() -> None:
    pins = {}
    for line in (ROOT / CONSTRAINTS).read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        requirement = Requirement(line)
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"{line} is not pinned: bash scripts/lock"
        assert requirement.specifier.contains(pinned), (
            f"{line} but pinned {pinned}: bash scripts/lock"
        )
