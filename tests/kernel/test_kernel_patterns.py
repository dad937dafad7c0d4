"""The usage patterns users already write against ipykernel, run against ours.

Each runs in a real kernel; the assertions are on what a frontend receives on iopub.
"""

from __future__ import annotations

import re

from jupyter_client.session import Session

from .kernel_driver import EXTENSION_ARG, KernelDriver, of_type, start_kernel

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def comm_msgs(out: list[dict], msg_type: str = "comm_msg") -> list[dict]:
    return [m["content"]["data"] for m in out if m["msg_type"] == msg_type]


def test_basic_send_echo_close(kernel: KernelDriver) -> None:
    out = kernel.execute(
        """
comm = Comm(target_name='my_widget', data={'value': 1})
closed = []
comm.on_msg(lambda msg: comm.send({'echo': msg['content']['data']}))
comm.on_close(lambda msg: closed.append(msg))
"""
    )
    [opened] = [m for m in out if m["msg_type"] == "comm_open"]
    comm_id = opened["content"]["comm_id"]
    assert opened["content"]["target_name"] == "my_widget"
    assert opened["content"]["data"] == {"value": 1}
    assert kernel.evaluate(
        "[comm.comm_id, comm.target_name, comm.kernel is get_ipython().kernel]"
    ) == [
        comm_id,
        "my_widget",
        True,
    ]

    # frontend -> kernel -> frontend; the reply's parent is the frontend's comm_msg
    msg_id = kernel.send("comm_msg", {"comm_id": comm_id, "data": {"hello": "kernel"}})
    [echo] = [m for m in kernel.collect(msg_id) if m["msg_type"] == "comm_msg"]
    assert echo["content"] == {"comm_id": comm_id, "data": {"echo": {"hello": "kernel"}}}
    assert echo["parent_header"]["msg_id"] == msg_id

    out = kernel.execute("comm.send({'action': 'update', 'value': 42})")
    assert comm_msgs(out) == [{"action": "update", "value": 42}]

    out = kernel.execute("comm.close({'action': 'cleanup'}); comm.close()")
    assert comm_msgs(out, "comm_close") == [{"action": "cleanup"}]  # once
    # a kernel-side close unregisters; on_close is for closes from outside
    assert kernel.evaluate("[comm.comm_id in mgr.comms, closed]") == [False, []]


REGISTER_TARGET = """
import sys, types
state = {'value': 0}
def my_target(comm, open_msg):
    comm.send({'status': 'ready', 'opened_with': open_msg['content']['data']})
    def on_msg(msg):
        data = msg['content']['data']
        if data['action'] == 'get_state':
            comm.send({'state': state})
        elif data['action'] == 'set_value':
            state['value'] = data['value']
            comm.send({'ok': True, 'value': state['value']})
    comm.on_msg(on_msg)
mgr.register_target('my_target', my_target)
targets_mod = types.ModuleType('my_targets')
targets_mod.handler = my_target
sys.modules['my_targets'] = targets_mod
mgr.register_target('by_name', 'my_targets.handler')
"""


def test_register_target_answers_frontend_opened_comm(kernel: KernelDriver) -> None:
    kernel.execute(REGISTER_TARGET)
    for target in ("my_target", "by_name"):
        comm_id = kernel.open_comm(target, {"hello": 1})
        assert comm_msgs(kernel.last_open) == [{"status": "ready", "opened_with": {"hello": 1}}]
        out = kernel.comm_msg(comm_id, {"action": "set_value", "value": 5})
        assert comm_msgs(out) == [{"ok": True, "value": 5}]
        out = kernel.comm_msg(comm_id, {"action": "get_state"})
        assert comm_msgs(out) == [{"state": {"value": 5}}]
        assert kernel.evaluate(f"mgr.get_comm({comm_id!r}).target_name") == target
        kernel.request("comm_close", {"comm_id": comm_id, "data": {}})
        assert kernel.evaluate(f"mgr.get_comm({comm_id!r}) is None")

    # unregister_target: later opens are closed back
    kernel.execute("mgr.unregister_target('my_target', my_target)")
    comm_id = kernel.open_comm("my_target")
    closes = [m for m in kernel.last_open if m["msg_type"] == "comm_close"]
    assert [m["content"]["comm_id"] for m in closes] == [comm_id]
    assert kernel.evaluate(f"{comm_id!r} in mgr.comms") is False


SLIDER = """
class Slider:
    def __init__(self, value=0):
        self._value = value
        self.observed = []
        self.comm = Comm(target_name='slider', data={'value': value})
        self.comm.on_msg(self._on_frontend_change)

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, value):
        self._value = value
        self.comm.send({'value': value})

    def _on_frontend_change(self, msg):
        self._value = msg['content']['data']['value']
        self.observed.append(self._value)

slider = Slider(3)
"""


