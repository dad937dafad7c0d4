"""The service's fan-out against servers that misbehave: real HTTP, in-process.

A small tornado app plays single-user servers that are slow, answer junk, or run an
extension without the route asked; a free port plays a dead one. The answer must come
within its bounds and list each failure, never fail itself (tests/test_hub.py runs the
whole service on a real JupyterHub).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from server_process import free_port
from tornado import web
from tornado.httpserver import HTTPServer

from jupyter_comm_ext.hub.aggregate import ERROR, OK, SUMMARY, Aggregator, Server

SLOW = 3.0


class Summary(web.RequestHandler):
    async def get(self, kind: str) -> None:
        if kind == "slow":
            await asyncio.sleep(SLOW)
        if kind == "junk":
            self.finish("<html>not json</html>")
            return
        if kind == "old":  # an extension from before the summary route: "no comm 'summary'"
            self.set_status(404)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"message": "no comm with id 'summary'"}))
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"open": 1}))


@pytest.fixture
def servers(jp_asyncio_loop: Any) -> Any:
    """Server(kind) for each kind Summary plays, all on one port, on the test's loop."""
    port = free_port()

    async def start() -> HTTPServer:
        http = HTTPServer(web.Application([(r"/(\w+)/api/comms/summary", Summary)]))
        http.listen(port, "127.0.0.1")
        return http

    http = jp_asyncio_loop.run_until_complete(start())
    yield lambda kind: Server(kind, "", f"http://127.0.0.1:{port}/{kind}/")
    http.stop()


def aggregator(concurrency: int = 8, server_timeout: float = 1.0, answer_timeout: float = 2.0):
    return Aggregator(
        hub_api_url="http://127.0.0.1:1/hub/api",
        token="unused",
        proxy_url="http://127.0.0.1:1/",
        concurrency=concurrency,
        server_timeout=server_timeout,
        answer_timeout=answer_timeout,
        page_size=0,
        log=logging.getLogger("test"),
    )


async def summaries(agg: Aggregator, servers: list[Server]) -> tuple[dict[str, Any], float]:
    async def job(server: Server, timeout: float) -> Any:
        return await agg.get_json(server, SUMMARY, timeout)

    started = time.monotonic()
    answers = await agg.ask(servers, job)
    return {a.server.user: a for a in answers}, time.monotonic() - started


async def test_each_failure_is_listed_and_bounded(servers: Any) -> None:
    dead = Server("dead", "", f"http://127.0.0.1:{free_port()}/")
    agg = aggregator()
    try:
        answers, elapsed = await summaries(
            agg, [servers("good"), servers("slow"), servers("junk"), servers("old"), dead]
        )
    finally:
        agg.close()
    assert answers["good"].status == OK and answers["good"].body == {"open": 1}
    assert (answers["slow"].status, answers["slow"].message) == (ERROR, "timeout after 1 s")
    assert answers["junk"].status == ERROR and "unreadable" in answers["junk"].message
    assert answers["old"].status == ERROR
    assert answers["old"].message == "HTTP 404: no comm with id 'summary'"
    assert answers["dead"].status == ERROR and "refused" in answers["dead"].message
    assert 1.0 <= elapsed < 1.0 + 0.5  # the slow one's timeout, not its 3 s


async def test_the_answer_deadline_holds_with_few_slots(servers: Any) -> None:
    """One slot, two slow servers: the first holds the slot to the answer's deadline, the
    second is never asked, and the answer comes at the deadline, not after two timeouts."""
    agg = aggregator(concurrency=1, server_timeout=2.0, answer_timeout=1.5)
    slow = servers("slow")
    try:
        answers, elapsed = await summaries(agg, [slow, Server("slow2", "", slow.url)])
    finally:
        agg.close()
    assert answers["slow"].message == "timeout after 1.5 s"
    assert answers["slow2"].status == ERROR
    assert answers["slow2"].message.startswith("timeout: not asked within the answer's 1.5 s")
    assert 1.5 <= elapsed < 2.0
