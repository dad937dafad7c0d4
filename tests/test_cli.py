"""`jupyter comms`, run as a subprocess against real servers with real kernels.

One server with the extension and two kernels (one behind a notebook session) serves most
tests; a server without the extension and one whose Authorizer may only look serve the
error cases. The command finds the server from the runtime directory, as a user's would.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from server_process import ServerProcess, free_port
from waiting import wait_for

from jupyter_comm_ext.cli import Exit
from jupyter_comm_ext.cli.app import duration, parse_duration
from jupyter_comm_ext.cli.client import CommsClient, CommsError, Response, Server

#: where pip put this Python's scripts (`jupyter`, and `jupyter-comms` beside it): next to
#: the interpreter in a venv, elsewhere for a distribution's Python (/usr/local/bin)
SCRIPTS = os.pathsep.join([sysconfig.get_path("scripts"), str(Path(sys.executable).parent)])
JUPYTER = shutil.which("jupyter", path=SCRIPTS) or "jupyter"
NOTEBOOK = "work/analysis.ipynb"
#: the targets of the fixture's comms (other tests add comms of their own targets)
FIXTURE_TARGETS = {"alpha", "beta", "front"}

#: kernel A: a target the frontend opens comms to (it echoes), two comms of its own
SETUP_A = """
from comm import create_comm, get_comm_manager
def _front(comm, msg):
    comm.on_msg(lambda m: comm.send({"ok": True}))
get_comm_manager().register_target("front", _front)
opened = [create_comm(target_name="alpha"), create_comm(target_name="beta")]
"""
SETUP_B = """
from comm import create_comm
opened = [create_comm(target_name="alpha")]
"""


@dataclass
class Result:
    code: int
    out: str
    err: str

    def tables(self) -> list[list[dict[str, str]]]:
        """Every table printed, as rows by column header (cells are 2+ spaces apart)."""
        tables = []
        for block in self.out.split("\n\n"):
            lines = block.strip("\n").splitlines()
            if lines and lines[0].isupper():
                header = re.split(r"\s{2,}", lines[0].strip())
                rows = [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]
                tables.append([dict(zip(header, row, strict=True)) for row in rows])
        return tables

    def rows(self) -> dict[str, dict[str, str]]:
        """The comms table's rows by comm id."""
        (table,) = self.tables()
        return {row["COMM"]: row for row in table}


