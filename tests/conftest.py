"""Fixtures: a real jupyter_server with the extension, real kernels, real websockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
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
