"""Asking the Hub which servers run, and asking each of them about its comms.

Every answer of the service is a fan-out: one request per running single-user server, at most
`concurrency` at a time, each bounded by `server_timeout`, all bounded by one deadline
(`answer_timeout`) counted from the moment the answer was asked for. A server that is slow,
refuses, or lacks the extension becomes one entry in the answer's `servers` list; it never
delays the answer past the deadline and never fails it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

from orjson import loads
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.httputil import url_concat

from ..query import ORIGINS

#: The Hub API answers lists with `{"items": ..., "_pagination": ...}` when asked with this.
PAGINATION = "application/jupyterhub-pagination+json"
#: The single-user server's routes (the extension's REST API).
COMMS = "api/comms"
SUMMARY = "api/comms/summary"
#: Who asked the service to close: the user's server records "<this> via <service>".
ON_BEHALF_HEADER = "X-Comms-On-Behalf-Of"

#: Totals of a server summary that add up across servers (a server without widget tracking
#: has no `left_behind`: it counts 0).
COUNTERS = ("open", "orphaned", "left_behind", "closed")
DIRECTIONS = ("to_kernel", "from_kernel")

OK = "ok"
ERROR = "error"
NO_EXTENSION = "no-extension"


@dataclass(frozen=True)
class Server:
    """One running single-user server, as the Hub lists it."""

    user: str
    name: str  # "" for the user's default server
    url: str  # absolute, ends with "/"
    #: when the Hub last saw activity on it (what its idle culler reads), ISO 8601
    last_activity: str | None = None

    def ident(self) -> dict[str, str]:
        return {"user": self.user, "server_name": self.name}


@dataclass
class Answer:
    """What one server answered (`body`, when `status` is ok), or why it did not."""

    server: Server
    status: str
    message: str | None = None
    body: Any = None
    elapsed: float = 0.0

    def model(self) -> dict[str, Any]:
        model: dict[str, Any] = {
            **self.server.ident(),
            "last_activity": self.server.last_activity,
            "status": self.status,
            "elapsed_ms": round(self.elapsed * 1000, 1),
        }
        if self.message is not None:
            model["message"] = self.message
        return model


class NotHere(Exception):
    """The server's extension answered 404 on purpose ("no such comm/kernel here")."""


#: A request to one server: given it and the seconds left, return the decoded answer.
Job = Callable[[Server, float], Awaitable[Any]]


