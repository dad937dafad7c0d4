"""The REST contract: filters, errors, and real responses checked against rest-api.yml."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from tornado.httpclient import HTTPClientError
from waiting import wait_for
from wsclient import KernelWS, comm_msgs

import jupyter_comm_ext

SPEC = OpenAPI.from_file_path(str(Path(jupyter_comm_ext.__file__).parent / "rest-api.yml"))

SETUP = """
from comm import create_comm, get_comm_manager
def _target(comm, msg):
    comm.on_msg(lambda m: comm.send({"ok": True}))
get_comm_manager().register_target("front", _target)
k1 = create_comm(target_name="alpha")
k2 = create_comm(target_name="beta")
"""


@pytest.fixture
def api(jp_fetch, jp_base_url):
    """Call a route and check request and response against the OpenAPI document."""

    async def call(method, path, params=None, expect=200):
        params = params or {}
        try:
            r = await jp_fetch(
                *path.strip("/").split("/"),
                method=method,
                params=params,
                allow_nonstandard_methods=True,
            )
            code, body = r.code, r.body
        except HTTPClientError as e:
            code, body = e.code, e.response.body
        assert code == expect, (method, path, params, code, body)
        query = urllib.parse.urlencode(params)
        request = MockRequest(
            "http://127.0.0.1", method.lower(), path, args=dict(urllib.parse.parse_qsl(query))
        )
        SPEC.validate_response(request, MockResponse(body or b"", status_code=code))
        return json.loads(body) if body else None

    return call


async def populated(fetch_json, jp_ws_fetch, start_kernel):
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    await ws.execute(SETUP)
    await ws.send("comm_open", {"comm_id": "f1", "target_name": "front", "data": {}})
    await ws.send("comm_msg", {"comm_id": "f1", "data": {}})
    await ws.recv(comm_msgs(ws, "comm_msg", "f1"))
    await wait_for(lambda: _count(fetch_json, 3), what="3 comms")
    return kernel_id, ws


async def _count(fetch_json, n):
    return len(await fetch_json("api", "comms")) == n


async def test_filters_and_models_match_the_spec(api, fetch_json, jp_ws_fetch, start_kernel):
    kernel_id, ws = await populated(fetch_json, jp_ws_fetch, start_kernel)
    names = lambda models: sorted(m["target_name"] for m in models)  # noqa: E731
    assert names(await api("GET", "/api/comms")) == ["alpha", "beta", "front"]
    assert names(await api("GET", "/api/comms", {"kernel_id": kernel_id})) == [
        "alpha",
        "beta",
        "front",
    ]
    assert names(await api("GET", "/api/comms", {"target_name": "beta"})) == ["beta"]
    assert names(await api("GET", "/api/comms", {"origin": "frontend"})) == ["front"]
    assert names(await api("GET", "/api/comms", {"origin": "kernel"})) == ["alpha", "beta"]
    assert names(await api("GET", "/api/comms", {"min_idle": "3600"})) == []
    assert names(await api("GET", "/api/comms", {"min_idle": "0"})) == ["alpha", "beta", "front"]
    assert await api("GET", "/api/comms", {"status": "closed"}) == []
    assert names(await api("GET", "/api/comms", {"status": "all", "refresh": "1"})) == [
        "alpha",
        "beta",
        "front",
    ]
    front = await api("GET", "/api/comms/f1")
    assert front["messages"] == {"to_kernel": 2, "from_kernel": 1}
    assert names(await api("GET", f"/api/kernels/{kernel_id}/comms")) == ["alpha", "beta", "front"]
    await api("DELETE", "/api/comms/f1", expect=204)
    assert (await api("GET", "/api/comms/f1"))["status"] == "closed"
    closed = await api("DELETE", "/api/comms", {"target_name": "alpha"})
    assert names(closed) == ["alpha"]
    ws.close()


async def test_summary_counts_without_models(api, fetch_json, jp_ws_fetch, start_kernel):
    kernel_id, ws = await populated(fetch_json, jp_ws_fetch, start_kernel)
    other = await start_kernel()
    await wait_for(lambda: _watches(fetch_json, other), what="second kernel watched")
    summary = await api("GET", "/api/comms/summary")
    models = await fetch_json("api", "comms")
    to_kernel = sum(m["messages"]["to_kernel"] for m in models)
    from_kernel = sum(m["messages"]["from_kernel"] for m in models)
    assert (summary["open"], summary["orphaned"], summary["closed"]) == (3, 0, 0)
    assert (
        summary["messages"]
        == {"to_kernel": to_kernel, "from_kernel": from_kernel}
        != {
            "to_kernel": 0,
            "from_kernel": 0,
        }
    )
    assert summary["by_kernel"][kernel_id]["open"] == 3
    assert summary["by_kernel"][other] == {
        "open": 0,
        "orphaned": 0,
        "left_behind": 0,
        "messages": {"to_kernel": 0, "from_kernel": 0},
        "bytes": {"to_kernel": 0, "from_kernel": 0},
        "comm_activity": {"user": None, "kernel": None},  # no comm moved on it
    }
    assert summary["by_target"] == {
        t: {"open": 1, "orphaned": 0, "left_behind": 0} for t in ("alpha", "beta", "front")
    }
    assert summary["by_origin"] == {"kernel": 2, "frontend": 1, "unknown": 0}
    await api("DELETE", "/api/comms/f1", expect=204)
    summary = await api("GET", "/api/comms/summary", {"refresh": "1"})
    assert (summary["open"], summary["closed"]) == (2, 1)
    ws.close()


async def _watches(fetch_json, kernel_id):
    return kernel_id in (await fetch_json("api", "comms", "summary"))["by_kernel"]


async def test_pages_follow_the_link_header(jp_fetch, fetch_json, jp_ws_fetch, start_kernel):
    kernel_id = await start_kernel()
    ws = await KernelWS.connect(jp_ws_fetch, kernel_id, "v1")
    await ws.execute(
        "from comm import create_comm\ncs = [create_comm(target_name='p') for _ in range(7)]"
    )
    await wait_for(lambda: _count(fetch_json, 7), what="7 comms")
    everything = await fetch_json("api", "comms", params={"target_name": "p"})
    seen, params, pages = [], {"target_name": "p", "limit": "3", "refresh": "1"}, 0
    while True:
        r = await jp_fetch("api", "comms", params=params)
        seen += [m["comm_id"] for m in json.loads(r.body)]
        pages += 1
        link = r.headers.get("Link")
        if link is None:
            break
        url = link.split(";")[0].strip("<>")
        assert url.startswith("/") and "token" not in url
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        assert params["target_name"] == "p" and params["limit"] == "3"
        assert "refresh" not in params  # only the first page asks the kernels
        if pages == 2:  # a comm closing between two pages neither repeats nor hides others
            await jp_fetch("api", "comms", seen[0], method="DELETE")
    assert pages == 3
    ordered = sorted(everything, key=lambda m: (m["opened_at"], m["comm_id"]))
    assert seen == [m["comm_id"] for m in ordered]
    ws.close()


@pytest.mark.parametrize(
    ("method", "path", "params", "code", "words"),
    [
        ("GET", "/api/comms", {"status": "gone"}, 400, "status"),
        ("GET", "/api/comms", {"status": ""}, 400, "status"),
        ("GET", "/api/comms", {"origin": "martian"}, 400, "origin"),
        ("GET", "/api/comms", {"min_idle": "-1"}, 400, "min_idle"),
        ("GET", "/api/comms", {"min_idle": "nan"}, 400, "min_idle"),
        ("GET", "/api/comms", {"min_idle": "inf"}, 400, "min_idle"),
        ("GET", "/api/comms", {"refresh": "maybe"}, 400, "refresh"),
        ("GET", "/api/comms", {"colour": "red"}, 400, "colour"),
        ("GET", "/api/comms", {"12x": ""}, 400, "12x"),
        ("GET", "/api/comms", {"limit": "0"}, 400, "limit"),
        ("GET", "/api/comms", {"limit": "x"}, 400, "limit"),
        ("GET", "/api/comms", {"limit": "10001"}, 400, "limit"),
        ("GET", "/api/comms", {"cursor": "abc"}, 400, "limit"),
        ("GET", "/api/comms", {"limit": "5", "cursor": "!!"}, 400, "cursor"),
        ("GET", "/api/comms", {"limit": "5", "cursor": "WzFd"}, 400, "cursor"),
        ("GET", "/api/comms/summary", {"kernel_id": "x"}, 400, "kernel_id"),
        ("GET", "/api/comms", {"kernel_id": "no-such-kernel"}, 404, "kernel"),
        ("GET", "/api/comms/no-such-comm", {}, 404, "no-such-comm"),
        ("GET", "/api/comms/" + "x" * 300, {}, 400, "256"),
        ("GET", "/api/kernels/no-such-kernel/comms", {}, 404, "kernel"),
        ("DELETE", "/api/comms", {}, 400, "filter"),
        ("DELETE", "/api/comms", {"status": "all", "target_name": "x"}, 400, "open"),
        ("DELETE", "/api/comms", {"status": "", "target_name": "x"}, 400, "status"),
        ("DELETE", "/api/comms/no-such-comm", {}, 404, "no-such-comm"),
    ],
)
async def test_bad_requests_get_json_errors(api, method, path, params, code, words):
    body = await api(method, path, params, expect=code)
    assert words in body["message"]


async def test_non_utf8_path_is_a_json_400(
    jp_serverapp, http_server_client, jp_base_url, jp_auth_header, caplog
):
    r = await http_server_client.fetch(
        f"{jp_base_url}api/comms/%FF%FE", headers=jp_auth_header, raise_error=False
    )
    assert r.code == 400
    assert "UTF-8" in json.loads(r.body)["message"]
    assert "Traceback" not in caplog.text


class CountingConnection(ZMQChannelsWebsocketConnection):
    """Stands for another extension's connection class, which ours must wrap, not replace."""

    incoming = 0

    def handle_incoming_message(self, incoming_msg):
        CountingConnection.incoming += 1
        super().handle_incoming_message(incoming_msg)


@pytest.fixture
def jp_server_config(jp_server_config, request):
    if request.node.get_closest_marker("custom_connection"):
        jp_server_config.ServerApp.kernel_websocket_connection_class = CountingConnection
    return jp_server_config


@pytest.mark.custom_connection
async def test_composes_with_a_configured_connection_class(fetch_json, jp_ws_fetch, start_kernel):
    CountingConnection.incoming = 0
    _, ws = await populated(fetch_json, jp_ws_fetch, start_kernel)
    assert CountingConnection.incoming >= 3  # theirs still runs ...
    model = await fetch_json("api", "comms", "f1")  # ... and so does ours
    assert model["messages"]["to_kernel"] == 2
    ws.close()


def test_installing_enables_the_extension():
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_server.extension.serverextension", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = out.stdout + out.stderr
    assert "jupyter_comm_ext" in text and "enabled" in text.split("jupyter_comm_ext", 1)[1]
    listed = f"jupyter_comm_ext {jupyter_comm_ext.__version__}"
    assert f"{listed} " in text and "OK" in text.split(listed)[1]
