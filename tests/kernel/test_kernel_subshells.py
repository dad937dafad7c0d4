"""ipykernel 7 subshells: its shell router asks the comm where a frontend's reply should run.

The router calls ``kernel.comm_manager.get_comm(id)._reply_subshell_for(data, default)``
for every comm_msg/comm_close. Ours routes a reply to the subshell that last published
on the comm (or that sent the matching ``{"content": {"id": ...}}`` request), and
otherwise to the subshell the frontend chose.
"""

from __future__ import annotations

from .kernel_driver import KernelDriver


def run_in_subshell(kd: KernelDriver, subshell_id: str, code: str) -> None:
    msg = kd.session.msg("execute_request", {"code": code, "silent": False})
    msg["header"]["subshell_id"] = subshell_id
    kd.kc.shell_channel.send(msg)
    msg_id = msg["header"]["msg_id"]
    kd.collect(msg_id)
    assert kd.reply(msg_id)["content"]["status"] == "ok"


def test_replies_routed_to_the_publishing_subshell(kernel: KernelDriver) -> None:
    msg_id = kernel.send("create_subshell_request", {}, channel="control")
    subshell_id = kernel.reply(msg_id, channel="control")["content"]["subshell_id"]
    subshell = f"subshell-{subshell_id}"
    try:
        run_in_subshell(
            kernel,
            subshell_id,
            "import threading\n"
            "rpc_threads = []\n"
            "rpc = Comm(target_name='rpc')\n"
            "rpc.on_msg(lambda m: rpc_threads.append(threading.current_thread().name))\n"
            "rpc.send({'content': {'id': 'r1'}})",
        )
        comm_id = kernel.evaluate("rpc.comm_id")
        kernel.execute("rpc.send({'from': 'main'})")  # now the last publisher is main

        kernel.comm_msg(comm_id, {"content": {"id": "r1"}})  # the answer to r1
        kernel.comm_msg(comm_id, {"other": 1})
        run_in_subshell(kernel, subshell_id, "rpc.send({'again': 1})")
        kernel.comm_msg(comm_id, {"other": 2})
        assert kernel.evaluate("rpc_threads") == [subshell, "MainThread", subshell]
    finally:
        msg_id = kernel.send(
            "delete_subshell_request", {"subshell_id": subshell_id}, channel="control"
        )
        kernel.reply(msg_id, channel="control")
