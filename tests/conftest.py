"""Fixtures: a real jupyter_server with the extension, real kernels, real websockets."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from chromium import BROWSER_TIMEOUT, CHROMIUM, CHROMIUM_ARGS
from traitlets.config import Config

pytest_plugins = ["pytest_jupyter.jupyter_server"]


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
