"""The in-process server of pytest_jupyter (`jp_serverapp`): the extension's app in it, what
it logs, and a request's status whatever it is."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from tornado.httpclient import HTTPClientError
from waiting import wait_for


@asynccontextmanager
async def kernel_client(jp_serverapp: Any, kernel_id: str) -> AsyncIterator[Any]:
    """A jupyter_client client of one of the server's kernels, ready, with no frontend."""
    client = jp_serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=30)
        yield client
    finally:
        client.stop_channels()


def extension(jp_serverapp: Any) -> Any:
    """The extension's app inside an in-process server."""
    (app,) = jp_serverapp.extension_manager.extension_apps["jupyter_comm_ext"]
    return app


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


async def status_of(fetch: Callable[..., Any], *parts: str, **kwargs: Any) -> tuple[int, Any]:
    """(HTTP status, decoded JSON body or None) of a request, whatever the status."""
    try:
        r = await fetch(*parts, **kwargs)
    except HTTPClientError as e:
        if e.response is None:
            raise
        r = e.response
    return r.code, json.loads(r.body) if r.body else None


async def found_orphans(jp_serverapp: Any, fetch_json: Callable[..., Any]) -> list[dict[str, Any]]:
    """The orphans a refresh finds with no grace, asked until it finds some (bounded).

    An orphan needs the kernel idle as the server sees it, from jupyter_server's activity
    stream, which may lag the idle a websocket client saw a moment: one refresh right
    after the last execute can come too early (it did on jupyter_server 2.14 in CI).
    """
    extension(jp_serverapp).mirror.orphan_grace = 0

    async def refreshed() -> Any:
        return await fetch_json("api", "comms", params={"status": "orphaned", "refresh": "1"})

    found: list[dict[str, Any]] = await wait_for(refreshed, timeout=10, what="an orphan found")
    return found
