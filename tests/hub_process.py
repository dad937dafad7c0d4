"""A real JupyterHub in a subprocess, with the comms service managed: for tests/test_hub.py
and bench/hub_scale.py (which puts this folder on sys.path).

JupyterHub (PyPI) on 127.0.0.1, configurable-http-proxy (npm), DummyAuthenticator (any
password), SimpleLocalProcessSpawner (servers as this OS user, in homes under the Hub's tmp
folder). Every process it starts carries a marker in its environment, so whatever the Hub
leaves behind is killed at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import processes
from server_process import free_port
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect
from wsclient import V1, KernelWS

CHP = shutil.which("configurable-http-proxy")
SERVICE = "comms"
PREFIX = f"/services/{SERVICE}/"

HUB_CONFIG = """
import sys
c = get_config()  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.JupyterHub.db_url = "sqlite:///{tmp}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{tmp}/cookie_secret"
c.ConfigurableHTTPProxy.pid_file = "{tmp}/proxy.pid"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.allow_named_servers = True
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {users!r}
c.Authenticator.admin_users = {{"admin"}}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{tmp}/home/{{username}}"
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.ip = "127.0.0.1"
c.Spawner.args = ["--allow-root"]
c.Spawner.environment = {{"COMMS_HUB_TEST": "{marker}", "JUPYTER_PLATFORM_DIRS": "0"}}
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60