def test_slider_like_object(kernel: KernelDriver) -> None:
    out = kernel.execute(SLIDER)
    [opened] = [m["content"] for m in out if m["msg_type"] == "comm_open"]
    assert (opened["target_name"], opened["data"]) == ("slider", {"value": 3})
    assert comm_msgs(kernel.execute("slider.value = 4")) == [{"value": 4}]
    kernel.comm_msg(opened["comm_id"], {"value": 9})
    assert kernel.evaluate("[slider.value, slider.observed]") == [9, [9]]


def test_listing_get_comm_and_comm_info(kernel: KernelDriver) -> None:
    kernel.execute("many = [Comm(target_name='many', data={'i': i}) for i in range(3)]")
    ids = kernel.evaluate("[c.comm_id for c in many]")
    assert kernel.evaluate(
        "sorted(k for k, c in mgr.comms.items() if c.target_name == 'many')"
    ) == (sorted(ids))
    assert kernel.evaluate(f"mgr.get_comm({ids[0]!r}) is many[0]")
    assert kernel.evaluate("mgr.get_comm('no-such-id') is None")
    kernel.execute("many[0].send({'n': 1}); many[0].send({'n': 2})")
    kernel.execute(
        "mgr.register_target('pong', lambda c, m: c.on_msg(lambda msg: c.send({'pong': 1})))"
    )
    frontend_id = kernel.open_comm("pong")
    kernel.comm_msg(frontend_id, {"ping": 1})

    reply = kernel.reply(kernel.send("comm_info_request", {"target_name": "many"}))
    assert reply["content"]["status"] == "ok"
    comms = reply["content"]["comms"]
    assert set(comms) == set(ids)
    first = comms[ids[0]]
    assert set(first) == {
        "target_name",
        "target_module",
        "origin",
        "opened_at",
        "last_activity",
        "messages",
    }
    assert (first["target_name"], first["target_module"], first["origin"]) == (
        "many",
        None,
        "kernel",
    )
    assert first["messages"] == {"to_kernel": 0, "from_kernel": 3}  # open + 2 sends
    assert ISO_UTC.match(first["opened_at"]) and ISO_UTC.match(first["last_activity"])
    assert first["last_activity"] >= first["opened_at"]

    # unfiltered, over the control channel too
    msg_id = kernel.send("comm_info_request", {}, channel="control")
    comms = kernel.reply(msg_id, channel="control")["content"]["comms"]
    assert set(ids) | {frontend_id} <= set(comms)
    assert comms[frontend_id]["origin"] == "frontend"
    # open + ping in, pong out
    assert comms[frontend_id]["messages"] == {"to_kernel": 2, "from_kernel": 1}


def test_iopub_topic_and_parent(kernel: KernelDriver) -> None:
    """Kernel comm messages go out with topic ``comm-<id>`` (the server subscribes to it)."""
    sub = kernel.km.connect_iopub()
    session = Session(key=kernel.session.key)  # the client's own has seen these signatures
    try:
        # slow joiner: wait until our subscription sees the kernel's traffic
        for _ in range(50):
            kernel.execute("pass")
            if sub.poll(200):
                break
        else:
            raise AssertionError("iopub subscription never connected")
        out = kernel.execute("t = Comm(target_name='topic'); t.send({'x': 1}); t.close()")
        comm_id = next(m["content"]["comm_id"] for m in out if m["msg_type"] == "comm_open")
        seen = {}
        while len(seen) < 3 and sub.poll(5000):
            frames = sub.recv_multipart()
            idents, msg_frames = session.feed_identities(frames)
            msg = session.deserialize(msg_frames)
            if msg["msg_type"].startswith("comm_") and msg["content"]["comm_id"] == comm_id:
                seen[msg["msg_type"]] = (idents, msg["parent_header"]["msg_type"])
        expected = ([f"comm-{comm_id}".encode()], "execute_request")
        assert seen == dict.fromkeys(("comm_open", "comm_msg", "comm_close"), expected)
    finally:
        sub.close(linger=0)


def test_close_all_comms_at_shutdown() -> None:
    kd = start_kernel(EXTENSION_ARG)
    try:
        out = kd.execute(
            """
import atexit, comm
from jupyter_comm_ext.kernel import Comm
mgr = comm.get_comm_manager()
open_comms = [Comm(target_name='at_exit') for _ in range(3)]
def close_all():
    for c in list(mgr.comms.values()):
        c.close({'reason': 'shutdown'})
atexit.register(close_all)
"""
        )
        ids = {m["content"]["comm_id"] for m in out if m["msg_type"] == "comm_open"}
        kd.kc.shutdown()
        closed = set()
        while closed != ids:
            msg = kd.wait_iopub(of_type("comm_close"))
            assert msg["content"]["data"] == {"reason": "shutdown"}
            closed.add(msg["content"]["comm_id"])
    finally:
        kd.close()
