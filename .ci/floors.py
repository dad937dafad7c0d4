"""Pip constraints that pin every declared floor (`name==version` per `>=` bound), and the
test tools the lowest-versions run needs.

The lowest-versions run (.ci/floors) installs the package with these, so the floors in
pyproject.toml are the ones tested and are never written a second time.  Read are the runtime
dependencies and the `kernel` and `hub` extras, plus ipywidgets from the `test` extra: the
widget library whose widgets the kernel side releases.

    python .ci/floors.py > floors.txt          # the constraints
    python .ci/floors.py --tools > tools.txt   # the `test` extra, less the browser's and fuzzer's
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
EXTRAS = ("kernel", "hub")
#: from the `test` extra: what the package works with, rather than what the tests run on
ALSO_FROM_TEST = {"ipywidgets"}
#: test tools of the tests the run leaves out (browser, JupyterLab, contract, docs, lint)
NOT_IN_THE_RUN = {
    "playwright",
    "jupyterlab",
    "schemathesis",
    "sphinx",
    "myst-parser",
    "pydata-sphinx-theme",
    "ruff",
}


def floors(project: dict[str, Any]) -> dict[str, str]:
    """The `>=` bound of each declared requirement, by canonical name."""
    extras = project["optional-dependencies"]
    declared = [Requirement(r) for r in project["dependencies"]]
    declared += [Requirement(r) for extra in EXTRAS for r in extras[extra]]
    declared += [
        r for r in map(Requirement, extras["test"]) if canonicalize_name(r.name) in ALSO_FROM_TEST
    ]
    return {
        canonicalize_name(r.name): spec.version
        for r in declared
        for spec in r.specifier
        if spec.operator == ">="
    }


def tools(project: dict[str, Any]) -> list[str]:
    """The `test` extra's requirements the run's tests use."""
    test = project["optional-dependencies"]["test"]
    return [r for r in test if canonicalize_name(Requirement(r).name) not in NOT_IN_THE_RUN]


def main() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    if sys.argv[1:] == ["--tools"]:
        lines = tools(project)
    else:
        lines = [f"{name}=={version}" for name, version in sorted(floors(project).items())]
    sys.stdout.writelines(f"{line}\n" for line in lines)


if __name__ == "__main__":
    main()
