"""Generate the reference pages from the code at build time.

Three pages of the docs are written by the code they describe, so they cannot drift from
it: the REST API (``jupyter_comm_ext/rest-api.yml``), every configurable trait (the
classes the extension and the Hub service configure) and the event schema
(``jupyter_comm_ext/events/comm.yaml``). Each page's source holds its introduction; on
``source-read`` this extension appends the generated Markdown, and notes the files it read
as dependencies so an incremental build notices a change.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from sphinx.application import Sphinx
from traitlets import HasTraits, TraitType

import jupyter_comm_ext
from jupyter_comm_ext.app import CommExtensionApp
from jupyter_comm_ext.hub.app import CommsHubService

PACKAGE = Path(jupyter_comm_ext.__file__).parent
REST_API = PACKAGE / "rest-api.yml"
EVENT_SCHEMA = PACKAGE / "events" / "comm.yaml"
METHODS = ("get", "put", "post", "patch", "delete")


def configurables() -> list[tuple[str, list[type[HasTraits]]]]:
    """The configurable classes, grouped by the program that reads their settings."""
    return [
        ("The server extension", list(CommExtensionApp.classes)),
        ("The JupyterHub service", [CommsHubService]),
    ]


# -- Markdown helpers -----------------------------------------------------------------------

_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_SPECIAL = re.compile(r"([\\*_<>\[\]|$])")


def escape(text: str) -> str:
    """Markdown for plain text: backtick spans stay code, everything else reads literally."""
    out, last = [], 0
    for match in _CODE.finditer(text):
        out.append(_SPECIAL.sub(r"\\\1", text[last : match.start()]))
        out.append(match.group(0).replace("|", "\\|"))
        last = match.end()
    out.append(_SPECIAL.sub(r"\\\1", text[last:]))
    result = "".join(out)
    return "\\" + result if result[:1] in "#-+>=" else result


def paragraphs(text: str) -> list[str]:
    """A help text or description as Markdown paragraphs, each on one line."""
    cleaned = inspect.cleandoc(text or "")
    return [escape(" ".join(p.split())) for p in re.split(r"\n\s*\n", cleaned) if p.strip()]


def one_line(text: str | None) -> str:
    """Text for a table cell."""
    return " ".join(paragraphs(text or "")) or " "


# -- Configuration --------------------------------------------------------------------------


def trait_type(trait: TraitType[Any, Any]) -> str:
    return trait.info_text if trait.__class__.__name__ == "Enum" else trait.__class__.__name__


def trait_default(trait: TraitType[Any, Any]) -> str:
    try:
        default = trait.default_value_repr()
    except Exception:  # a dynamic default: say so rather than guess
        default = "computed at start"
    return default.replace("`", "'")


def render_config() -> Iterator[str]:
    for program, classes in configurables():
        yield f"## {program}\n"
        for cls in classes:
            yield f"(config-{cls.__name__})=\n### {cls.__name__}\n"
            yield from paragraphs((cls.__doc__ or "").split("\n\n")[0])
            yield ""
            for name, trait in sorted(cls.class_traits(config=True).items()):
                help_text = paragraphs(trait.help) or ["(no help)"]
                yield f"(config-{cls.__name__}.{name})=\n`{cls.__name__}.{name}`"
                yield f": {trait_type(trait)}, default `{trait_default(trait)}`\n"
                yield from (f"  {para}\n" for para in help_text)


# -- REST API -------------------------------------------------------------------------------


class Spec:
    """An OpenAPI document, with ``$ref`` lookups inside it."""

    def __init__(self, path: Path) -> None:
        self.doc = yaml.safe_load(path.read_text(encoding="utf-8"))

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def schema_text(self, schema: dict[str, Any] | None) -> str:
        if not schema:
            return " "
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[1]
            return f"[{name}](#schema-{name.lower()})"
        schema = self.resolve(schema)
        if "enum" in schema:
            return " \\| ".join(f"`{v}`" for v in schema["enum"])
        if schema.get("type") == "array":
            return f"array of {self.schema_text(schema.get('items'))}"
        kind = schema.get("type", "object")
        return " or ".join(kind) if isinstance(kind, list) else str(kind)


def operation_anchor(method: str, path: str) -> str:
    return "api-" + method + re.sub(r"[^a-z0-9]+", "-", path.lower()).rstrip("-")


def render_operation(spec: Spec, path: str, method: str) -> Iterator[str]:
    item = spec.doc["paths"][path]
    op = item[method]
    yield f"({operation_anchor(method, path)})=\n## {method.upper()} {path}\n"
    yield escape(op.get("summary", "")) + "\n"
    yield from (p + "\n" for p in paragraphs(op.get("description", "")))
    params = [spec.resolve(p) for p in [*item.get("parameters", []), *op.get("parameters", [])]]
    if params:
        yield "| parameter | in | type | description |\n|---|---|---|---|"
        for p in params:
            required = " (required)" if p.get("required") else ""
            yield (
                f"| `{p['name']}`{required} | {p['in']} | "
                f"{spec.schema_text(p.get('schema'))} | {one_line(p.get('description'))} |"
            )
        yield ""
    yield "| status | meaning |\n|---|---|"
    for status, response in op["responses"].items():
        response = spec.resolve(response)
        body = response.get("content", {}).get("application/json", {}).get("schema")
        text = one_line(response.get("description")).rstrip()
        if text and text[-1] not in ".:":
            text += "."
        if body:
            text += f" Body: {spec.schema_text(body)}."
        text += "".join(f" Header `{header}`." for header in response.get("headers", {}))
        yield f"| {status} | {text} |"
    yield ""


def render_schema(spec: Spec, name: str, schema: dict[str, Any]) -> Iterator[str]:
    yield f"(schema-{name.lower()})=\n### {name}\n"
    yield from (p + "\n" for p in paragraphs(schema.get("description", "")))
    properties = schema.get("properties", {})
    if not properties:
        yield f"Type: {spec.schema_text(schema)}.\n"
        return
    required = set(schema.get("required", []))
    yield "| field | type | description |\n|---|---|---|"
    for field, sub in properties.items():
        mark = " (always)" if field in required else ""
        description = one_line(spec.resolve(sub).get("description"))
        yield f"| `{field}`{mark} | {spec.schema_text(sub)} | {description} |"
    yield ""


def render_rest_api() -> Iterator[str]:
    spec = Spec(REST_API)
    for path, item in spec.doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield from render_operation(spec, path, method)
    yield "## Schemas\n"
    for name, schema in spec.doc["components"]["schemas"].items():
        yield from render_schema(spec, name, schema)
    yield "## Authentication\n"
    for name, scheme in spec.doc["components"]["securitySchemes"].items():
        yield f"- `{name}` ({scheme['in']} `{scheme['name']}`): {one_line(scheme['description'])}"
    yield ""


# -- Events ---------------------------------------------------------------------------------


def render_events() -> Iterator[str]:
    schema = yaml.safe_load(EVENT_SCHEMA.read_text(encoding="utf-8"))
    yield f"## {escape(schema['title'])}\n"
    yield f"Schema `{schema['$id']}`, version {schema['version']}.\n"
    yield from (p + "\n" for p in paragraphs(schema["description"]))
    required = set(schema.get("required", []))
    yield "| field | type | description |\n|---|---|---|"
    for field, sub in schema["properties"].items():
        if "enum" in sub:
            kind = " \\| ".join(f"`{v}`" for v in sub["enum"])
        else:
            kind = sub["type"] if isinstance(sub["type"], str) else " or ".join(sub["type"])
        mark = " (always)" if field in required else ""
        yield f"| `{field}`{mark} | {kind} | {one_line(sub.get('description'))} |"
    yield ""


# -- Sphinx ---------------------------------------------------------------------------------

GENERATED: dict[str, tuple[Callable[[], Iterator[str]], list[Path]]] = {
    "reference/rest-api": (render_rest_api, [REST_API]),
    "reference/config": (
        render_config,
        [Path(inspect.getfile(c)) for _, classes in configurables() for c in classes],
    ),
    "reference/events": (render_events, [EVENT_SCHEMA]),
}


def append_generated(app: Sphinx, docname: str, source: list[str]) -> None:
    if docname not in GENERATED:
        return
    render, inputs = GENERATED[docname]
    for path in [*inputs, Path(__file__)]:
        app.env.note_dependency(str(path))
    source[0] += "\n\n" + "\n".join(render()) + "\n"


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("source-read", append_generated)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
