"""The code's structure, held: the printed route table is the spec's, every
package is installed, and the route list is one ordered list with one action a
route."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from botkit.cli import routes_table
from botkit.resources import ROUTES
from botkit.spec.openapi import build_spec

ROOT = Path(__file__).resolve().parent.parent


def test_routes_table_is_the_spec():
    printed = [line.split()[:2] for line in routes_table().splitlines()]
    spec = build_spec(ROUTES)["paths"]
    served = [
        [method.upper(), path]
        for path, ops in spec.items()
        if path not in ("/spec.json", "/healthz", "/readyz")
        for method in ops
        if method != "servers"
    ]
    assert sorted(printed) == sorted(served) and len(printed) == len(ROUTES)
    for line in routes_table().splitlines():  # each route says where it is declared
        where = line.split()[-1]
        file, _, number = where.rpartition(":")
        assert (ROOT / file).is_file() and number.isdigit(), line


def test_botkit_routes_command():
    out = subprocess.run(
        [sys.executable, "-m", "botkit.cli", "routes"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert "GET   /bot/{botId}/fetch" in out and "resources/bot.py:" in out


def test_routes_are_ordered_by_path_and_unique():
    paths = [a.path for a in ROUTES]
    assert paths == sorted(paths) and len(set(paths)) == len(paths)


def test_route_modules_are_named_after_the_first_segment():
    """A route lives in the module of its first path segment; the exceptions say why
    in their module's docstring (a conversation's completions and contact; partner users under /user;
    an ability's execute, which may call a bot)."""
    allowed = {("completion", "conversation"), ("contact", "conversation"), ("partner", "user")}
    allowed.add(("completion", "skillset"))
    for action in ROUTES:
        file = Path(action.declared_at[0])
        module = file.parent.name if file.stem == "__init__" or file.parent.name != "resources" else file.stem
        segment = action.path.strip("/").split("/")[0]
        assert module == segment or (module, segment) in allowed, (action.path, action.declared_at)


def test_every_package_is_installed():
    """The repository root is the package: every folder with an __init__.py must be
    in pyproject's packages, or a non-editable install leaves it out."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        "botkit" + "".join("." + p for p in init.parent.relative_to(ROOT).parts)
        for init in ROOT.rglob("__init__.py")
        if not {".venv", "tests", "build", ".data"} & set(init.parts)  # .data: the bench's own environments
    }
    assert found | {"botkit.store.migrations"} == listed  # the SQL folder is listed as a data package
