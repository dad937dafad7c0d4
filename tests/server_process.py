"""A real jupyter_server in a subprocess, bounded: started in a process group of its own
with a capped address space, and stopped with its kernels."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
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
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect
from waiting import PROMPT
from wsclient import V1, TolerantWS

TESTS = Path(__file__).parent
#: address space of a server run as a subprocess (and of its kernels, which inherit it);
#: a server with a kernel needs about 260 MB of it.
MEMORY_LIMIT = 768 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


class ServerProcess:
    """A jupyter_server in a subprocess with a capped address space, stopped at the end."""

    def __init__(
        self, tmp: Path, extension: bool, args: Sequence[str] = (), loads: bool = True
    ) -> None:
        """Start it and wait until it answers; `args` are more command-line options (this
        folder is importable there, so `--ServerApp.authorizer_class=authorizers.ReadOnlyAuthorizer`
        works). `loads=False`: the extension is enabled but must fail to load."""
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"token {self.token}"}
        self.log_path = tmp / "server.log"
        env = dict(
            os.environ,
            JUPYTER_CONFIG_DIR=str(tmp / "config"),
            JUPYTER_DATA_DIR=str(tmp / "data"),
            JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
            IPYTHONDIR=str(tmp / "ipython"),
            MALLOC_ARENA_MAX="2",  # keeps the address space of threads' arenas small
            PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
        )
        enabled = "True" if extension else "False"
        with open(self.log_path, "wb") as log:
            self.process = processes.spawn(
                [
                    sys.executable,
                    "-m",
                    "jupyter_server",
                    "--ServerApp.ip=127.0.0.1",
                    f"--ServerApp.port={self.port}",
                    "--ServerApp.port_retries=0",
                    "--ServerApp.open_browser=False",
                    "--ServerApp.allow_root=True",
                    f"--ServerApp.root_dir={tmp}",
                    f"--IdentityProvider.token={self.token}",
                    f"--ServerApp.jpserver_extensions=jupyter_comm_ext={enabled}",
                    *args,
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                preexec_fn=_cap_memory,
            )
        try:
            self._wait_up(60)
            # the extension is on or off as asked (installing the package enables it)
            assert self.sync_get("/api/comms") == (200 if extension and loads else 404), self.log()
        except BaseException:
            self.stop()
            raise

    def sync_get(self, path: str, timeout: float = 2.0) -> int:
        request = urllib.request.Request(self.url + path, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status
        except urllib.error.HTTPError as e:
            return e.code

    def _wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            with suppress(OSError):
                if self.sync_get("/api/status") == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"server not up in {timeout}s:\n{self.log()}")

    async def fetch(self, path: str, method: str = "GET", body: Any = None, timeout=PROMPT):
        """A request; any HTTP status is returned, a timeout raises HTTPClientError(599)."""
        client = AsyncHTTPClient(force_instance=True)
        try:
            request = HTTPRequest(
                self.url + path,
                method=method,
                body=body,
                headers=self.headers,
                connect_timeout=timeout,
                request_timeout=timeout,
            )
            return await client.fetch(request, raise_error=False)
        finally:
            client.close()

    async def status_answers(self, timeout: float = PROMPT) -> bool:
        try:
            return (await self.fetch("/api/status", timeout=timeout)).code == 200
        except HTTPClientError:
            return False

    async def get_json(self, path: str) -> Any:
        response = await self.fetch(path)
        assert response.code == 200, (path, response.code, response.body)
        return json.loads(response.body)

    async def start_kernel(self) -> str:
        response = await self.fetch("/api/kernels", "POST", '{"name": "python3"}', timeout=60)
        assert response.code == 201, response.body
        return json.loads(response.body)["id"]

    async def shutdown_kernel(self, kernel_id: str) -> None:
        with suppress(HTTPClientError):
            await self.fetch(f"/api/kernels/{kernel_id}", "DELETE", timeout=30)

    async def connect(self, kernel_id: str, protocol: str) -> TolerantWS:
        session_id = uuid.uuid4().hex
        request = HTTPRequest(
            f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels?session_id={session_id}",
            headers=self.headers,
            connect_timeout=30,
            request_timeout=30,
        )
        ws = await asyncio.wait_for(
            websocket_connect(request, subprotocols=[V1] if protocol == "v1" else None), 30
        )
        assert (ws.selected_subprotocol == V1) == (protocol == "v1")
        return TolerantWS(ws, protocol, session_id)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_mark(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, mark: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def children(self) -> list[int]:
        """Kernel processes (jupyter_client starts them in sessions of their own)."""
        return processes.children(self.process.pid)

    def stop(self) -> None:
        """SIGTERM (the server shuts its kernels down), then SIGKILL for what is left: its
        process group, and its kernels, which jupyter_client starts in sessions of their own."""
        kernels = self.children()
        processes.stop(self.process)
        for pid in kernels:
            processes.signal_group(pid, signal.SIGKILL)
