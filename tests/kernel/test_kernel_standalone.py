"""The manager without ipykernel: a Session, a zmq PUB socket and a parent, in-process.

This is the recipe of ``jupyter_comm_ext/kernel/README.md`` ("Without ipykernel").
"""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import textwrap
import threading
import types
import typing as t
import uuid

import comm as comm_package
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jupyter_client.session import Session

import jupyter_comm_ext.kernel.installer as installer
from jupyter_comm_ext.kernel import Comm, CommManager, install

KEY = b"standalone-secret"


class Host:
    """The smallest kernel: what CommManager needs, plus a frontend-side SUB socket."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.session = Session(key=KEY)
        self.iopub_socket = ctx.socket(zmq.PUB)
        address = f"inproc://iopub-{uuid.uuid4().hex}"
        self.iopub_socket.bind(address)
        self.sub = ctx.socket(zmq.SUB)
        self.sub.subscribe(b"")
        self.sub.connect(address)
        self.frontend = Session(key=KEY)  # a separate session, as a real client has
        self.parent: dict[str, t.Any] = {}
        self.shell_handlers: dict[str, t.Any] = {}
        for _ in range(100):  # slow joiner: wait until the subscription is live
            self.iopub_socket.send(b"probe")
            if self.sub.poll(50):
                while self.sub.poll(0):
                    self.sub.recv()
                break
        else:
            raise AssertionError("SUB never connected")

    def get_parent(self) -> dict[str, t.Any]:
        return self.parent

    def close(self) -> None:
        self.sub.close(linger=0)
        self.iopub_socket.close(linger=0)

    def incoming(self, msg_type: str, content: dict, buffers: list | None = None) -> dict:
        """A frontend message as the kernel sees it: serialized, then deserialized."""
        msg = self.frontend.msg(msg_type, content)
        frames = self.frontend.serialize(msg) + list(buffers or [])
        _, frames = self.session.feed_identities(frames)
        return self.session.deserialize(frames)

    def published(self, n: int = 1, timeout_ms: int = 5000) -> list[tuple[list[bytes], dict]]:
        """The next ``n`` iopub messages as (zmq topic frames, message)."""
        out = []
        for _ in range(n):
            assert self.sub.poll(timeout_ms), f"got {len(out)} of {n} iopub messages"
            idents, frames = self.frontend.feed_identities(self.sub.recv_multipart())
            out.append((idents, self.frontend.deserialize(frames)))
        return out

    def nothing_published(self) -> bool:
        return not self.sub.poll(100)


@pytest.fixture(scope="module")
def ctx() -> t.Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.term()


@pytest.fixture
def host(ctx: zmq.Context) -> t.Iterator[Host]:
    h = Host(ctx)
    yield h
    h.close()


@pytest.fixture
def manager(host: Host) -> CommManager:
    return CommManager(host)


def test_kernel_side_messages_on_iopub(host: Host, manager: CommManager) -> None:
    host.parent = host.frontend.msg("execute_request", {"code": ""})
    c = Comm("t", data={"v": 1}, metadata={"m": 1}, buffers=[b"b0"], manager=manager)
    c.send({"v": 2}, buffers=[memoryview(b"b1")])
    c.close({"bye": 1})
    c.close()
    msgs = host.published(3)
    assert host.nothing_published()  # the second close sent nothing
    topic = [f"comm-{c.comm_id}".encode()]
    assert [idents for idents, _ in msgs] == [topic] * 3
    assert [m["msg_type"] for _, m in msgs] == ["comm_open", "comm_msg", "comm_close"]
    assert [m["parent_header"]["msg_id"] for _, m in msgs] == [host.parent["header"]["msg_id"]] * 3
    opened = msgs[0][1]
    assert opened["content"] == {
        "data": {"v": 1},
        "comm_id": c.comm_id,
        "target_name": "t",
        "target_module": None,
    }
    assert opened["metadata"] == {"m": 1}
    assert [bytes(b) for b in opened["buffers"]] == [b"b0"]
    assert [bytes(b) for b in msgs[1][1]["buffers"]] == [b"b1"]
    assert msgs[2][1]["content"]["data"] == {"bye": 1}
    assert manager.comms == {}
    assert c.kernel is host


def test_frontend_messages_dispatched(host: Host, manager: CommManager) -> None:
    seen: list[tuple[str, t.Any]] = []

    def target(comm: Comm, msg: dict) -> None:
        seen.append(("open", msg["content"]["data"]))
        comm.on_msg(lambda m: comm.send({"echo": m["content"]["data"]}, buffers=m["buffers"]))
        comm.on_close(lambda m: seen.append(("close", m["content"]["data"])))

    manager.register_target("echo", target)
    comm_id = uuid.uuid4().hex
    manager.comm_open(None, [], host.incoming("comm_open", _open(comm_id, "echo", {"a": 1})))
    msg = host.incoming("comm_msg", {"comm_id": comm_id, "data": {"x": 1}}, [b"raw"])
    manager.comm_msg(None, [], msg)
    [(_, echo)] = host.published()
    assert echo["content"]["data"] == {"echo": {"x": 1}}
    assert [bytes(b) for b in echo["buffers"]] == [b"raw"]
    assert manager.get_comm(comm_id).origin == "frontend"
    manager.comm_close(None, [], host.incoming("comm_close", {"comm_id": comm_id, "data": {}}))
    assert seen == [("open", {"a": 1}), ("close", {})]
    assert manager.get_comm(comm_id) is None
    assert host.nothing_published()  # an external close is not echoed back


def test_comm_info_request_reply(host: Host, manager: CommManager, ctx: zmq.Context) -> None:
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    address = f"inproc://shell-{uuid.uuid4().hex}"
    a.bind(address)
    b.connect(address)
    try:
        kept = Comm("keep", manager=manager)
        Comm("other", manager=manager)
        kept.send({})
        request = host.incoming("comm_info_request", {"target_name": "keep"})
        manager.comm_info_request(a, [], request)
        assert b.poll(5000)
        _, frames = host.frontend.feed_identities(b.recv_multipart())
        reply = host.frontend.deserialize(frames)
        assert reply["msg_type"] == "comm_info_reply"
        assert reply["parent_header"]["msg_id"] == request["header"]["msg_id"]
        assert reply["content"]["status"] == "ok"
        [(comm_id, info)] = reply["content"]["comms"].items()
        assert comm_id == kept.comm_id
        assert info["messages"] == {"to_kernel": 0, "from_kernel": 2}
        assert info["origin"] == "kernel"
    finally:
        a.close(linger=0)
        b.close(linger=0)


def test_unknown_ids_and_callback_errors_logged(
    host: Host, manager: CommManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=manager.log.name)
    c = Comm("c", manager=manager)
    c.on_msg(lambda m: 1 / 0)
    c.on_close(lambda m: 1 / 0)
    manager.comm_msg(None, [], host.incoming("comm_msg", {"comm_id": "nope", "data": {}}))
    manager.comm_close(None, [], host.incoming("comm_close", {"comm_id": "nope", "data": {}}))
    manager.comm_msg(None, [], host.incoming("comm_msg", {"comm_id": c.comm_id, "data": {}}))
    manager.comm_close(None, [], host.incoming("comm_close", {"comm_id": c.comm_id, "data": {}}))
    logged = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert logged == [
        ("DEBUG", "No such comm: nope", False),
        ("DEBUG", "No such comm: nope", False),
        ("ERROR", f"Exception in comm_msg for {c.comm_id}", True),
        ("ERROR", f"Exception in comm_close for {c.comm_id}", True),
    ]
    assert manager.comms == {}


def test_external_close_hook(host: Host, manager: CommManager, caplog) -> None:
    calls: list[tuple[str, str]] = []
    order: list[str] = []

    def hook(comm: t.Any, msg: dict) -> None:
        order.append("hook")
        calls.append((comm.comm_id, msg["msg_type"]))

    def broken_hook(comm: t.Any, msg: dict) -> None:
        raise RuntimeError("hook failed")

    manager.on_external_close(broken_hook)
    manager.on_external_close(hook)
    a, b = Comm("a", manager=manager), Comm("b", manager=manager)
    a.on_close(lambda m: order.append("on_close"))
    manager.comm_close(None, [], host.incoming("comm_close", {"comm_id": a.comm_id}))
    b.close()  # kernel-side close: not external
    assert calls == [(a.comm_id, "comm_close")]
    assert order == ["on_close", "hook"]
    assert "Exception in external-close hook" in caplog.text
    manager.on_external_close(hook, remove=True)
    c = Comm("c", manager=manager)
    manager.comm_close(None, [], host.incoming("comm_close", {"comm_id": c.comm_id}))
    assert len(calls) == 1


def test_send_from_many_threads_on_a_raw_zmq_socket(host: Host, manager: CommManager) -> None:
    c = Comm("threads", manager=manager)
    host.published()

    def worker(n: int) -> None:
        for i in range(200):
            c.send({"n": n, "i": i}, buffers=[bytes([n]) * 64])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    got = [(m["content"]["data"], bytes(m["buffers"][0])) for _, m in host.published(1600)]
    assert sorted((d["n"], d["i"]) for d, _ in got) == [
        (n, i) for n in range(8) for i in range(200)
    ]
    assert all(buf == bytes([d["n"]]) * 64 for d, buf in got)
    assert c.from_kernel == 1601


def test_garbage_collected_comm_closed(host: Host, manager: CommManager) -> None:
    c = Comm("gc", manager=manager)
    comm_id = c.comm_id
    manager.unregister_comm(c)
    del c
    gc.collect()
    [(_, opened)] = host.published()
    [(_, closed)] = host.published()
    assert opened["msg_type"] == "comm_open"
    assert (closed["msg_type"], closed["content"]["comm_id"]) == ("comm_close", comm_id)


def test_gc_of_a_comm_during_a_send_does_not_deadlock(host: Host) -> None:
    """Garbage collection can run inside a send; the collected comm's __del__ sends too."""

    class CollectingSocket:
        def send_multipart(self, frames: list, **kwargs: t.Any) -> None:
            gc.collect()
            host.iopub_socket.send_multipart(frames, **kwargs)

    manager = CommManager(types.SimpleNamespace(session=host.session, iopub_socket=None))
    manager.kernel.iopub_socket = CollectingSocket()
    gc.disable()  # so the orphan is collected inside the sender's send, not before
    try:
        orphan = Comm("orphan", manager=manager)
        orphan.cycle = orphan  # only gc frees it
        manager.unregister_comm(orphan)
        del orphan
        sender = threading.Thread(target=Comm, args=("sender",), kwargs={"manager": manager})
        sender.daemon = True
        sender.start()
        sender.join(10)
    finally:
        gc.enable()
    assert not sender.is_alive(), "deadlocked"
    sent = [m["msg_type"] for _, m in host.published(3)]
    assert sent == ["comm_open", "comm_close", "comm_open"]  # orphan open, its close, sender