def run_cli(runtime: Path, *args: str, **env: str) -> Result:
    """`jupyter comms ARGS` as a user runs it: through `jupyter`, in a clean environment."""
    environ = {k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"}
    environ.update(
        JUPYTER_RUNTIME_DIR=str(runtime),
        JUPYTER_CONFIG_DIR=str(runtime.parent / "cli-config"),
        PATH=os.pathsep.join([SCRIPTS, environ.get("PATH", "")]),
        **env,
    )
    p = subprocess.run(
        [JUPYTER, "comms", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return Result(p.returncode, p.stdout, p.stderr)


@dataclass
class Setup:
    server: ServerProcess
    runtime: Path
    kernel_a: str  # behind the NOTEBOOK session
    kernel_b: str  # no session
    front: str  # the comm the frontend opened on kernel A

    def cli(self, *args: str, find: bool = False, **env: str) -> Result:
        """The command, given the server's URL and token; with `find`, it finds the
        server in the runtime directory, as a user's does."""
        if not find:
            args = (*args, f"--url={self.server.url}", f"--token={self.server.token}")
        return run_cli(self.runtime, *args, **env)

    def get(self, path: str) -> Any:
        return asyncio.run(self.server.get_json(path))

    def models(self, query: str = "") -> list[dict[str, Any]]:
        return self.get(f"/api/comms{query}")

    def open_comms(self, kernel_id: str, target: str, n: int = 1) -> list[str]:
        """Open `n` comms of `target` from the kernel; their ids once the server has them."""
        code = f"opened += [create_comm(target_name={target!r}) for _ in range({n})]"
        return asyncio.run(self._open(kernel_id, code, target, n))

    async def execute(self, kernel_id: str, code: str) -> None:
        ws = await self.server.connect(kernel_id, "v1")
        try:
            await ws.execute(code)
        finally:
            ws.close()

    async def _open(self, kernel_id: str, code: str, target: str, n: int) -> list[str]:
        await self.execute(kernel_id, f"from comm import create_comm\n{code}")
        # not filtered by target_name: tornado turns control characters in arguments to spaces
        query = "/api/comms?" + urlencode({"kernel_id": kernel_id})
        models = await wait_for(
            lambda: self._at_least(query, target, n), timeout=20, what=f"{n} comm(s) of {target}"
        )
        return [m["comm_id"] for m in models]

    async def _at_least(self, query: str, target: str, n: int) -> list[dict[str, Any]] | None:
        models = [m for m in await self.server.get_json(query) if m["target_name"] == target]
        return models if len(models) >= n else None


async def _populate(server: ServerProcess) -> tuple[str, str, str]:
    body = json.dumps({"path": NOTEBOOK, "type": "notebook", "kernel": {"name": "python3"}})
    response = await server.fetch("/api/sessions", "POST", body, timeout=60)
    assert response.code == 201, response.body
    kernel_a = json.loads(response.body)["kernel"]["id"]
    kernel_b = await server.start_kernel()
    ws = await server.connect(kernel_b, "v1")
    await ws.execute(SETUP_B)
    ws.close()
    ws = await server.connect(kernel_a, "v1")
    try:
        await ws.execute(SETUP_A)
        await ws.send("comm_open", {"comm_id": "front-1", "target_name": "front", "data": {}})
        for n in range(2):
            await ws.send("comm_msg", {"comm_id": "front-1", "data": {"n": n}})
        await ws.recv(
            lambda m: m["header"]["msg_type"] == "comm_msg" and m["content"]["data"] == {"ok": True}
        )
        await ws.recv(
            lambda m: m["header"]["msg_type"] == "comm_msg" and m["content"]["data"] == {"ok": True}
        )
    finally:
        ws.close()

    async def settled() -> bool:
        models = await server.get_json("/api/comms")
        front = [m for m in models if m["comm_id"] == "front-1"]
        return len(models) == 4 and front[0]["messages"] == {"to_kernel": 3, "from_kernel": 2}

    await wait_for(settled, timeout=20, what="4 comms, front-1 with 3 messages in, 2 out")
    return kernel_a, kernel_b, "front-1"


@pytest.fixture(scope="module")
def setup(start_server: Callable[..., ServerProcess]) -> Setup:
    server = start_server("cli")
    kernel_a, kernel_b, front = asyncio.run(_populate(server))
    return Setup(server, server.log_path.parent / "runtime", kernel_a, kernel_b, front)


# -- list --------------------------------------------------------------------------------


def test_list_finds_the_server_and_shows_a_row_per_comm(setup: Setup) -> None:
    result = setup.cli("list", find=True)
    assert result.code == Exit.OK, result
    rows = result.rows()
    assert set(rows) == {m["comm_id"] for m in setup.models()}
    front = rows[setup.front]
    assert front == {
        "COMM": "front-1",
        "KERNEL": NOTEBOOK,
        "TARGET": "front",
        "MODEL": "-",
        "ORIGIN": "frontend",
        "STATUS": "open",
        "AGE": front["AGE"],
        "IDLE": front["IDLE"],
        "TO KERNEL": "3",
        "FROM KERNEL": "2",
    }
    assert re.fullmatch(r"\d+s|\d+m\d\ds", front["AGE"]), front
    assert re.fullmatch(r"\d+s|\d+m\d\ds", front["IDLE"]), front
    by_target = {(r["KERNEL"], r["TARGET"]): r for r in rows.values()}
    alpha = by_target[(NOTEBOOK, "alpha")]
    assert (alpha["ORIGIN"], alpha["TO KERNEL"], alpha["FROM KERNEL"]) == ("kernel", "0", "1")
    assert (NOTEBOOK, "beta") in by_target
    # the kernel without a notebook shows as the start of its id
    assert (setup.kernel_b[:8], "alpha") in by_target


def test_list_json_prints_the_apis_models_over_every_page(setup: Setup) -> None:
    # pages of 2 comms: the command follows the server's Link rel="next" to the end
    result = setup.cli("list", "--json", "--FilterCommand.page_size=2")
    assert result.code == Exit.OK, result
    models = json.loads(result.out)
    assert len(models) >= 4
    # in the pages' order (opened_at, then comm_id); without paging the API's order is its own
    assert models == sorted(setup.models(), key=lambda m: (m["opened_at"], m["comm_id"]))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--target=alpha"], {("A", "alpha"), ("B", "alpha")}),
        (["--kernel=KERNEL_B"], {("B", "alpha")}),
        (["--kernel=KERNEL_B_START"], {("B", "alpha")}),
        ([f"--kernel={NOTEBOOK}", "--origin=kernel"], {("A", "alpha"), ("A", "beta")}),
        (["--origin=frontend"], {("A", "front")}),
        (["--status=closed", "--target=alpha"], set()),
    ],
)
def test_list_filters(setup: Setup, args: list[str], expected: set[tuple[str, str]]) -> None:
    names = {setup.kernel_a: "A", setup.kernel_b: "B"}
    args = [
        a.replace("KERNEL_B_START", setup.kernel_b[:6]).replace("KERNEL_B", setup.kernel_b)
        for a in args
    ]
    result = setup.cli("list", "--json", *args)
    assert result.code == Exit.OK, result
    seen = {(names[m["kernel_id"]], m["target_name"]) for m in json.loads(result.out)}
    assert {s for s in seen if s[1] in FIXTURE_TARGETS} == expected


def test_an_empty_list_says_so(setup: Setup) -> None:
    result = setup.cli("list", "--min-idle=1d")
    assert (result.code, result.out) == (Exit.OK, "No comms.\n")


def test_min_idle_takes_durations_and_separates_old_from_new(setup: Setup) -> None:
    def idle(model: dict[str, Any]) -> float:
        last = model["last_activity"].replace("Z", "+00:00")
        return time.time() - datetime.fromisoformat(last).timestamp()

    # the fixture's comms are 12 s idle or more; a new one is queried well within 9 s
    old = setup.models(f"?kernel_id={setup.kernel_b}&target_name=alpha")
    time.sleep(max(0.0, 12 - min(idle(m) for m in old)))
    (fresh,) = setup.open_comms(setup.kernel_b, "fresh")
    result = setup.cli("list", "--json", "--min-idle=0.15m", "--kernel", setup.kernel_b)
    assert result.code == Exit.OK, result
    ids = {m["comm_id"] for m in json.loads(result.out)}
    assert fresh not in ids
    assert {m["comm_id"] for m in old} <= ids


def test_refresh_asks_the_kernels(setup: Setup) -> None:
    # a comm the kernel holds without having announced it: only asking the kernel finds it
    # (the frontend stays connected meanwhile: when the last one leaves, the server asks the
    # kernel by itself)
    code = """
from comm import create_comm, get_comm_manager
hidden = create_comm(target_name="hidden", primary=False)
get_comm_manager().register_comm(hidden)
"""

    async def check() -> tuple[Any, Any]:
        ws = await setup.server.connect(setup.kernel_b, "v1")
        try:
            await ws.execute(code)
            before = await asyncio.to_thread(setup.cli, "list", "--json", "--target=hidden")
            after = await asyncio.to_thread(
                setup.cli, "list", "--json", "--target=hidden", "--refresh"
            )
            return before, after
        finally:
            ws.close()

    before, after = asyncio.run(check())
    assert (before.code, json.loads(before.out)) == (Exit.OK, [])
    assert after.code == Exit.OK, after
    (model,) = json.loads(after.out)
    assert (model["kernel_id"], model["origin"]) == (setup.kernel_b, "unknown")


def test_text_from_kernels_cannot_drive_the_terminal(setup: Setup) -> None:
    target = "evil\x1b[2J\x07"
    (comm_id,) = setup.open_comms(setup.kernel_b, target)
    result = setup.cli("list", "--kernel", setup.kernel_b)
    assert result.code == Exit.OK, result
    assert result.rows()[comm_id]["TARGET"] == "evil\\x1b[2J\\x07"
    assert "\x1b" not in result.out and "\x07" not in result.out
    assert "evil\\x1b[2J\\x07" in result.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--origin=nobody"], "origin must be one of"),
        (["list", "--status=gone"], "status must be one of"),
        (["list", "--min-idle=soon"], "--min-idle must be a duration"),
        (["list", "--kernel=no-such-kernel"], "no kernel 'no-such-kernel'"),
        (["list", "--timeout=long"], "expected a float"),
        (["list", "--no-such-option"], "no-such-option"),
        (["close"], "close needs comm ids, or at least one filter"),
        (["close", "front-1", "--target=front"], "comm ids or filters, not both"),
        (["close", "front-1", "--dry-run"], "--dry-run goes with filters"),
        (["close", "--status=all"], "close needs comm ids, or at least one filter"),
        (["close", "--target=front", "--status=closed"], "only open or orphaned comms"),
    ],
)
def test_bad_command_lines_exit_with_usage(setup: Setup, args: list[str], message: str) -> None:
    before = setup.models()
    result = setup.cli(*args)
    assert result.code == Exit.USAGE, result
    assert message in result.err + result.out
    assert setup.models() == before  # and nothing was closed


