"""Helpers shared by the test modules (no test module imports another, or conftest).

What is here: bounded waiting, a real jupyter_server in a subprocess, the kernel snippets
several tests run, status-code helpers, an Authorizer that may only look, generated
websocket frames, and Debian's Chromium for the browser tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from jupyter_server.auth import Authorizer
from jupyter_server.services.kernels.connection.base import (
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect
from wsclient import V1, KernelWS, execute_content

TESTS = Path(__file__).parent
#: address space of a server run as a subprocess (and of its kernels, which inherit it);
#: a server with a kernel needs about 260 MB of it.
MEMORY_LIMIT = 768 << 20
#: what "answers promptly" means here: stock takes 15 s and more in the hanging cases.
PROMPT = 5.0


async def wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy, bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.05)


async def status_of(fetch: Callable[..., Any], *parts: str, **kwargs: Any) -> tuple[int, Any]:
    """(HTTP status, decoded JSON body or None) of a request, whatever the status."""
    try:
        r = await fetch(*parts, **kwargs)
    except HTTPClientError as e:
        if e.response is None:
            raise
        r = e.response
    return r.code, json.loads(r.body) if r.body else None


def upstream_fixed(what: str) -> None:
    """A stock bug a test reproduces is gone: say so (a skip with the reason), do not fail.

    The `test_stock_*` tests document what the extension protects a server against; the
    day jupyter_server fixes one, the suite must stay green and tell.
    """
    import jupyter_server

    pytest.skip(f"no longer reproduced with jupyter_server {jupyter_server.__version__}: {what}")


@contextmanager
def captured(serverapp: Any) -> Iterator[list[logging.LogRecord]]:
    """What the server and the extension log meanwhile (their logs do not reach root, so
    pytest's caplog does not see them)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    settings = serverapp.web_app.settings
    loggers = {serverapp.log, settings["comm_mirror"].log, settings["comm_tap"].log}
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def extension(jp_serverapp: Any) -> Any:
    """The extension's app inside an in-process server."""
    (app,) = jp_serverapp.extension_manager.extension_apps["jupyter_comm_ext"]
    return app


class ReadOnlyAuthorizer(Authorizer):
    """May look at comms, may not close them."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return not (resource == "comms" and action == "write")


class CommsWriteDeniedAuthorizer(Authorizer):
    """Says yes when JupyterLab asks `/api/me` whether the user may close comms, and no to
    the close itself: a permission taken away after the page loaded. For a server
    subprocess: `--ServerApp.authorizer_class=helpers.CommsWriteDeniedAuthorizer`."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        if resource == "comms" and action == "write":
            return type(handler).__name__ == "IdentityHandler"
        return True


# -- kernel snippets ---------------------------------------------------------------------

#: opens a comm from the kernel and sends two messages on it; the cell's value is its id
OPEN_KERNEL_COMM = """
from comm import create_comm
c = create_comm(target_name="probe", data={"x": 1})
c.send({"n": 1}); c.send({"n": 2})
c.comm_id
"""

#: registers target "echo": every message to it comes straight back, buffers included
ECHO_TARGET = """
def _echo_target(comm, msg):
    @comm.on_msg
    def _echo(m):
        comm.send({"echo": m["content"]["data"]}, buffers=m["buffers"])
from comm import get_comm_manager
get_comm_manager().register_target("echo", _echo_target)
"""

#: opens comm `c` of `{target}` from the kernel and records its on_close calls in `closed`
OPEN_WATCHED_COMM = """
from comm import create_comm, get_comm_manager
closed = []
c = create_comm(target_name="{target}", data={{}})
c.on_close(lambda msg: closed.append(msg["content"]["comm_id"]))
"""

#: true in the kernel once `c` of OPEN_WATCHED_COMM was closed there (its on_close ran)
KERNEL_SAW_CLOSE = "closed == [c.comm_id] and c.comm_id not in get_comm_manager().comms"


# -- a real browser: Debian's Chromium, driven by Playwright ------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Playwright's own bound for every wait and action, in ms.
BROWSER_TIMEOUT = 20_000

needs_browser = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="no /usr/bin/chromium (browser tests must run when CI is set)",
)


# -- a frontend that tolerates what the relay passes on ----------------------------------


