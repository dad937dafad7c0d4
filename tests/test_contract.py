"""The REST contract, fuzzed: schemathesis runs against a real server with real comms.

`rest-api.yml` is what users (the JupyterHub service, the command line, JupyterLab) code
against, so every status, header and body a route really gives must be in it. Schemathesis
(its command line, in a subprocess) derives requests from the file, valid and invalid, sends
them to a real jupyter_server with the extension and one real kernel, and checks every answer
against the file; its stateful phase follows the file's links from the lists to the per-comm
routes, so `GET` and `DELETE /api/comms/{comm_id}` are reached with ids the kernel really
has. The kernel reopens a comm for each one closed, so there are real ids left to the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from server_process import ServerProcess
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse
from waiting import PROMPT, wait_for

import jupyter_comm_ext

SPEC_PATH = Path(jupyter_comm_ext.__file__).parent / "rest-api.yml"
SPEC = OpenAPI.from_file_path(str(SPEC_PATH))

#: test cases per operation and phase: ~600 requests in all, ~45 s on 2 cores at load 7
MAX_EXAMPLES = 25
#: the bound of the whole schemathesis run (pytest-timeout's is the test's)
RUN_TIMEOUT = 240

#: Where the file cannot say what the server rightly does, a check is widened for that
#: operation only, and why is written next to it (the one check left out is in the command).
SCHEMATHESIS_CONFIG = """
# A cursor is opaque (only one the server gave out is valid, and it needs `limit`), so
# schema-valid made-up cursors are rightly a 400.
[[operations]]
include-name = "GET /api/comms"
checks.positive_data_acceptance.expected-statuses = ["200", "400", "403", "404"]

# A bulk close needs at least one filter: OpenAPI cannot require one of several optional
# arguments, so `DELETE /api/comms` with none (or `status=open` alone) is rightly a 400.
[[operations]]
include-name = "DELETE /api/comms"
checks.positive_data_acceptance.expected-statuses = ["200", "400", "403", "404"]

# The stateful phase is the one that reaches the per-comm routes with ids the kernel has:
# which links it follows depends on the answers (the ids are random), so it gets more
# scenarios than the others, enough that some always end in a real close.
[phases.stateful.generation]
max-examples = 75
"""

#: comms that come back: each one closed (by us, over REST) is replaced by a new one, and
#: one has a tab in its id, which REST must serve like any other
REPLENISHING_COMMS = """
from comm import create_comm

def _open(target, **kwargs):
    c = create_comm(target_name=target, data={}, **kwargs)
    c.on_close(lambda msg: _open(target))

for i in range(12):
    _open(f"fuzz{i % 3}")
_open("odd", comm_id="tab\\there")
"""


@pytest.fixture(scope="module")
def server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    """One server for the module; `reconcile_timeout` short, so a stopped kernel is named
    in `X-Comms-Not-Refreshed` within a second."""
    return start_server("contract", args=("--CommMirror.reconcile_timeout=1",))


async def kernel_with_comms(server: ServerProcess, code: str) -> str:
    """A kernel that ran `code`; returns once the mirror lists the kernel's comms."""
    kernel_id = await server.start_kernel()
    ws = await server.connect(kernel_id, "v1")
    try:
        await ws.run(code, timeout=30)
    finally:
        ws.ws.close()
    await wait_for(lambda: kernel_listed(server, kernel_id), 30, "the kernel's comms in the mirror")
    return kernel_id


async def kernel_listed(server: ServerProcess, kernel_id: str) -> bool:
    return bool(await server.get_json(f"/api/kernels/{kernel_id}/comms"))


def validate(method: str, path: str, response: Any) -> None:
    """Check a real response (status, headers, body) against rest-api.yml."""
    url = urllib.parse.urlsplit(path)
    request = MockRequest(
        "http://127.0.0.1",
        method.lower(),
        url.path,
        args=dict(urllib.parse.parse_qsl(url.query)),
    )
    SPEC.validate_response(
        request,
        MockResponse(
            response.body or b"",
            status_code=response.code,
            headers=dict(response.headers.get_all()),
            content_type=response.headers.get("Content-Type", "application/json"),
        ),
    )