# -- docs/hub.md's snippet, but for the ports and the extra arguments ------------------------
c.JupyterHub.services = [
    {{
        "name": "{service}",
        "url": "http://127.0.0.1:{service_port}",
        "command": [
            sys.executable, "-m", "jupyter_comm_ext.hub",
            "--CommsHubService.proxy_url=http://127.0.0.1:{port}",
            *{service_args!r},
        ],
        "environment": {{"COMMS_HUB_TEST": "{marker}"}},
        "oauth_client_allowed_scopes": ["custom:comms:read", "custom:comms:write"],
        "oauth_no_confirm": True,
    }}
]
c.JupyterHub.custom_scopes = {{
    "custom:comms:read": {{"description": "See the comms of every user's server"}},
    "custom:comms:write": {{
        "description": "Close the comms of every user's server",
        "subscopes": ["custom:comms:read"],
    }},
}}
c.JupyterHub.load_roles = [
    {{
        "name": "comms-service",
        "services": ["{service}"],
        "scopes": ["list:users", "read:users", "read:servers", "access:servers"],
    }},
]
{extra}
"""


class Hub:
    """A JupyterHub in a subprocess, and what the tests need of it (synchronous calls)."""

    def __init__(
        self,
        tmp: Path,
        users: Sequence[str],
        roles: Sequence[tuple[str, str, Sequence[str]]] = (),
        service_args: Sequence[str] = (),
        extra_config: str = "",
    ) -> None:
        """Start it, wait until the Hub and the service answer, get each user a token.

        `roles` are (role name, user, scopes) besides the service's own."""
        self.tmp = tmp
        self.marker = uuid.uuid4().hex
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = HUB_CONFIG.format(
            port=self.port,
            hub_port=free_port(),
            proxy_api_port=free_port(),
            service_port=free_port(),
            chp=CHP or "configurable-http-proxy",
            tmp=tmp,
            users=set(users),
            marker=self.marker,
            service=SERVICE,
            service_args=list(service_args),
            extra=extra_config
            + "".join(
                f"\nc.JupyterHub.load_roles.append({dict(name=n, users=[u], scopes=list(s))!r})"
                for n, u, s in roles
            ),
        )
        (tmp / "jupyterhub_config.py").write_text(config)
        self.log_path = tmp / "hub.log"
        self.tokens: dict[str, str] = {}
        with open(self.log_path, "wb") as log:
            self.process = processes.spawn(
                [sys.executable, "-m", "jupyterhub", "-f", str(tmp / "jupyterhub_config.py")],
                cwd=tmp,
                env=dict(os.environ, COMMS_HUB_TEST=self.marker),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait(lambda: self.request("/hub/api/")[0] == 200, 60, "the Hub's API")
            self._wait(lambda: self.request(f"{PREFIX}api/summary")[0] == 403, 30, "the service")
            for user in users:
                self.tokens[user] = self.new_token(user)
        except BaseException:
            self.stop()
            raise

    def _wait(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Hub exited with {self.process.returncode}:\n{self.log()}")
            with suppress(OSError):
                if predicate():
                    return
            time.sleep(0.2)
        raise TimeoutError(f"{what} not up in {timeout}s:\n{self.log()}")

    def request(
        self, path: str, method: str = "GET", body: Any = None, user: str | None = None
    ) -> tuple[int, Any]:
        """(status, decoded JSON or raw bytes) of a request to the Hub's public URL."""
        headers = {"Accept": "application/json"}
        if user is not None:
            headers["Authorization"] = f"token {self.tokens[user]}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw

    def new_token(self, user: str) -> str:
        """The user's own API token, asked for with their password (DummyAuthenticator)."""
        status, body = self.request(
            f"/hub/api/users/{user}/tokens",
            "POST",
            {"auth": {"username": user, "password": "any"}, "note": "test"},
        )
        assert status == 201, (status, body)
        return body["token"]

    def start_servers(self, servers: Sequence[tuple[str, str]], timeout: float = 120) -> None:
        """Ask for all of them at once, then wait until each is ready."""
        for user, name in servers:
            path = (
                f"/hub/api/users/{user}/servers/{name}" if name else f"/hub/api/users/{user}/server"
            )
            status, body = self.request(path, "POST", {}, user=user)
            assert status in (201, 202), (status, body)
        for user, name in servers:
            self._wait(
                lambda u=user, n=name: self.server(u, n).get("ready"), timeout, f"{user}/{name}"
            )

    def stop_server(self, user: str, name: str = "") -> None:
        path = f"/hub/api/users/{user}/servers/{name}" if name else f"/hub/api/users/{user}/server"
        status, body = self.request(path, "DELETE", user=user)
        assert status in (202, 204), (status, body)
        self._wait(lambda: not self.server(user, name), 30, f"{user}/{name} to stop")

    def server(self, user: str, name: str = "") -> dict:
        status, model = self.request(f"/hub/api/users/{user}", user=user)
        assert status == 200, (status, model)
        return model["servers"].get(name, {})

    def server_pid(self, user: str, name: str = "") -> int:
        """The pid of a user's single-user server, found by its environment."""
        wanted = {f"JUPYTERHUB_USER={user}".encode(), f"JUPYTERHUB_SERVER_NAME={name}".encode()}
        for pid in self.marked_pids():
            with suppress(OSError):
                environ = set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if wanted <= environ and b"singleuser" in cmdline:
                    return pid
        raise LookupError(f"no server process for {user}/{name}")

    def marked_pids(self) -> list[int]:
        """Every process this Hub started (they carry its marker in their environment)."""
        mark = f"COMMS_HUB_TEST={self.marker}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with suppress(OSError):
                    if mark in (entry / "environ").read_bytes().split(b"\0"):
                        pids.append(int(entry.name))
        return pids

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Stop it; first print its log if setting up a test's Hub failed (a failed test
        gets the log in its report: see conftest.py)."""
        if kind is not None:
            print(self.log())
        self.stop()

    def stop(self) -> None:
        """SIGTERM to the Hub's group (it stops the servers it spawned and its proxy), a
        bounded wait, SIGKILL for the group; then for whatever else carries its marker."""
        processes.stop(self.process, grace=30)
        for pid in self.marked_pids():  # whatever the Hub left behind
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # -- async: the test's own event loop ------------------------------------------------

    async def fetch(
        self,
        path: str,
        method: str = "GET",
        user: str | None = None,
        timeout: float = 30,
        body: str | None = None,
        **headers: str,
    ) -> tuple[int, Any, Any]:
        """(status, decoded JSON or None, response) of a request through the proxy."""
        if user is not None:
            headers["Authorization"] = f"token {self.tokens[user]}"
        client = AsyncHTTPClient(force_instance=True)
        try:
            response = await client.fetch(
                HTTPRequest(
                    self.url + path,
                    method=method,
                    body=body if body is not None else b"{}" if method == "POST" else None,
                    headers=headers,
                    request_timeout=timeout,
                    connect_timeout=timeout,
                    follow_redirects=False,
                ),
                raise_error=False,
            )
        finally:
            client.close()
        try:
            body = json.loads(response.body) if response.body else None
        except ValueError:
            body = None
        return response.code, body, response

    async def api(self, path: str, method: str = "GET", user: str = "admin") -> Any:
        """The service's JSON answer; fails on any status but 200."""
        status, body, _ = await self.fetch(PREFIX + path, method, user)
        assert status == 200, (path, status, body)
        return body

    async def connect(self, user: str, kernel_id: str, name: str = "") -> KernelWS:
        """A frontend of a user's kernel, through the proxy (as their browser tab is)."""
        session_id = uuid.uuid4().hex
        base = f"/user/{user}/{name + '/' if name else ''}"
        request = HTTPRequest(
            f"ws://127.0.0.1:{self.port}{base}api/kernels/{kernel_id}/channels"
            f"?session_id={session_id}",
            headers={"Authorization": f"token {self.tokens[user]}"},
            connect_timeout=30,
            request_timeout=30,
        )
        ws = await asyncio.wait_for(websocket_connect(request, subprotocols=[V1]), 30)
        return KernelWS(ws, "v1", session_id)

    async def open_notebook(self, user: str, kernel_id: str, path: str) -> None:
        """A session for a running kernel, as a frontend opening a notebook makes."""
        body = {"path": path, "name": path, "type": "notebook", "kernel": {"id": kernel_id}}
        status, model, _ = await self.fetch(
            f"/user/{user}/api/sessions", "POST", user, body=json.dumps(body)
        )
        assert status == 201 and model["kernel"]["id"] == kernel_id, (status, model)

    async def start_kernel(self, user: str, name: str = "") -> str:
        base = f"/user/{user}/{name + '/' if name else ''}"
        status, body, _ = await self.fetch(f"{base}api/kernels", "POST", user, timeout=60)
        assert status == 201, (status, body)
        return body["id"]