# -- close -------------------------------------------------------------------------------


def test_close_by_id_prints_it_and_the_server_closes_it(setup: Setup) -> None:
    victim, bystander = setup.open_comms(setup.kernel_b, "victim", 2)
    result = setup.cli("close", victim)
    assert result.code == Exit.OK, result
    (row,) = result.rows().values()
    assert row["COMM"] == victim and row["KERNEL"] == setup.kernel_b[:8]
    assert (row["TARGET"], row["STATUS"]) == ("victim", "closed")
    model = setup.get(f"/api/comms/{victim}")
    assert (model["status"], model["close_reason"]) == ("closed", "force-closed")
    assert setup.get(f"/api/comms/{bystander}")["status"] == "open"

    again = setup.cli("close", victim)
    assert again.code == Exit.UNKNOWN_COMM, again
    assert "already closed" in again.err

    # one unknown id among known ones: the known ones close, and the exit says so
    both = setup.cli("close", "no-such-comm", bystander)
    assert both.code == Exit.UNKNOWN_COMM, both
    assert "no comm with id 'no-such-comm'" in both.err
    assert list(both.rows()) == [bystander]
    assert setup.get(f"/api/comms/{bystander}")["status"] == "closed"
    listed = setup.cli("list", "--status=closed", "--target=victim", "--json")
    assert {m["comm_id"] for m in json.loads(listed.out)} == {victim, bystander}