async def request(
    server: ServerProcess, path: str, method: str = "GET", headers: dict | None = None
) -> HTTPResponse:
    """Any method, with these headers only (the server's token unless told otherwise)."""
    client = AsyncHTTPClient(force_instance=True)
    try:
        return await client.fetch(
            HTTPRequest(
                server.url + path,
                method=method,
                headers=server.headers if headers is None else headers,
                allow_nonstandard_methods=True,
                request_timeout=PROMPT,
            ),
            raise_error=False,
        )
    finally:
        client.close()


def run_schemathesis(server: ServerProcess, workdir: Path) -> tuple[int, str, list[dict]]:
    """Every phase (stateful included) and every check; the exit code, the output and the
    requests it sent (from its HAR report)."""
    config = workdir / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    har = workdir / "requests.har"
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color"),
        *("run", str(SPEC_PATH), "--url", server.url),
        *("--header", f"Authorization: token {server.token}"),
        *("--checks", "all", "--phases", "examples,coverage,fuzzing,stateful"),
        # ... but one: a closed comm stays in the history, so GET /api/comms/{comm_id} after
        # its DELETE is a 200 with `"status": "closed"`, as documented (this check wants 404)
        *("--exclude-checks", "use_after_free"),
        *("--max-examples", str(MAX_EXAMPLES)),
        # the same requests every run (no seed, no example database), so CI is reproducible
        "--generation-deterministic",
        # a made-up `token` argument would override the real token in the header
        *("--generation-with-security-parameters", "false"),
        *("--workers", "1", "--request-timeout", "10", "--max-failures", "20"),
        *("--report", "har", "--report-har-path", str(har)),
    ]
    out = subprocess.run(
        command,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    return out.returncode, out.stdout + out.stderr, entries


def sent(entries: list[dict], method: str, prefix: str, status: int) -> list[str]:
    """The paths of the requests with this method, path prefix and response status."""
    return [
        path
        for e in entries
        if e["request"]["method"] == method
        and e["response"]["status"] == status
        and (path := urllib.parse.urlsplit(e["request"]["url"]).path).startswith(prefix)
    ]


@pytest.mark.timeout(RUN_TIMEOUT + 60)
async def test_schemathesis_finds_nothing(server: ServerProcess, tmp_path: Path) -> None:
    kernel_id = await kernel_with_comms(server, REPLENISHING_COMMS)
    population = len(await server.get_json(f"/api/kernels/{kernel_id}/comms"))
    code, output, entries = run_schemathesis(server, tmp_path)
    assert code == 0, output
    assert "Stateful" in output and len(entries) > 400, output  # it ran, the report has it
    # The stateful phase reached the per-comm routes with ids the kernel had, and closed
    # those comms for real (the kernel opened others in their place).
    closed = [p.rsplit("/", 1)[1] for p in sent(entries, "DELETE", "/api/comms/", 204)]
    assert closed, output
    for comm_id in closed:
        model = await server.get_json(f"/api/comms/{comm_id}")
        assert (model["kernel_id"], model["close_reason"]) == (kernel_id, "force-closed")
    assert sent(entries, "GET", "/api/comms/", 200), output
    assert sent(entries, "GET", f"/api/kernels/{kernel_id}/comms", 200), output
    again = await server.get_json(f"/api/kernels/{kernel_id}/comms")
    assert len(again) == population
    assert "Traceback" not in server.log(), server.log()


async def test_any_comm_id_a_kernel_chose_is_served(server: ServerProcess) -> None:
    """A comm id is the kernel's choice: one with a tab or a bell in it (not printable) is
    read and closed by id like any other (it used to be a 400)."""
    ids = ["tab\there too", "bell\a", "a b?c#d%"]
    code = "from comm import create_comm\n" + "\n".join(
        f"create_comm(target_name='ids', comm_id={comm_id!r})" for comm_id in ids
    )
    await kernel_with_comms(server, code)
    for comm_id in ids:
        path = "/api/comms/" + urllib.parse.quote(comm_id, safe="")
        response = await server.fetch(path)
        validate("GET", path, response)
        assert json.loads(response.body)["comm_id"] == comm_id
        response = await server.fetch(path, "DELETE")
        validate("DELETE", path, response)
        assert response.code == 204
        assert (await server.get_json(path))["status"] == "closed"
    too_long = "/api/comms/" + "x" * 257
    response = await server.fetch(too_long)
    validate("GET", too_long, response)
    assert response.code == 400 and "256" in json.loads(response.body)["message"]


def kernel_pid(server: ServerProcess, kernel_id: str) -> int:
    """The process of a kernel (its connection file, on its command line, names it)."""
    for pid in server.children():
        if f"kernel-{kernel_id}.json" in Path(f"/proc/{pid}/cmdline").read_text():
            return pid
    raise LookupError(kernel_id)


@pytest.mark.parametrize(
    "route", ["/api/comms", "/api/comms/summary", "/api/kernels/{stopped}/comms"]
)
async def test_kernels_not_asked_are_named_in_a_header(server: ServerProcess, route: str) -> None:
    stopped = await kernel_with_comms(server, "from comm import create_comm\nc = create_comm()")
    pid = kernel_pid(server, stopped)
    path = route.format(stopped=stopped)
    os.kill(pid, signal.SIGSTOP)
    try:
        response = await server.fetch(f"{path}?refresh=1")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert response.code == 200, response.body
    validate("GET", f"{path}?refresh=1", response)
    named = response.headers["X-Comms-Not-Refreshed"].split(", ")
    assert stopped in named
    # the kernel's comms are still in the answer, as the mirror last saw them
    assert stopped in response.body.decode()

    async def asked_again() -> bool:
        response = await server.fetch(f"{path}?refresh=1")
        validate("GET", f"{path}?refresh=1", response)
        return stopped not in response.headers.get("X-Comms-Not-Refreshed", "")

    # once it runs again it is asked again (a loaded machine may take more than one try)
    await wait_for(asked_again, 30, "the resumed kernel answering comm_info")
    await server.shutdown_kernel(stopped)


@pytest.fixture(scope="module")
def read_only(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server(
        "read-only", args=("--ServerApp.authorizer_class=authorizers.ReadOnlyAuthorizer",)
    )


@pytest.mark.parametrize(
    ("method", "path", "headers", "message"),
    [
        ("GET", "/api/comms", {}, "Forbidden"),
        ("GET", "/api/comms", {"Accept": "text/html"}, "Forbidden"),  # a browser: JSON too
        ("GET", "/api/comms/summary", {"Authorization": "token nope"}, "Forbidden"),
        ("GET", "/api/comms/x", {}, "Forbidden"),
        ("GET", "/api/kernels/x/comms", {"Authorization": "token nope"}, "Forbidden"),
        ("DELETE", "/api/comms/x", {}, "_xsrf"),
        ("DELETE", "/api/comms/x", None, "not authorized to write on resource: comms"),
        ("DELETE", "/api/comms?target_name=x", None, "not authorized"),
    ],
)
async def test_forbidden_is_the_json_the_file_describes(
    server: ServerProcess,
    read_only: ServerProcess,
    method: str,
    path: str,
    headers: dict | None,
    message: str,
) -> None:
    """jupyter_server answers 403 (not 401) with a JSON body, without a token, with a wrong
    one, and when the Authorizer says no (`headers` None: the read-only server, with its
    token); a DELETE without a token fails its XSRF check first."""
    response = await request(read_only if headers is None else server, path, method, headers)
    assert response.code == 403
    assert response.headers["Content-Type"] == "application/json"
    validate(method, path, response)
    assert message in json.loads(response.body)["message"]


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/comms", "GET, DELETE, OPTIONS"),
        ("/api/comms/summary", "GET, OPTIONS"),
        ("/api/comms/x", "GET, DELETE, OPTIONS"),
        ("/api/kernels/x/comms", "GET, OPTIONS"),
    ],
)
async def test_other_methods_are_a_405_naming_the_allowed_ones(
    server: ServerProcess, path: str, allowed: str
) -> None:
    for method in ("PUT", "PATCH", "POST", "HEAD", "TRACE"):
        response = await request(server, path, method)
        assert response.code == 405, method
        assert response.headers["Allow"] == allowed, method
        if method != "HEAD":
            assert json.loads(response.body)["message"] == "Method Not Allowed"


async def test_a_paged_list_links_the_next_page_as_documented(server: ServerProcess) -> None:
    code = "from comm import create_comm\ncs = [create_comm(target_name='paged') for _ in 'abc']"
    kernel_id = await kernel_with_comms(server, code)
    path = f"/api/comms?kernel_id={kernel_id}&target_name=paged&limit=2"
    pages = 0
    while path:
        response = await request(server, path)
        validate("GET", path, response)  # the Link header's documented shape included
        pages += 1
        link = response.headers.get("Link")
        path = link and link.removeprefix("<").split(">;", 1)[0]
    assert pages == 2
    await server.shutdown_kernel(kernel_id)
