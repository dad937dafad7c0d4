"""Protocol edge cases in a real kernel, and where we do better than ipykernel's comms."""

from __future__ import annotations

from .kernel_driver import KernelDriver, of_type

CAPTURE = """
import gc, logging, threading
if 'records' not in globals():
    class Capture(logging.Handler):
        def emit(self, record):
            self.format(record)
            records.append([record.levelname, record.getMessage(), record.exc_text or ''])
    records = []
    capture = Capture(level=logging.DEBUG)
    for name in ('Comm', 'ipykernel.comm', 'IPKernelApp.comm'):
        logging.getLogger(name).addHandler(capture)
        logging.getLogger(name).setLevel(logging.DEBUG)
records.clear()
"""


def streams(out: list[dict]) -> list[str]:
    return [m["content"]["text"] for m in out if m["msg_type"] == "stream"]


def take_records(kd: KernelDriver) -> list[list[str]]:
    return kd.evaluate("[records[:], records.clear()][0]")


def test_unknown_comm_id_one_debug_log_nothing_on_iopub(kernel: KernelDriver) -> None:
    kernel.execute(CAPTURE)
    out = kernel.request("comm_msg", {"comm_id": "no-such-id", "data": {}})
    out += kernel.request("comm_close", {"comm_id": "no-such-id", "data": {}})
    out += kernel.request("comm_msg", {"data": {}})  # malformed: no comm_id at all
    assert out == []  # no stream (stderr) output, no error, no reply
    records = take_records(kernel)
    assert [r[:2] for r in records] == [
        ["DEBUG", "No such comm: no-such-id"],
        ["DEBUG", "No such comm: no-such-id"],
        ["DEBUG", "No such comm: None"],
    ]
    assert not [m for m in kernel.stray if m["msg_type"] == "stream"]


def test_reference_logs_unknown_comm_twice_into_the_notebook(plain_kernel: KernelDriver) -> None:
    """The flaw ours fixes (previous test): stock ipykernel, same message."""
    out = plain_kernel.request("comm_msg", {"comm_id": "no-such-id", "data": {}})
    plain_kernel.execute("pass")  # the router thread's stderr output flushes with this
    texts = streams(out + plain_kernel.stray)
    assert any("No such comm: no-such-id" in text for text in texts)
    # count them (a handler of our own keeps them out of the notebook from now on)
    plain_kernel.execute(CAPTURE)
    plain_kernel.request("comm_msg", {"comm_id": "no-such-id", "data": {}})
    records = take_records(plain_kernel)
    assert [r[:2] for r in records].count(["WARNING", "No such comm: no-such-id"]) == 2


def test_unknown_target_and_raising_target_are_closed_back(kernel: KernelDriver) -> None:
    kernel.execute(CAPTURE + "mgr.register_target('broken', lambda comm, msg: 1 / 0)")
    for target, logged in [
        ("not-registered", "No such comm target registered: not-registered"),
        ("broken", "Exception opening comm with target: broken"),
    ]:
        comm_id = kernel.open_comm(target)
        closes = [m for m in kernel.last_open if m["msg_type"] == "comm_close"]
        assert [m["content"]["comm_id"] for m in closes] == [comm_id]
        assert streams(kernel.last_open) == []
        [record] = take_records(kernel)
        assert record[:2] == ["ERROR", logged]
        assert kernel.evaluate(f"{comm_id!r} in mgr.comms") is False
    assert "ZeroDivisionError" in record[2]  # the traceback of the raising target


def test_callback_errors_are_logged_and_contained(kernel: KernelDriver) -> None:
    out = kernel.execute(
        CAPTURE
        + """
bad = Comm(target_name='bad')
bad.on_msg(lambda msg: {}['missing-key'])
bad.on_close(lambda msg: [][1])
"""
    )
    comm_id = next(m["content"]["comm_id"] for m in out if m["msg_type"] == "comm_open")
    out = kernel.request("comm_msg", {"comm_id": comm_id, "data": {}})
    out += kernel.request("comm_close", {"comm_id": comm_id, "data": {}})
    assert out == []  # nothing reaches the frontend: no error, no stderr
    (msg_level, msg_text, msg_tb), (close_level, close_text, close_tb) = take_records(kernel)
    assert (msg_level, msg_text) == ("ERROR", f"Exception in comm_msg for {comm_id}")
    assert "KeyError: 'missing-key'" in msg_tb and "Traceback" in msg_tb
    assert (close_level, close_text) == ("ERROR", f"Exception in comm_close for {comm_id}")
    assert "IndexError" in close_tb
    # the kernel loop is fine and the comm is gone; closing it now sends nothing
    assert kernel.evaluate(f"{comm_id!r} in mgr.comms") is False
    assert not [m for m in kernel.execute("bad.close()") if m["msg_type"] == "comm_close"]


