"""Jupyter servers as subprocesses (stock or with the extension), bound to 127.0.0.1.

Each server gets its own root and runtime directory, a random token, rate limits off, and
a process group of its own (Ctrl-C at the terminal reaches the script, not the servers); it
is stopped with its kernels by `Server.stop`, and at the latest when the script exits: a
script that calls `exit_on_signals` exits on SIGTERM and SIGHUP too, its `finally` blocks
and the exit hook run, and no server outlives it (a server started from the main thread
also gets SIGTERM if the script is killed outright).  `cpu_seconds` reads the server
process's own CPU time (user + system) from /proc, without its children (the kernels).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

CLK_TCK = os.sysconf("SC_CLK_TCK")
KERNEL_NAME = "bench-python3"
_PR_SET_PDEATHSIG = 1
#: servers started and not stopped yet, stopped at exit
_running: set[Server] = set()


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP end the script by SystemExit, as Ctrl-C does by KeyboardInterrupt,
    so its `finally` blocks run and, at exit, every server still up is stopped. Any signal
    after the first is ignored: the clean-up runs to its end."""

    def exit_(signum: int, frame: Any) -> None:
        for other in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(other, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, exit_)


@atexit.register
def stop_all() -> None:
    for server in list(_running):
        server.stop()


def _die_with_parent() -> None:
    """In the server, before exec: SIGTERM when the thread that started it ends."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_seconds(pid: int) -> float:
    """CPU time of one process (all its threads, not its children), in seconds.

    Read from each thread's schedstat (nanoseconds) rather than /proc/PID/stat (clock
    ticks of 10 ms), with the tick-based figure as a fallback.
    """
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:  # a thread that just ended
                pass
        return total / 1e9
    except (FileNotFoundError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Server:
    """One `jupyter server` subprocess; `extension` says whether jupyter_comm_ext is on."""

    def __init__(
        self,
        name: str,
        extension: bool,
        extra_args: list[str] | None = None,
        code: str | None = None,
    ) -> None:
        self.name = name
        #: a directory to import jupyter_comm_ext from instead of the installed one
        self.code = code
        self.extension = extension
        self.extra_args = list(extra_args or [])
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.dir = tempfile.mkdtemp(prefix=f"bench-{name}-")
        self.proc: subprocess.Popen | None = None
        self.kernels: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return proc_rss_bytes(self.pid)

    async def start(self, timeout: float = 60) -> Server:
        flag = "True" if self.extension else "False"
        args = [
            sys.executable,
            "-m",
            "jupyter_server",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True",
            f"--ServerApp.root_dir={self.dir}",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.jpserver_extensions=jupyter_comm_ext={flag}",
            # jupyter_server 2 reads the limits from the connection class, not ServerApp
            # (the ServerApp traits are accepted and ignored: 1000 msg/s stays in force).
            "--ServerApp.iopub_msg_rate_limit=0",
            "--ServerApp.iopub_data_rate_limit=0",
            "--ZMQChannelsWebsocketConnection.iopub_msg_rate_limit=0",
            "--ZMQChannelsWebsocketConnection.iopub_data_rate_limit=0",
            "--ServerApp.log_level=WARN",
            *self.extra_args,
        ]
        env = dict(
            os.environ,
            JUPYTER_RUNTIME_DIR=os.path.join(self.dir, "runtime"),
            JUPYTER_PATH=os.pathsep.join([self._kernelspec(), os.environ.get("JUPYTER_PATH", "")]),
        )
        if self.code:
            env["PYTHONPATH"] = os.pathsep.join([self.code, env.get("PYTHONPATH", "")])
        self.log = open(os.path.join(self.dir, "server.log"), "wb")  # noqa: SIM115
        # cwd: `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH
        main_thread = threading.current_thread() is threading.main_thread()
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            start_new_session=True,
            preexec_fn=_die_with_parent if main_thread and sys.platform == "linux" else None,
        )
        _running.add(self)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited: {self.log_tail()}")
            try:
                await self.api("GET", "/api/status", timeout=2)
            except Exception:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server {self.name} did not start") from None
                await _sleep(0.2)
                continue
            # A server runs on without an extension that fails to load (a bad setting, an
            # install that points elsewhere): measuring it would measure stock.
            if self.extension:
                try:
                    await self.api("GET", "/api/comms", timeout=10)
                except Exception as e:
                    why = f"server {self.name} has no jupyter_comm_ext ({e}): {self.log_tail()}"
                    raise RuntimeError(why) from None
            return self

    def _kernelspec(self) -> str:
        """A data dir whose `bench` kernel is ipykernel with an unbounded IOPub queue."""
        data = os.path.join(self.dir, "share")
        spec = os.path.join(data, "kernels", KERNEL_NAME)
        os.makedirs(spec)
        launcher = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel_launcher.py")
        with open(os.path.join(spec, "kernel.json"), "w") as f:
            json.dump(
                {
                    "argv": [sys.executable, launcher, "-f", "{connection_file}"],
                    "display_name": "bench",
                    "language": "python",
                },
                f,
            )
        return data

    def log_tail(self) -> str:
        with open(os.path.join(self.dir, "server.log"), "rb") as f:
            return f.read()[-2000:].decode(errors="replace")

    async def api(
        self, method: str, path: str, body: Any = None, timeout: float = 60, raw: bool = False
    ) -> Any:
        req = HTTPRequest(
            self.url + path,
            method=method,
            headers={"Authorization": f"token {self.token}"},
            body=None if body is None else json.dumps(body),
            request_timeout=timeout,
            allow_nonstandard_methods=True,
        )
        resp = await AsyncHTTPClient().fetch(req)
        if raw:
            return resp
        return json.loads(resp.body) if resp.body else None

    async def start_kernel(self) -> str:
        model = await self.api("POST", "/api/kernels", {"name": KERNEL_NAME})
        self.kernels.append(model["id"])
        return model["id"]

    async def shutdown(self) -> None:
        """Shut the kernels down through the API, then stop the server."""
        if self.proc is not None and self.proc.poll() is None:
            for kernel_id in self.kernels:
                with contextlib.suppress(Exception):
                    await self.api("DELETE", f"/api/kernels/{kernel_id}", timeout=20)
        self.stop()

    def stop(self) -> None:
        """SIGTERM to the server's group (jupyter_server shuts its kernels down), a bounded
        wait, then SIGKILL for what is left of the group."""
        _running.discard(self)
        if self.proc is not None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
