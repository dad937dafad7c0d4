"""The docs site builds without a warning, and its reference covers the code.

The site is built with Sphinx's Python API into a temporary directory, as `.ci/run` builds
it. What the reference must contain is listed here from the code itself (every
configurable trait of `CommExtensionApp.classes` and the Hub service, every route and
method of rest-api.yml, every field and action of the event schema), not from the docs
extension, so a renderer that drops something fails this test.
"""

from __future__ import annotations

import html
import io
import re
from pathlib import Path

import pytest
import yaml
from sphinx.application import Sphinx

import jupyter_comm_ext
from jupyter_comm_ext.app import CommExtensionApp
from jupyter_comm_ext.hub.app import CommsHubService

DOCS = Path(__file__).parent.parent / "docs"
PACKAGE = Path(jupyter_comm_ext.__file__).parent
HTTP_METHODS = ("get", "put", "post", "patch", "delete", "head", "options")


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The site's HTML directory and the build's warnings (as `.ci/run` builds it)."""
    out = tmp_path_factory.mktemp("docs")
    warnings = io.StringIO()
    app = Sphinx(
        srcdir=DOCS,
        confdir=DOCS,
        outdir=out / "html",
        doctreedir=out / "doctrees",
        buildername="html",
        status=None,
        warning=warnings,
        freshenv=True,
    )
    app.build()
    return out / "html", re.sub(r"\x1b\[[0-9;]*m", "", warnings.getvalue())


@pytest.fixture
def site(build: tuple[Path, str]) -> Path:
    return build[0]


def test_the_site_builds_without_warnings(build: tuple[Path, str]) -> None:
    assert build[1] == ""


def words(text: str) -> str:
    """Lowercase words separated by one space: markup, quotes and escapes do not matter."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def page_words(site: Path, name: str) -> str:
    main = site.joinpath(*name.split("/")).with_suffix(".html").read_text(encoding="utf-8")
    main = main[main.index("<main") : main.index("</main>")]
    return f" {words(html.unescape(re.sub(r'<[^>]+>', ' ', main)))} "


def mentions(page: str, text: str) -> bool:
    """Whether the page has these words in a row (whole words only)."""
    return f" {words(text)} " in page


def test_every_configurable_trait_is_documented_with_its_help(site: Path) -> None:
    page = page_words(site, "reference/config")
    classes = [*CommExtensionApp.classes, CommsHubService]
    for cls in classes:
        traits = cls.class_traits(config=True)
        assert traits, cls
        for name, trait in traits.items():
            label = f"{cls.__name__}.{name}"
            assert mentions(page, label), label
            # the help's first words, to see it is there and not some other trait's
            assert mentions(page, " ".join(words(trait.help).split()[:12])), label


def test_every_route_and_method_is_documented(site: Path) -> None:
    spec = yaml.safe_load((PACKAGE / "rest-api.yml").read_text(encoding="utf-8"))
    page = page_words(site, "reference/rest-api")
    operations = [
        (method, path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    ]
    assert len(operations) >= 6
    for method, path, op in operations:
        assert mentions(page, f"{method} {path}"), f"{method.upper()} {path}"
        assert mentions(page, op["summary"]), f"{method.upper()} {path}"
    for name in spec["components"]["schemas"]:
        assert mentions(page, name), name


def test_the_event_schema_is_documented(site: Path) -> None:
    schema = yaml.safe_load((PACKAGE / "events" / "comm.yaml").read_text(encoding="utf-8"))
    page = page_words(site, "reference/events")
    assert mentions(page, schema["$id"])
    for field in schema["properties"]:
        assert mentions(page, field), field
    for action in schema["properties"]["action"]["enum"]:
        assert mentions(page, action), action
