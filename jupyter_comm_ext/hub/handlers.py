"""The service's routes: thin; the fan-out lives in aggregate.py.

Authentication is the Hub's (an OAuth cookie for browsers, `Authorization: token ...` for API
clients), and so is the access scope (`access:services!service=<name>`). The Hub does not
enforce custom scopes for a service, so the two that decide what one may do here are checked
here: `custom:comms:read` to look, `custom:comms:write` to close (which includes looking).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, cast

import orjson
from jupyterhub.services.auth import (
    HubOAuthCallbackHandler,
    HubOAuthenticated,
    UserNotAllowed,
    check_scopes,
)
from tornado import web
from tornado.escape import url_escape, xhtml_escape
from tornado.httpclient import HTTPClientError

from ..query import FILTERS, BadQuery, CommFilter
from .aggregate import COMMS, ERROR, OK, SUMMARY, Aggregator, Answer, NotHere, Server, add_up

READ_SCOPE = "custom:comms:read"
WRITE_SCOPE = "custom:comms:write"
#: Filters each server applies itself; forwarded as they are.
SERVER_FILTERS = FILTERS
#: Filters that choose servers; never forwarded (a server answers 400 to them).
HUB_FILTERS = ("user", "server_name")
MAX_ID_LENGTH = 256


class ServiceHandler(HubOAuthenticated, web.RequestHandler):
    """Who asks (from the Hub), what they may do (their scopes), JSON errors."""

    #: whether an unauthenticated visitor is sent to log in (pages) or gets a 403 (API)
    login_redirect = False

    def initialize(self) -> None:
        self.hub_auth = self.settings["hub_auth"]

    @property
    def aggregator(self) -> Aggregator:
        return cast(Aggregator, self.settings["aggregator"])

    async def prepare(self) -> None:
        # The Hub's own get_current_user blocks on a thread; ask it asynchronously instead.
        model = await self.hub_auth.get_user(self, sync=False)
        user = None
        if model:
            try:
                user = self.check_hub_user(model)
            except UserNotAllowed:
                self.log.warning("%s %s may not use this service", model.get("kind"), model["name"])
        self.current_user = user
        if user is None and self.login_redirect:
            self.redirect(self.get_login_url())
            return
        if user is not None and self.request.method not in ("GET", "HEAD", "OPTIONS"):
            # After the user is known: token-authenticated requests need no XSRF token.
            # (Without a user, require() answers 403 "not logged in", the clearer reason.)
            self.hub_auth.check_xsrf_cookie(self)

    def get_current_user(self) -> dict[str, Any] | None:
        return None  # set in prepare; never the Hub's blocking lookup

    @property
    def log(self) -> Any:
        return self.settings["aggregator"].log

    def require(self, scope: str) -> dict[str, Any]:
        """The Hub user, if their scopes allow `scope`; a 403 with the reason otherwise."""
        user = self.current_user
        if user is None:
            raise web.HTTPError(
                403,
                "not logged in to this service: log in through the Hub, or send "
                "'Authorization: token <Hub API token>' with access to this service",
            )
        allowed = {READ_SCOPE, WRITE_SCOPE} if scope == READ_SCOPE else {WRITE_SCOPE}
        if not check_scopes(allowed, set(user.get("scopes", ()))):
            raise web.HTTPError(403, f"{user['name']} does not have the {scope} scope")
        return cast("dict[str, Any]", user)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message}))

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise web.HTTPError(400, f"{name or 'argument'} is not valid UTF-8") from None

    def write_json(self, value: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(value))


class ApiHandler(ServiceHandler):
    """The JSON routes: filters and the servers they choose."""

    def query(self, allowed: tuple[str, ...]) -> dict[str, str]:
        """The query arguments, validated like the single-user server does (400 otherwise)."""
        args = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        args.pop("_xsrf", None)
        args.pop("no_track_activity", None)  # a single-user server's habit; nothing here counts
        unknown = set(args) - set(allowed)
        if unknown:
            raise web.HTTPError(400, f"unknown query argument(s): {', '.join(sorted(unknown))}")
        try:
            CommFilter.from_arguments(args)
        except BadQuery as e:
            raise web.HTTPError(400, str(e)) from None
        for name, value in args.items():
            if len(value) > MAX_ID_LENGTH or not value.isprintable():
                raise web.HTTPError(400, f"{name} must be at most 256 printable characters")
        return args

    async def servers(self, args: dict[str, str]) -> list[Server]:
        try:
            return await self.aggregator.servers(args.get("user"), args.get("server_name"))
        except (HTTPClientError, OSError, ValueError) as e:
            self.log.error("listing the Hub's servers failed: %s", e)
            raise web.HTTPError(502, f"the Hub did not list its servers: {e}") from None

    @staticmethod
    def forwarded(args: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in args.items() if k in SERVER_FILTERS}

    def on_behalf_of(self) -> str:
        return str(self.current_user["name"])


def _with_server(models: list[dict[str, Any]], answer: Answer) -> list[dict[str, Any]]:
    return [{**m, **answer.server.ident()} for m in models]


class CommsHandler(ApiHandler):
    """`api/comms`: every comm of every running server; DELETE closes the matching ones."""

    async def get(self) -> None:
        self.require(READ_SCOPE)
        args = self.query((*SERVER_FILTERS, *HUB_FILTERS))
        forwarded = self.forwarded(args)
        answers = await self.aggregator.ask(
            await self.servers(args),
            lambda server, timeout: self.aggregator.list_comms(server, timeout, forwarded),
        )
        self.write_answers(answers)

    async def delete(self) -> None:
        """Close every open match across servers; at least one per-server filter, as on a
        server (user and server_name only choose servers): no "close everything" by accident."""
        self.require(WRITE_SCOPE)
        args = self.query((*SERVER_FILTERS, *HUB_FILTERS))
        forwarded = self.forwarded(args)
        if not forwarded:
            raise web.HTTPError(
                400,
                "closing comms in bulk needs at least one of "
                f"{', '.join(SERVER_FILTERS)} (user and server_name only choose servers)",
            )
        try:
            CommFilter.from_arguments(forwarded).check_closable()
        except BadQuery as e:
            raise web.HTTPError(400, str(e)) from None
        asker = self.on_behalf_of()

        async def close(server: Server, timeout: float) -> list[dict[str, Any]]:
            try:
                response = await self.aggregator.fetch(
                    server, COMMS, timeout, method="DELETE", query=forwarded, on_behalf_of=asker
                )
            except NotHere:
                return []
            return cast("list[dict[str, Any]]", orjson.loads(response.body))

        answers = await self.aggregator.ask(await self.servers(args), close)
        closed = sum(len(a.body) for a in answers if a.status == OK)
        self.log.info("%s closed %d comms matching %s", asker, closed, forwarded)
        self.write_answers(answers)

    def write_answers(self, answers: list[Answer]) -> None:
        comms = [c for a in answers if a.status == OK for c in _with_server(a.body, a)]
        self.write_json({"comms": comms, "servers": [a.model() for a in answers]})


class CommHandler(ApiHandler):
    """`api/comms/{comm_id}`: DELETE force-closes one comm through its user's server."""

    async def delete(self, comm_id: str) -> None:
        self.require(WRITE_SCOPE)
        args = self.query(HUB_FILTERS)
        if len(comm_id) > MAX_ID_LENGTH or not comm_id.isprintable():
            raise web.HTTPError(400, "comm ids are at most 256 printable characters")
        asker = self.on_behalf_of()
        path = f"{COMMS}/{url_escape(comm_id, plus=False)}"

        async def close(server: Server, timeout: float) -> bool:
            # Comm ids are unique across servers: only the one that has it closes it.
            try:
                await self.aggregator.fetch(
                    server, path, timeout, method="DELETE", on_behalf_of=asker
                )
            except NotHere:
                return False
            return True

        answers = await self.aggregator.ask(await self.servers(args), close)
        if any(a.status == OK and a.body for a in answers):
            self.log.info("%s closed comm %s", asker, comm_id)
            self.set_status(204)
            self.finish()
            return
        failed = [a for a in answers if a.status == ERROR]
        if failed:
            raise web.HTTPError(
                502,
                f"comm {comm_id!r} is not open on the servers that answered, and "
                f"{len(failed)} did not answer: "
                + "; ".join(f"{a.server.user}/{a.server.name}: {a.message}" for a in failed),
            )
        raise web.HTTPError(404, f"no open comm with id {comm_id!r} on any running server")