def test_adopt_foreign_comms_and_targets(host: Host, manager: CommManager) -> None:
    other = comm_package.base_comm.CommManager()
    foreign = types.SimpleNamespace(comm_id="f1", target_name="old", primary=False)
    foreign.handle_msg = lambda msg: seen.append(msg["content"]["data"])
    foreign.handle_close = lambda msg: seen.append("closed")
    seen: list[dict] = []
    other.register_comm(foreign)
    other.register_target("old_target", print)
    manager.register_target("old_target", len)  # ours win
    manager.adopt(other)
    assert (other.comms, other.targets) == ({}, {})
    assert manager.targets["old_target"] is len
    manager.comm_msg(None, [], host.incoming("comm_msg", {"comm_id": "f1", "data": {"y": 2}}))
    assert seen == [{"y": 2}]
    info = manager._info(foreign)
    assert info["origin"] == "frontend" and info["messages"] == {"to_kernel": 0, "from_kernel": 0}
    manager.comm_close(None, [], host.incoming("comm_close", {"comm_id": "f1"}))
    assert foreign._closed is True and manager.comms == {} and seen[-1] == "closed"


def test_repeated_comm_open_replaces_without_closing_the_new_peer(
    host: Host, manager: CommManager, caplog: pytest.LogCaptureFixture
) -> None:
    manager.register_target("t", lambda comm, msg: None)
    opening = _open("same-id", "t", {})
    manager.comm_open(None, [], host.incoming("comm_open", opening))
    first = manager.get_comm("same-id")
    manager.comm_open(None, [], host.incoming("comm_open", opening))
    assert manager.get_comm("same-id") is not first
    assert "already open comm same-id" in caplog.text
    del first
    gc.collect()
    assert host.nothing_published()  # the dropped object did not send comm_close