def test_bulk_close_needs_a_filter_and_closes_only_what_it_selects(setup: Setup) -> None:
    in_a = set(setup.open_comms(setup.kernel_a, "bulk", 2))
    (in_b,) = setup.open_comms(setup.kernel_b, "bulk")
    dry = setup.cli("close", "--target=bulk", f"--kernel={NOTEBOOK}", "--dry-run")
    assert dry.code == Exit.OK, dry
    assert set(dry.rows()) == in_a
    assert all(m["status"] == "open" for m in setup.models("?target_name=bulk"))

    result = setup.cli("close", "--target=bulk", f"--kernel={NOTEBOOK}", "--json")
    assert result.code == Exit.OK, result
    closed = json.loads(result.out)
    assert {m["comm_id"] for m in closed} == in_a
    assert {m["comm_id"] for m in setup.models("?target_name=bulk")} == {in_b}
    nothing = setup.cli("close", "--target=bulk", f"--kernel={NOTEBOOK}")
    assert (nothing.code, nothing.out.strip()) == (Exit.OK, "No comms.")


# -- summary -----------------------------------------------------------------------------


def test_summary_counts_per_kernel_and_target(setup: Setup) -> None:
    result = setup.cli("summary", find=True)
    assert result.code == Exit.OK, result
    api = setup.get("/api/comms/summary")
    assert result.out.startswith(
        f"{api['open']} open, {api['orphaned']} orphaned, {api['left_behind']} left behind, "
        f"{api['closed']} closed"
    )
    kernels, targets = result.tables()
    kernels = {row["KERNEL"]: row for row in kernels}
    for kernel_id, label in ((setup.kernel_a, NOTEBOOK), (setup.kernel_b, setup.kernel_b[:8])):
        counts = api["by_kernel"][kernel_id]
        assert kernels[label] == {
            "KERNEL": label,
            "OPEN": str(counts["open"]),
            "ORPHANED": str(counts["orphaned"]),
            "LEFT BEHIND": str(counts["left_behind"]),
            "TO KERNEL": str(counts["messages"]["to_kernel"]),
            "FROM KERNEL": str(counts["messages"]["from_kernel"]),
        }
    assert kernels[NOTEBOOK]["TO KERNEL"] == "3"
    targets = {row["TARGET"]: row for row in targets}
    assert targets["alpha"] == {"TARGET": "alpha", "OPEN": "2", "ORPHANED": "0", "LEFT BEHIND": "0"}
    assert set(targets) >= FIXTURE_TARGETS and len(targets) == len(api["by_target"])

    as_json = setup.cli("summary", "--json")
    assert json.loads(as_json.out) == setup.get("/api/comms/summary")