class SummaryHandler(ApiHandler):
    """`api/summary`: each server's totals (its summary route, no per-comm models) and the
    Hub's totals over the servers that answered."""

    async def get(self) -> None:
        self.require(READ_SCOPE)
        args = self.query(HUB_FILTERS)

        async def summary(server: Server, timeout: float) -> dict[str, Any]:
            return cast("dict[str, Any]", await self.aggregator.get_json(server, SUMMARY, timeout))

        answers = await self.aggregator.ask(await self.servers(args), summary)
        servers = [{**a.model(), "summary": a.body if a.status == OK else None} for a in answers]
        self.write_json(
            {"totals": add_up([a.body for a in answers if a.status == OK]), "servers": servers}
        )


class KernelsHandler(ApiHandler):
    """`api/kernels`: the kernels of the servers asked, with the notebook each one runs (from
    the server's sessions), so a page can say which notebook holds which comms."""

    async def get(self) -> None:
        self.require(READ_SCOPE)
        args = self.query(HUB_FILTERS)
        answers = await self.aggregator.ask(await self.servers(args), self.aggregator.kernels)
        self.write_json(
            {
                "kernels": [k for a in answers if a.status == OK for k in a.body],
                "servers": [a.model() for a in answers],
            }
        )


def static_dir() -> Path:
    """The admin page's folder (in the wheel, or `ui/` in a checkout): the Hub page is
    `hub/` in it and shares its style and API client."""
    package = Path(__file__).parent.parent
    packaged = package / "static"
    return packaged if packaged.is_dir() else package.parent / "ui"