def test_callbacks_run_inside_ipython_execute_events(host: Host) -> None:
    events: list[str] = []
    host.shell = types.SimpleNamespace(events=types.SimpleNamespace(trigger=events.append))
    manager = CommManager(host)
    c = Comm("ev", manager=manager)

    def callback(msg: dict) -> None:
        events.append("callback")
        if msg["content"]["data"]["fail"]:
            raise ValueError("callback failed")

    c.on_msg(callback)
    for fail in (False, True):
        msg = host.incoming("comm_msg", {"comm_id": c.comm_id, "data": {"fail": fail}})
        manager.comm_msg(None, [], msg)
    # post_execute runs even when the callback raised (ipykernel skips it)
    assert events == ["pre_execute", "callback", "post_execute"] * 2


def test_subshell_reply_table_is_bounded(host: Host, manager: CommManager) -> None:
    c = Comm("rpc", manager=manager)
    host.parent = {"header": {"msg_id": "p", "subshell_id": "sub-1"}}
    for i in range(Comm._MAX_PENDING_REPLIES + 10):
        c.send({"content": {"id": f"r{i}"}})
    assert len(c._reply_subshell_ids) == Comm._MAX_PENDING_REPLIES
    assert "r0" not in c._reply_subshell_ids
    assert c._reply_subshell_for({"content": {"id": "r1033"}}, None) == "sub-1"
    assert "r1033" not in c._reply_subshell_ids  # answered once
    host.parent = {"header": {"msg_id": "q"}}  # then the main shell publishes
    c.send({})
    assert c._reply_subshell_for({}, "frontend-choice") == "frontend-choice"