# -- finding the server, and each way of failing -----------------------------------------


def test_a_command_imports_no_server(tmp_path: Path) -> None:
    """`jupyter comms` answers in a fraction of a second: neither importing it nor running a
    command imports jupyter_server or tornado's web framework (seconds of imports)."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    for pid in (os.getpid(), dead.pid):  # a running server, and one whose process is gone
        info = {"pid": pid, "url": f"http://127.0.0.1:{free_port()}/", "token": "t"}
        (runtime / f"jpserver-{pid}.json").write_text(json.dumps(info))
    code = """if True:
        import sys
        from jupyter_comm_ext.cli import main
        try:
            main(["list"])
        except SystemExit as e:
            print(e.code)
        print(sorted(m for m in sys.modules if m.startswith(("jupyter_server", "tornado.web"))))
    """
    p = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert p.stdout.split("\n")[:2] == [str(int(Exit.NO_SERVER)), "[]"], p
    assert "no Jupyter server answers at" in p.stderr  # it found the live one's file


def test_no_server_running(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "runtime", "list")
    assert result.code == Exit.NO_SERVER, result
    assert "no Jupyter server is running" in result.err
    nobody = run_cli(tmp_path / "runtime", "list", f"--url=http://127.0.0.1:{free_port()}/")
    assert nobody.code == Exit.NO_SERVER, nobody
    assert "no Jupyter server answers at" in nobody.err


def test_several_servers_ask_for_url(setup: Setup, stock_server: ServerProcess) -> None:
    (info,) = (stock_server.log_path.parent / "runtime").glob("jpserver-*.json")
    copy = setup.runtime / info.name
    shutil.copy(info, copy)  # both servers now run for the same user
    try:
        result = setup.cli("summary", find=True)
        assert result.code == Exit.SEVERAL_SERVERS, result
        assert "2 Jupyter servers are running; pick one with --url" in result.err
        assert setup.server.url + "/" in result.err and stock_server.url + "/" in result.err
        # --url picks one, and its token comes from its runtime file
        picked = setup.cli("summary", "--json", f"--url={setup.server.url}", find=True)
        assert picked.code == Exit.OK, picked
    finally:
        copy.unlink()


def test_url_and_token_reach_a_server_of_another_runtime(setup: Setup, tmp_path: Path) -> None:
    url, token = setup.server.url, setup.server.token
    elsewhere = tmp_path / "runtime"
    assert run_cli(elsewhere, "summary", f"--url={url}", f"--token={token}").code == Exit.OK
    assert run_cli(elsewhere, "summary", f"--url={url}", JUPYTER_TOKEN=token).code == Exit.OK

    wrong = run_cli(elsewhere, "summary", f"--url={url}", JUPYTER_TOKEN="wrong")
    assert wrong.code == Exit.NOT_AUTHENTICATED, wrong
    assert "refused the token from JUPYTER_TOKEN" in wrong.err
    none = run_cli(elsewhere, "list", f"--url={url}")
    assert none.code == Exit.NOT_AUTHENTICATED, none
    assert "needs a token" in none.err
    # the token found in the runtime file is checked too
    found = setup.cli("list", "--token=wrong", find=True)
    assert found.code == Exit.NOT_AUTHENTICATED, found
    assert "refused the token from --token" in found.err


def test_server_without_the_extension(stock_server: ServerProcess) -> None:
    runtime = stock_server.log_path.parent / "runtime"
    for args in (["list"], ["close", "some-comm"]):
        result = run_cli(runtime, *args)
        assert result.code == Exit.NO_EXTENSION, (args, result)
        assert "jupyter_comm_ext is not enabled on the server" in result.err


def test_an_authorizer_that_may_only_look(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path,
        extension=True,
        args=["--ServerApp.authorizer_class=authorizers.ReadOnlyAuthorizer"],
    )
    try:
        runtime = tmp_path / "runtime"
        assert run_cli(runtime, "list").code == Exit.OK
        for args in (["close", "some-comm"], ["close", "--target=x"]):
            result = run_cli(runtime, *args)
            assert result.code == Exit.NOT_AUTHORIZED, (args, result)
            assert "not authorized to close comms" in result.err
    finally:
        server.stop()


def test_a_server_that_does_not_answer(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        started = time.monotonic()
        result = run_cli(tmp_path / "runtime", "list", f"--url={url}", "--token=t", "--timeout=1")
    assert result.code == Exit.SERVER_ERROR, result
    assert "did not answer within 1 s" in result.err
    assert time.monotonic() - started < 30


def test_help_lists_the_exit_statuses(tmp_path: Path) -> None:
    for args in (["--help"], ["close", "--help"]):
        result = run_cli(tmp_path / "runtime", *args)
        assert result.code == Exit.OK, result
        for code in Exit:
            assert re.search(rf"^  {int(code)}  \S", result.out, re.M), (args, code)
    bare = run_cli(tmp_path / "runtime")
    assert bare.code == Exit.USAGE, bare
    assert "give a subcommand: list, summary, close" in bare.out


@pytest.mark.timeout(180)  # two 30 s bounds, on a loaded machine
def test_ctrl_c_exits_without_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        env = {k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"}
        env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
        cli = subprocess.Popen(
            [JUPYTER, "comms", "list", f"--url={url}", "--token=t", "--timeout=30"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            listener.settimeout(30)
            connection, _ = listener.accept()  # the command is waiting for an answer now
            cli.send_signal(signal.SIGINT)
            _, err = cli.communicate(timeout=30)
            connection.close()
        finally:
            cli.kill()
    assert cli.returncode == Exit.INTERRUPTED, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("10m", 600), ("1.5h", 5400), ("2d", 172800), (".5m", 30)],
)
def test_min_idle_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-5", "5x", "1h30m", "nan", "inf", "1e3"])
def test_bad_min_idle_durations(text: str) -> None:
    with pytest.raises(CommsError) as e:
        parse_duration(text)
    assert e.value.code == Exit.USAGE


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.4, "0s"),
        (59.9, "59s"),
        (60, "1m00s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (86400 * 3 + 7200, "3d02h"),
        (-2, "0s"),
        (None, "-"),
    ],
)
def test_ages_are_short(seconds: float | None, shown: str) -> None:
    assert duration(seconds) == shown


def test_links_stay_under_the_servers_url() -> None:
    client = CommsClient(Server("http://127.0.0.1:8888/base/", "t", "--token"), 1)
    assert client.url("api/comms", {"limit": 5}) == "http://127.0.0.1:8888/base/api/comms?limit=5"
    # the server's next link is an absolute path that carries its base_url
    assert client.url("/base/api/comms?cursor=x") == "http://127.0.0.1:8888/base/api/comms?cursor=x"
    for elsewhere in ("http://attacker.example/api/comms", "//attacker.example/api/comms"):
        with pytest.raises(CommsError) as e:
            client.url(elsewhere)  # would carry the token to another host
        assert e.value.code == Exit.SERVER_ERROR


@pytest.mark.parametrize(
    ("links", "target"),
    [
        (['</api/comms?cursor=a>; rel="next"'], "/api/comms?cursor=a"),
        (['</x>; rel="prev", </api/comms?cursor=b>; rel=next'], "/api/comms?cursor=b"),
        (['</x>; rel="prev"'], None),
        ([], None),
    ],
)
def test_next_links(links: list[str], target: str | None) -> None:
    headers = Message()
    for link in links:
        headers["Link"] = link
    assert Response(200, headers, b"[]").next_link() == target
