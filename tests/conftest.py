"""Fixtures: a real jupyter_server with the extension, real kernels, real websockets; and
the guard that no process a test started outlives the run."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import processes
import pytest
from chromium import BROWSER_TIMEOUT, CHROMIUM, CHROMIUM_ARGS
from server_process import ServerProcess
from traitlets.config import Config

pytest_plugins = ["pytest_jupyter.jupyter_server"]

#: pid -> command line of what outlived the run (filled at its end)
LEFT_BEHIND = pytest.StashKey[dict[int, str]]()
RUN_MARK = pytest.StashKey[str]()


# -- nothing outlives the run -------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    # pytest-timeout's thread method ends pytest at once (os._exit): no finalizer runs and
    # every server of the timed-out test lives on; the signal method raises in the test.
    method = config.getoption("timeout_method", None) or config.getini("timeout_method")
    if method == "thread":
        raise pytest.UsageError(
            "--timeout-method=thread leaves servers and kernels running after a timeout; "
            "use the signal method (the default in pyproject.toml)"
        )
    config.stash[RUN_MARK] = processes.mark_run()


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the last test, kill every process the run started that is still alive, and
    name it in the summary (the run fails): a server a test leaves behind runs for hours."""
    yield
    _sweep(request.config)


def _sweep(config: pytest.Config) -> None:
    left = processes.sweep(config.stash[RUN_MARK])
    config.stash.setdefault(LEFT_BEHIND, {}).update(left)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # again after an interrupted run, whose session fixtures pytest tears down late
    if RUN_MARK in session.config.stash:
        _sweep(session.config)
    if session.config.stash.get(LEFT_BEHIND, None) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    left = config.stash.get(LEFT_BEHIND, None)
    if left:
        terminalreporter.section("processes left behind (killed)", sep="!", red=True, bold=True)
        for pid, cmdline in sorted(left.items()):
            terminalreporter.line(f"{pid}: {cmdline[:300]}", red=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that used a JupyterHub (the `hub` fixture) shows the Hub's log, with
    its servers' and services' output: what the test saw alone rarely says why."""
    report = yield
    hub = getattr(item, "funcargs", {}).get("hub")
    if report.failed and hub is not None and hasattr(hub, "log"):
        report.sections.append(("JupyterHub log (last 20,000 characters)", hub.log()))
    return report


# -- jupyter_server subprocesses ----------------------------------------------------------


@pytest.fixture(scope="module")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """`start_server(name, extension=True, args=())`: a ServerProcess for this module's
    tests, stopped after its last one (or when one times out: finalizers run then too)."""
    started: list[ServerProcess] = []

    def start(name: str, extension: bool = True, args: tuple[str, ...] = ()) -> ServerProcess:
        server = ServerProcess(tmp_path_factory.mktemp(name), extension, args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def stock_server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    """A jupyter_server without the extension, for the module."""
    return start_server("stock", extension=False)


# -- the in-process server of pytest_jupyter ----------------------------------------------


@pytest.fixture
def jp_server_config() -> Config:
    return Config(
        {
            "ServerApp": {
                "ip": "127.0.0.1",
                "jpserver_extensions": {"jupyter_comm_ext": True},
            },
            # Rate limits off (they live on the connection class; ServerApp's are ignored).
            "ZMQChannelsWebsocketConnection": {"limit_rate": False},
        }
    )


@pytest.fixture
def fetch_json(jp_fetch: Any) -> Callable[..., Awaitable[Any]]:
    """GET/POST/DELETE a route and decode its JSON body."""

    async def fetch(*parts: str, method: str = "GET", **kwargs: Any) -> Any:
        if method == "POST" and "body" not in kwargs:
            kwargs["body"] = "{}"
        r = await jp_fetch(*parts, method=method, **kwargs)
        return json.loads(r.body) if r.body else None

    return fetch


@pytest.fixture
def start_kernel(fetch_json: Any) -> Callable[[], Awaitable[str]]:
    """Start a real ipykernel through the REST API (the server's cleanup shuts it down)."""

    async def start() -> str:
        model = await fetch_json(
            "api", "kernels", method="POST", body=json.dumps({"name": "python3"})
        )
        return model["id"]

    return start


# -- a real browser: Debian's Chromium, driven by Playwright ------------------------------


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("COMM_EXT_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {path}")
    return path


@pytest.fixture
def browser(jp_asyncio_loop: Any) -> Any:
    """A headless Chromium on this test's event loop (the server runs on it too)."""
    from playwright.async_api import async_playwright

    playwright = jp_asyncio_loop.run_until_complete(async_playwright().start())
    try:
        browser = jp_asyncio_loop.run_until_complete(
            playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=BROWSER_TIMEOUT
            )
        )
    except BaseException:
        jp_asyncio_loop.run_until_complete(playwright.stop())
        raise
    yield browser
    jp_asyncio_loop.run_until_complete(browser.close())
    jp_asyncio_loop.run_until_complete(playwright.stop())