class TolerantWS(KernelWS):
    """A frontend that files frames it cannot decode instead of raising.

    The v1 relay passes malformed kernel messages on byte for byte (that is the protocol's
    design), so a test client must not choke on them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.undecodable: list[bytes | str] = []

    def decode(self, frame: bytes | str) -> dict:
        try:
            msg = super().decode(frame)
            msg["header"]["msg_type"]  # a dict with a header, or not a message
            return msg
        except Exception:
            self.undecodable.append(frame)
            return {"header": {"msg_type": None}, "parent_header": {}, "content": {}}

    async def run(self, code: str, timeout: float = PROMPT) -> dict:
        """Execute code and wait for the execute_reply only (on shell, not IOPub)."""
        req = await self.send("execute_request", execute_content(code))
        msg_id = req["header"]["msg_id"]
        reply = await self.recv(
            lambda m: (
                m["header"]["msg_type"] == "execute_reply"
                and m["parent_header"].get("msg_id") == msg_id
            ),
            timeout,
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        return reply


# -- a server in a subprocess, bounded --------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


class ServerProcess:
    """A jupyter_server in a subprocess with a capped address space, killed at the end."""

    def __init__(
        self, tmp: Path, extension: bool, args: Sequence[str] = (), loads: bool = True
    ) -> None:
        """Start it and wait until it answers; `args` are more command-line options (this
        module is importable there, so `--ServerApp.authorizer_class=helpers.ReadOnlyAuthorizer`
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
            self.process = subprocess.Popen(
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
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                        pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        for pid in self.children():
            with suppress(ProcessLookupError):
                os.kill(pid, 9)
        self.process.kill()
        self.process.wait(10)


# -- generated websocket frames ------------------------------------------------------------

SAFE_MSG_TYPES = ["comm_open", "comm_msg", "comm_close", "comm_info_request"]
SAFE_MSG_TYPES += ["kernel_info_request", "no_such_request", ""]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
# comm ids and target names may be lone surrogates (the guard refuses those); other strings
# never are: hypothesis' text() leaves surrogates out.
_ids = st.text(max_size=12) | st.sampled_from(["\ud800", "a\udfffb", "echo"]) | _json
_header = st.fixed_dictionaries(
    {"msg_type": st.sampled_from(SAFE_MSG_TYPES)},
    optional={
        "msg_id": st.text(max_size=12),
        "session": st.text(max_size=12),
        "username": st.text(max_size=8),
        "version": st.just("5.3"),
        "date": st.just("2026-01-01T00:00:00Z"),
    },
)
_content = st.fixed_dictionaries(
    {}, optional={"comm_id": _ids, "target_name": _ids, "data": _json, "target_module": _ids}
)
_channel = st.sampled_from(["shell", "control", "stdin", "iopub", "nope", ""]) | st.text(max_size=6)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


_part = st.binary(max_size=200) | _json.map(_dumps)
_message = st.fixed_dictionaries(
    {
        "header": _header | _json,
        "parent_header": _json,
        "metadata": _json,
        "content": _content | _json,
    },
)
# (index, byte) to overwrite somewhere in a frame, or a length to cut it to
_damage = st.none() | st.tuples(st.integers(0, 80), st.integers(0, 255)) | st.integers(0, 200)


def _damaged(frame: bytes, damage: Any) -> bytes:
    if isinstance(damage, tuple):
        index, byte = damage
        if index < len(frame):
            return frame[:index] + bytes([byte]) + frame[index + 1 :]
    elif isinstance(damage, int):
        return frame[:damage]
    return frame


@st.composite
def v1_frames(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(min_size=8, max_size=4096))
    msg = draw(_message)
    parts = [
        draw(st.just(_dumps(msg[key])) | _part)
        for key in ("header", "parent_header", "metadata", "content")
    ]
    parts += draw(st.lists(st.binary(max_size=200), max_size=2))
    frame = serialize_msg_to_ws_v1(parts[: draw(st.integers(0, len(parts)))], draw(_channel))
    return _damaged(frame, draw(_damage))


@st.composite
def legacy_frames(draw: st.DrawFn) -> bytes | str:
    kind = draw(st.sampled_from(["text", "json", "message", "binary", "bytes"]))
    if kind == "text":
        return draw(st.text(max_size=4096))
    if kind == "json":
        return json.dumps(draw(_json))
    msg = dict(draw(_message), channel=draw(_channel | st.none()))
    if kind == "message":
        return json.dumps(msg)
    if kind == "bytes":
        return draw(st.binary(max_size=4096))
    msg["buffers"] = draw(st.lists(st.binary(max_size=200), max_size=2))
    return _damaged(serialize_binary_message(msg), draw(_damage))