class PageHandler(ServiceHandler):
    """The service's root: the page (`ui/hub/index.html`), for users who may read."""

    login_redirect = True

    def get(self) -> None:
        self.require(READ_SCOPE)
        self.xsrf_token  # noqa: B018  (sets the `_xsrf` cookie the page sends on DELETE)
        html = (static_dir() / "hub" / "index.html").read_text(encoding="utf-8")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(html.replace("{{base_url}}", xhtml_escape(self.hub_auth.base_url)))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            f"<!doctype html><title>{status_code}</title><h1>{status_code} {self._reason}</h1>"
            f"<p>{xhtml_escape(message)}</p>"
        )


class StaticHandler(ServiceHandler, web.StaticFileHandler):
    """The page's scripts and styles, for users who may read, revalidated on each load."""

    def initialize(self, path: str) -> None:  # type: ignore[override]
        ServiceHandler.initialize(self)
        web.StaticFileHandler.initialize(self, path)

    async def get(self, path: str, include_body: bool = True) -> None:
        self.require(READ_SCOPE)
        await super().get(path, include_body)

    def check_xsrf_cookie(self) -> None:
        """No XSRF token on these GETs: the Hub's OAuth cookie asks one of every non-navigation
        request, but a browser loads ES modules (`import`) without headers or query. Static
        files change nothing and carry no data, and without CORS headers no other origin can
        read them; the login is still required."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    """`oauth_callback`: the end of the Hub's OAuth login."""

    def initialize(self) -> None:
        self.hub_auth = self.settings["hub_auth"]


def handlers(prefix: str) -> list[tuple[str, Any] | tuple[str, Any, dict[str, Any]]]:
    prefix = re.escape(prefix)
    return [
        (rf"{prefix}?", PageHandler),
        # the Hub page's files and the admin page's it imports, nothing else of `ui/` (an
        # editable install serves it as it is, the Lab extension's node_modules too)
        (rf"{prefix}static/((?:hub/)?[^/]+)", StaticHandler, {"path": str(static_dir())}),
        (rf"{prefix}oauth_callback", OAuthCallbackHandler),
        (rf"{prefix}api/comms/?", CommsHandler),
        (rf"{prefix}api/comms/(?P<comm_id>[^/]+)/?", CommHandler),
        (rf"{prefix}api/summary/?", SummaryHandler),
        (rf"{prefix}api/kernels/?", KernelsHandler),
    ]