def test_garbage_collected_comm_is_closed(kernel: KernelDriver) -> None:
    out = kernel.execute("dropped = Comm(target_name='dropped'); mgr.unregister_comm(dropped)")
    comm_id = next(m["content"]["comm_id"] for m in out if m["msg_type"] == "comm_open")
    out = kernel.execute("del dropped; gc.collect()")
    assert [m["content"]["comm_id"] for m in out if m["msg_type"] == "comm_close"] == [comm_id]
    assert streams(out) == []


def test_send_from_threads(kernel: KernelDriver) -> None:
    out = kernel.execute(
        """
threaded = Comm(target_name='threads')
def worker(n):
    for i in range(50):
        threaded.send({'n': n, 'i': i})
workers = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
for w in workers: w.start()
for w in workers: w.join(10)
"""
    )
    comm_id = next(m["content"]["comm_id"] for m in out if m["msg_type"] == "comm_open")
    got = [m["content"]["data"] for m in out if m["msg_type"] == "comm_msg"]
    while len(got) < 200:  # sends from threads may carry another parent
        got.append(kernel.wait_iopub(of_type("comm_msg", comm_id))["content"]["data"])
    assert sorted((d["n"], d["i"]) for d in got) == [(n, i) for n in range(4) for i in range(50)]
    # each thread's messages arrive in the order it sent them
    for n in range(4):
        assert [d["i"] for d in got if d["n"] == n] == list(range(50))


def test_buffers_round_trip(kernel: KernelDriver) -> None:
    out = kernel.execute(
        """
buffered = Comm(target_name='buffers', data={}, buffers=[b'open', memoryview(b'view')])
buffered.on_msg(lambda msg: buffered.send({'n': len(msg['buffers'])}, buffers=msg['buffers']))
"""
    )
    [opened] = [m for m in out if m["msg_type"] == "comm_open"]
    assert [bytes(b) for b in opened["buffers"]] == [b"open", b"view"]
    payload = [bytes(range(256)), b"", b"\x00" * 100_000]
    out = kernel.comm_msg(opened["content"]["comm_id"], {"x": 1}, buffers=payload)
    [echo] = [m for m in out if m["msg_type"] == "comm_msg"]
    assert echo["content"]["data"] == {"n": 3}
    assert [bytes(b) for b in echo["buffers"]] == payload


def test_metadata_and_target_module_carried(kernel: KernelDriver) -> None:
    out = kernel.execute(
        "md = Comm(target_name='md', target_module='my.module', metadata={'version': '2.1'})\n"
        "md.send({'a': 1}, metadata={'k': 'v'})"
    )
    opened, sent = (m for m in out if m["msg_type"].startswith("comm_"))
    assert opened["content"]["target_module"] == "my.module"
    assert opened["metadata"] == {"version": "2.1"}
    assert sent["metadata"] == {"k": "v"}
    info = kernel.reply(kernel.send("comm_info_request", {"target_name": "md"}))
    assert [c["target_module"] for c in info["content"]["comms"].values()] == ["my.module"]


def test_comm_info_on_control_while_busy(kernel: KernelDriver) -> None:
    kernel.execute("busy_comm = Comm(target_name='busy')")
    busy_id = kernel.kc.execute("import time; time.sleep(60)")
    kernel.wait_iopub(  # the cell is running
        lambda m: m["msg_type"] == "execute_input" and m["parent_header"]["msg_id"] == busy_id
    )
    msg_id = kernel.send("comm_info_request", {"target_name": "busy"}, channel="control")
    reply = kernel.reply(msg_id, channel="control", timeout=10)
    assert [c["target_name"] for c in reply["content"]["comms"].values()] == ["busy"]
    kernel.km.interrupt_kernel()
    assert kernel.reply(busy_id)["content"]["status"] == "error"  # KeyboardInterrupt