class Aggregator:
    """The service's HTTP client: the Hub's API, and the servers through the Hub's proxy."""

    def __init__(
        self,
        *,
        hub_api_url: str,
        token: str,
        proxy_url: str,
        concurrency: int,
        server_timeout: float,
        answer_timeout: float,
        page_size: int,
        log: logging.Logger,
    ) -> None:
        self.hub_api_url = hub_api_url.rstrip("/") + "/"
        self.token = token
        self.proxy_url = proxy_url
        self.concurrency = concurrency
        self.server_timeout = server_timeout
        self.answer_timeout = answer_timeout
        self.page_size = page_size
        self.log = log
        # An own client: its max_clients must match our concurrency, or requests queue in it.
        self.http = AsyncHTTPClient(force_instance=True, max_clients=concurrency + 2)
        self._slots = asyncio.Semaphore(concurrency)
        #: whether the Hub lets us read its routing table (the `proxy` scope); None: not asked
        self._may_route: bool | None = None

    def close(self) -> None:
        self.http.close()

    # -- the Hub: which servers run --------------------------------------------------------

    async def servers(
        self, user: str | None = None, server_name: str | None = None
    ) -> list[Server]:
        """The ready servers (of `user`, named `server_name`, when given), sorted.

        Raises HTTPClientError/OSError when the Hub does not answer: without the list there
        is nothing to aggregate, and the handler says so (502).
        """
        if user is not None:
            try:
                users = [await self._hub_get(f"users/{quote(user, safe='')}")]
            except HTTPClientError as e:
                if e.code == 404:
                    return []
                raise
        else:
            users = await self._hub_users()
        targets = await self._targets()
        found = []
        for model in users:
            for name, server in (model.get("servers") or {}).items():
                if not server.get("ready") or name != (
                    server_name if server_name is not None else name
                ):
                    continue
                url = self._server_url(server, targets.get(str(server.get("url"))))
                found.append(Server(model["name"], name, url, server.get("last_activity")))
        return sorted(found, key=lambda s: (s.user, s.name))

    async def _targets(self) -> dict[str, str]:
        """Where the proxy sends each server's path, when the Hub lets us read its routing
        table (`GET /hub/api/proxy`, the `proxy` scope): asked there directly, servers are
        not kept alive by our polls, which the proxy counts as their activity and the Hub
        reads every `JupyterHub.last_activity_interval`."""
        if self._may_route is False:
            return {}
        try:
            routes = await self._hub_get("proxy")
        except HTTPClientError as e:
            if e.code != 403:
                raise
            self._may_route = False
            self.log.info(
                "Asking servers through the proxy (no `proxy` scope to read the Hub's "
                "routing table): the proxy counts our polls as their activity"
            )
            return {}
        self._may_route = True
        return {
            str(route["routespec"]): str(route["target"])
            for route in routes.values()
            if str(route.get("target", "")).startswith("http://")
        }

    def _server_url(self, server: dict[str, Any], target: str | None = None) -> str:
        """Where to reach a server: the proxy's target for it when we may read the Hub's
        routing table, else its `full_url` when the Hub has a public URL, else the proxy URL
        we were given plus the server's path (`JUPYTERHUB_API_URL` is the Hub's own port,
        which does not proxy `/user/...`)."""
        if target is not None:
            return urljoin(target, str(server["url"]))
        if server.get("full_url"):
            return str(server["full_url"])
        return urljoin(self.proxy_url, str(server["url"]))

    async def _hub_users(self) -> list[dict[str, Any]]:
        users: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = await self._hub_get(
                "users", {"state": "ready", "offset": offset, "limit": 200}, PAGINATION
            )
            users.extend(page["items"])
            following = (page.get("_pagination") or {}).get("next")
            if not following:
                return users
            offset = following["offset"]

    async def _hub_get(
        self, path: str, query: dict[str, Any] | None = None, accept: str = "application/json"
    ) -> Any:
        url = url_concat(self.hub_api_url + path, query)
        response = await self.http.fetch(
            url,
            headers={"Authorization": f"token {self.token}", "Accept": accept},
            request_timeout=self.server_timeout,
            connect_timeout=self.server_timeout,
        )
        return loads(response.body)

    # -- the servers -----------------------------------------------------------------------

    async def ask(self, servers: list[Server], job: Job) -> list[Answer]:
        """Run `job` on every server, bounded; one Answer per server, in the servers' order."""
        deadline = time.monotonic() + self.answer_timeout
        return list(await asyncio.gather(*(self._bounded(s, job, deadline) for s in servers)))

    async def _bounded(self, server: Server, job: Job, deadline: float) -> Answer:
        try:
            await asyncio.wait_for(self._slots.acquire(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            return Answer(
                server,
                ERROR,
                f"timeout: not asked within the answer's {self.answer_timeout:g} s "
                f"({self.concurrency} servers are asked at a time)",
            )
        started = time.monotonic()
        timeout = max(0.001, min(self.server_timeout, deadline - started))
        try:
            body = await asyncio.wait_for(job(server, timeout), timeout)
            return Answer(server, OK, body=body, elapsed=time.monotonic() - started)
        except asyncio.TimeoutError:
            status, message = ERROR, f"timeout after {timeout:.3g} s"
        except HTTPClientError as e:
            status, message = _http_failure(e)
        except OSError as e:  # refused, unreachable, reset
            status, message = ERROR, f"{e.strerror or e}".lower()
        except NotHere as e:  # e.g. an older extension without the route asked
            status, message = ERROR, f"HTTP 404: {e}"
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # not the JSON we know
            self.log.exception("%s/%s: unreadable answer", server.user, server.name)
            status, message = ERROR, f"unreadable answer: {e!r}"
        finally:
            self._slots.release()
        self.log.warning("%s/%s: %s: %s", server.user, server.name, status, message)
        return Answer(server, status, message, elapsed=time.monotonic() - started)

    async def fetch(
        self,
        server: Server,
        path: str,
        timeout: float,
        *,
        method: str = "GET",
        query: dict[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> HTTPResponse:
        """One request to a server's route; a 404 from the extension itself raises NotHere."""
        headers = {"Authorization": f"token {self.token}", "Accept": "application/json"}
        if on_behalf_of is not None:
            headers[ON_BEHALF_HEADER] = on_behalf_of
        url = path if "://" in path else server.url + path
        request = HTTPRequest(
            url_concat(url, query) if query else url,
            method=method,
            headers=headers,
            request_timeout=timeout,
            connect_timeout=timeout,
            # A stopped server's URL redirects to the Hub's spawn page: that is no answer.
            follow_redirects=False,
        )
        try:
            return await self.http.fetch(request)
        except HTTPClientError as e:
            if e.code == 404 and _is_json(e.response):
                raise NotHere(_message(e.response)) from None
            raise

    async def get_json(self, server: Server, path: str, timeout: float) -> Any:
        return loads((await self.fetch(server, path, timeout)).body)

    async def list_comms(self, server: Server, timeout: float, query: dict[str, str]) -> list[Any]:
        """A server's comms matching `query`, page by page when `page_size` is set."""
        args = dict(query)
        if self.page_size:
            args["limit"] = str(self.page_size)
        url: str | None = url_concat(server.url + COMMS, args)
        comms: list[Any] = []
        deadline = time.monotonic() + timeout
        while url:
            try:
                response = await self.fetch(server, url, max(0.001, deadline - time.monotonic()))
            except NotHere:
                return comms  # a kernel_id this server does not have: none here
            comms.extend(loads(response.body))
            url = _next_link(response, server.url)
        return comms

    async def kernels(self, server: Server, timeout: float) -> list[dict[str, Any]]:
        """A server's kernels, each with the notebook it runs (from the server's sessions),
        so a page can say which notebook holds which comms."""
        deadline = time.monotonic() + timeout
        running = await self.get_json(server, untracked("api/kernels"), timeout)
        left = max(0.001, deadline - time.monotonic())
        sessions = await self.get_json(server, untracked("api/sessions"), left)
        notebooks = {s["kernel"]["id"]: s.get("path") for s in sessions if s.get("kernel")}
        return [
            {
                **server.ident(),
                "kernel_id": k["id"],
                "name": k.get("name"),
                "execution_state": k.get("execution_state"),
                "last_activity": k.get("last_activity"),
                "connections": k.get("connections"),
                "notebook": notebooks.get(k["id"]),
            }
            for k in running
        ]


def untracked(path: str) -> str:
    """A jupyter_server route asked with `no_track_activity`: its own routes count as the
    user's activity unless asked not to (the extension's never do), and a poll must not keep
    an idle server from the Hub's culler."""
    return url_concat(path, {"no_track_activity": "1"})


def add_up(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The servers' summaries added up (kernels stay per server: their ids say nothing here)."""
    totals: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
    totals.update(
        servers=len(summaries),
        kernels=0,
        messages=dict.fromkeys(DIRECTIONS, 0),
        bytes=dict.fromkeys(DIRECTIONS, 0),
        by_target={},
        by_origin=dict.fromkeys(ORIGINS, 0),
    )
    for s in summaries:
        for key in COUNTERS:
            totals[key] += s.get(key, 0)
        totals["kernels"] += len(s.get("by_kernel", {}))
        for key in ("messages", "bytes"):
            for direction in DIRECTIONS:
                totals[key][direction] += s.get(key, {}).get(direction, 0)
        for target, counts in s.get("by_target", {}).items():
            into = totals["by_target"].setdefault(
                target, {"open": 0, "orphaned": 0, "left_behind": 0}
            )
            for key in into:
                into[key] += counts.get(key, 0)
        for origin, n in s.get("by_origin", {}).items():
            totals["by_origin"][origin] = totals["by_origin"].get(origin, 0) + n
    return totals


def _next_link(response: HTTPResponse, base: str) -> str | None:
    """The `rel="next"` URL of an RFC 8288 Link header, made absolute, or None."""
    for link in response.headers.get_list("Link"):
        for part in link.split(","):
            target, _, params = part.partition(";")
            if 'rel="next"' in params.replace(" ", ""):
                return urljoin(base, target.strip().strip("<>"))
    return None


def _is_json(response: HTTPResponse | None) -> bool:
    return response is not None and response.headers.get("Content-Type", "").startswith(
        "application/json"
    )


def _message(response: HTTPResponse | None) -> str:
    try:
        return str(json.loads(response.body).get("message", "")) if response else ""
    except (ValueError, AttributeError):
        return ""


def _http_failure(e: HTTPClientError) -> tuple[str, str]:
    """The `servers` entry for an HTTP failure: no-extension, or error with what happened."""
    if e.code == 599:  # tornado's own: timeout or connection failure
        return ERROR, str(e.message or "no answer").lower()
    if 300 <= e.code < 400:
        where = e.response.headers.get("Location") if e.response else None
        return ERROR, f"HTTP {e.code}: redirected to {where} (is the server running?)"
    if e.code == 404:
        return NO_EXTENSION, "the server has no /api/comms (jupyter_comm_ext is not enabled)"
    detail = _message(e.response)
    return ERROR, f"HTTP {e.code}" + (f": {detail}" if detail else f" {e.message}")
