"""The admin page at `{base_url}comms/`: one HTML page and its static files.

The page is plain HTML, CSS and JavaScript modules from the top-level `ui/` folder, which
the wheel ships as `jupyter_comm_ext/static`; an editable install serves `ui/` itself.
Both the page and its files need a logged-in user allowed to read `comms`, like the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from tornado import web
from tornado.escape import xhtml_escape

from .handlers import AUTH_RESOURCE

HERE = Path(__file__).parent


def static_dir() -> Path:
    """Where the page's files are: inside the package (wheel) or the source `ui/` folder."""
    packaged = HERE / "static"
    return packaged if packaged.is_dir() else HERE.parent / "ui"


class CommsPageHandler(JupyterHandler):
    """`{base_url}comms/`: index.html with the server's base URL filled in."""

    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized
    def get(self) -> None:
        # Reading the token sets the `_xsrf` cookie the page echoes back on DELETE.
        self.xsrf_token  # noqa: B018
        html = (static_dir() / "index.html").read_text(encoding="utf-8")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(html.replace("{{base_url}}", xhtml_escape(self.base_url)))


class CommsStaticHandler(JupyterHandler, web.StaticFileHandler):
    """`{base_url}comms/static/...`: the page's scripts and styles, revalidated on each load."""

    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized
    async def get(self, path: str, include_body: bool = True) -> None:  # type: ignore[override]
        await super().get(path, include_body)

    @web.authenticated
    @authorized
    async def head(self, path: str) -> None:  # type: ignore[override]
        await super().get(path, include_body=False)

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")


page_handlers: list[tuple[str, Any, dict[str, Any]] | tuple[str, Any]] = [
    (r"/comms/?", CommsPageHandler),
    # the page's own files only: not the Hub page's or the JupyterLab extension's sources
    # (in an editable install `ui/` is served as it is, node_modules and all)
    (r"/comms/static/([^/]+)", CommsStaticHandler, {"path": str(static_dir())}),
]
