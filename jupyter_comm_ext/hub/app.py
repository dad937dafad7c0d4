"""The service's process: configuration (traitlets), the Hub's OAuth client, the web app.

JupyterHub starts it as a managed service and gives it everything through the environment
(`JUPYTERHUB_API_TOKEN`, `JUPYTERHUB_API_URL`, `JUPYTERHUB_SERVICE_URL`,
`JUPYTERHUB_SERVICE_PREFIX`, the OAuth client id and callback). The Hub exits when a managed
service exits or does not answer at its prefix in time, so this process binds its port
before it asks anything of anyone, and no user server can make it fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from typing import Any
from urllib.parse import urlparse, urlunparse

from jupyterhub.services.auth import HubOAuth
from tornado import web
from traitlets import Bunch, Float, Integer, Unicode, default, validate
from traitlets.config import Application, Configurable

from .aggregate import Aggregator
from .handlers import handlers


class CommsHubService(Application):
    """See and close the comms of every user's server of a JupyterHub."""

    name = "jupyter-comm-ext-hub"
    description = __doc__
    classes: list[type[Configurable]] = [HubOAuth]
    aliases: dict[str, Any] = {
        "proxy-url": "CommsHubService.proxy_url",
        "config": "CommsHubService.config_file",
    }

    config_file = Unicode(
        "",
        help="A Python or JSON config file to load (traitlets), for example one with "
        "`c.CommsHubService.proxy_url = ...`. Empty: command line and environment only.",
    ).tag(config=True)

    service_url = Unicode(
        help="Where to listen (scheme, address and port; the path is the service prefix). "
        "Default: $JUPYTERHUB_SERVICE_URL, which the Hub sets from the service's `url`."
    ).tag(config=True)

    @default("service_url")
    def _default_service_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101")

    ip = Unicode(
        help="The address to bind. Default: the host of service_url. On Kubernetes the "
        "service's url names the hub pod's Service (http://hub:10101), which the pod cannot "
        "bind: use 0.0.0.0 there, and let the hub's network policy limit who connects."
    ).tag(config=True)

    @default("ip")
    def _default_ip(self) -> str:
        return urlparse(self.service_url).hostname or "127.0.0.1"

    service_prefix = Unicode(
        help="The URL prefix of the service behind the proxy. Default: "
        "$JUPYTERHUB_SERVICE_PREFIX (`/services/<name>/`)."
    ).tag(config=True)

    @default("service_prefix")
    def _default_service_prefix(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")

    @validate("service_prefix")
    def _slashes(self, proposal: Bunch) -> str:
        return "/" + proposal["value"].strip("/") + "/" if proposal["value"].strip("/") else "/"

    proxy_url = Unicode(
        help="Where the Hub's proxy is reachable from this process; single-user servers are "
        "asked at this URL plus their path (`/user/<name>/`). The Hub's API URL cannot be "
        "used: the Hub's own port does not proxy `/user/...`. Default: the origin of "
        "$JUPYTERHUB_PUBLIC_HUB_URL when `c.JupyterHub.public_url` is set (the servers' "
        "`full_url` is used then), else http://127.0.0.1:8000, JupyterHub's default "
        "bind_url. On Kubernetes (Zero to JupyterHub) use http://proxy-public, the proxy's "
        "in-cluster service, so requests stay inside the cluster."
    ).tag(config=True)

    @default("proxy_url")
    def _default_proxy_url(self) -> str:
        public = os.environ.get("JUPYTERHUB_PUBLIC_HUB_URL")
        if public:
            return urlunparse(urlparse(public)._replace(path="/", params="", query=""))
        return "http://127.0.0.1:8000"

    concurrency = Integer(
        32,
        help="How many servers are asked at once. More gives a faster answer on a big Hub "
        "but more load on the proxy and on this process at the same moment; the answer's "
        "time is about (servers / concurrency) x one server's time.",
    ).tag(config=True)

    @validate("concurrency")
    def _at_least_one(self, proposal: Bunch) -> int:
        if proposal["value"] < 1:
            raise ValueError("concurrency must be at least 1")
        return int(proposal["value"])

    server_timeout = Float(
        5.0,
        help="Seconds one server may take (all pages of its list) before it is listed with "
        "status `error`, message `timeout`. A server answers from its mirror, never from a "
        "busy kernel, so a healthy one answers in milliseconds; a bigger value waits longer "
        "for overloaded ones. Also bounds each request to the Hub's API.",
    ).tag(config=True)

    answer_timeout = Float(
        10.0,
        help="Seconds one answer may take in all, counted from the request: servers still "
        "waiting for a slot then are listed as timed out, unasked. It bounds the answer "
        "whatever the servers do; raise it with the number of servers, or raise "
        "concurrency (see bench/hub_scale.py for the arithmetic).",
    ).tag(config=True)

    page_size = Integer(
        1000,
        help="Comms per page when listing a server's comms (`limit` on its /api/comms): "
        "smaller pages mean more requests, bigger ones bigger bodies held at once. 0 asks "
        "for the whole list in one body (servers without pagination need that).",
    ).tag(config=True)

    cookie_secret = Unicode(
        help="Signs the login cookie. Default: $JUPYTERHUB_COMMS_COOKIE_SECRET, else random "
        "at each start (browsers then log in again through the Hub, without a prompt)."
    ).tag(config=True)

    @default("cookie_secret")
    def _default_cookie_secret(self) -> str:
        return os.environ.get("JUPYTERHUB_COMMS_COOKIE_SECRET") or secrets.token_hex(32)

    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        if self.config_file:
            self.load_config_file(self.config_file)
            self.update_config(self.cli_config)  # the command line wins over the file
        self.hub_auth = HubOAuth(parent=self, base_url=self.service_prefix)

    def make_app(self) -> web.Application:
        # Made on the running event loop: the HTTP client and its semaphore belong to it.
        aggregator = Aggregator(
            hub_api_url=self.hub_auth.api_url,
            token=self.hub_auth.api_token,
            proxy_url=self.proxy_url,
            concurrency=self.concurrency,
            server_timeout=self.server_timeout,
            answer_timeout=self.answer_timeout,
            page_size=self.page_size,
            log=self.log,
        )
        return web.Application(
            handlers(self.service_prefix),
            hub_auth=self.hub_auth,
            aggregator=aggregator,
            service_name=os.environ.get("JUPYTERHUB_SERVICE_NAME", "comms"),
            cookie_secret=self.cookie_secret,
            log_function=self._log_request,
        )

    def _log_request(self, handler: web.RequestHandler) -> None:
        status = handler.get_status()
        level = self.log.info if status < 400 else self.log.warning
        request = handler.request
        level(
            "%d %s %s %.1f ms", status, request.method, request.uri, 1000 * request.request_time()
        )

    async def serve(self) -> None:
        url = urlparse(self.service_url)
        app = self.make_app()
        app.listen(url.port or 80, self.ip, xheaders=True)
        self.log.info(
            "comms service at %s%s, servers reached through %s",
            self.service_url.rstrip("/"),
            self.service_prefix,
            self.proxy_url,
        )
        await asyncio.Event().wait()

    def start(self) -> None:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(self.serve())


def main(argv: list[str] | None = None) -> None:
    app = CommsHubService()
    app.initialize(argv)
    app.start()