def test_register_target_import_strings(manager: CommManager) -> None:
    manager.register_target("dotted", "json.dumps")
    manager.register_target("module", "json")
    import json

    assert manager.targets == {"dotted": json.dumps, "module": json}
    with pytest.raises(ImportError):
        manager.register_target("bad", "json.no_such_function")
    assert manager.unregister_target("dotted", json.dumps) is json.dumps
    with pytest.raises(KeyError):
        manager.unregister_target("dotted")


def test_install_into_any_kernel_object(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comm_package, "create_comm", comm_package.create_comm)
    monkeypatch.setattr(comm_package, "get_comm_manager", comm_package.get_comm_manager)
    monkeypatch.setattr(installer, "_manager", None)
    manager = install(host)
    assert install(host) is manager
    assert host.comm_manager is manager and manager.kernel is host
    assert {k: v.__self__ for k, v in host.shell_handlers.items()} == dict.fromkeys(
        installer.COMM_MSG_TYPES, manager
    )
    assert comm_package.get_comm_manager() is manager
    c = comm_package.create_comm(target_name="hooked")  # manager from the hook
    assert isinstance(c, Comm) and manager.get_comm(c.comm_id) is c


def test_comm_without_any_manager_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comm_package, "get_comm_manager", lambda: None)
    with pytest.raises(RuntimeError, match="no running ipykernel"):
        Comm("orphan")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
buffer_lists = st.lists(st.binary(max_size=256), max_size=3)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=payloads, buffers=buffer_lists, as_views=st.booleans())
def test_data_and_buffers_round_trip(
    ctx: zmq.Context, data: dict, buffers: list[bytes], as_views: bool
) -> None:
    host = Host(ctx)
    try:
        manager = CommManager(host)
        c = Comm("prop", manager=manager)
        c.on_msg(lambda m: c.send(m["content"]["data"], buffers=m["buffers"]))
        host.published()
        out_buffers = [memoryview(b) for b in buffers] if as_views else buffers
        c.send(data, buffers=out_buffers)
        msg = host.incoming("comm_msg", {"comm_id": c.comm_id, "data": data}, buffers)
        manager.comm_msg(None, [], msg)
        for _, m in host.published(2):
            assert m["content"]["data"] == data
            assert [bytes(b) for b in m["buffers"]] == buffers
    finally:
        host.close()


def test_no_ipykernel_and_clean_interpreter_exit() -> None:
    """Open comms left at exit close without 'Exception ignored' noise; ipykernel unused."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules['ipykernel'] = None  # importing it would fail
        import types, zmq
        from jupyter_client.session import Session
        from jupyter_comm_ext.kernel import Comm, CommManager
        pub = zmq.Context.instance().socket(zmq.PUB)
        pub.bind('inproc://iopub')
        host = types.SimpleNamespace(session=Session(), iopub_socket=pub)
        manager = CommManager(host)
        comms = [Comm('left-open', data={'i': i}, manager=manager) for i in range(3)]
        orphan = Comm('orphan', manager=manager)
        manager.unregister_comm(orphan)
        assert 'IPython' not in sys.modules
        print('ok')
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "ok", "")


def _open(comm_id: str, target: str, data: dict) -> dict:
    return {"comm_id": comm_id, "target_name": target, "data": data}
