"""Installing into a running ipykernel: hooks, handlers, adoption, extension loading."""

from __future__ import annotations

from .kernel_driver import KernelDriver, of_type, start_kernel

PRE_INSTALL = """
import comm, ipywidgets, logging
records = []
class Capture(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
capture = Capture(level=logging.DEBUG)
k = get_ipython().kernel
old_manager = comm.get_comm_manager()
pre = comm.create_comm(target_name='pre', data={'n': 1})
pre_closed = []
pre.on_msg(lambda msg: pre.send({'echo': msg['content']['data']}))
pre.on_close(lambda msg: pre_closed.append(msg['content']['data']))
pre_slider = ipywidgets.IntSlider()
try:
    old_manager.kernel
    reference_kernel_error = None
except Exception as e:
    reference_kernel_error = type(e).__name__
"""

INSTALL = """
import jupyter_comm_ext.kernel as jce
m = jce.install()
assert jce.install() is m
%load_ext jupyter_comm_ext.kernel
assert jce.install() is m
for name in ('Comm', 'IPKernelApp.comm', 'jupyter_comm_ext.kernel'):
    logging.getLogger(name).addHandler(capture)
    logging.getLogger(name).setLevel(logging.DEBUG)
"""


def test_install_into_running_kernel_adopts_and_takes_over(plain_kernel: KernelDriver) -> None:
    kd = plain_kernel
    kd.execute(PRE_INSTALL)
    pre_id = kd.evaluate("pre.comm_id")
    slider_id = kd.evaluate("pre_slider.model_id")
    # the reference manager's kernel trait is never set
    assert kd.evaluate("reference_kernel_error") == "TraitError"

    kd.execute(INSTALL)
    checks = {
        "get_comm_manager": "comm.get_comm_manager() is m",
        "create_comm": "type(comm.create_comm(target_name='probe', data={})) is jce.Comm",
        "kernel.comm_manager": "k.comm_manager is m",
        "manager.kernel": "m.kernel is k and comm.get_comm_manager().kernel is k",
        "shell": "all(k.shell_handlers[t].__self__ is m for t in "
        "('comm_open', 'comm_msg', 'comm_close', 'comm_info_request'))",
        "control": "k.control_handlers['comm_info_request'].__self__ is m",
        "adopted comms": f"set(m.comms) >= {{{pre_id!r}, {slider_id!r}}} and not old_manager.comms",
        "adopted targets": "{'jupyter.widget', 'jupyter.widget.control'} <= set(m.targets)",
    }
    assert {name: kd.evaluate(expr) for name, expr in checks.items()} == dict.fromkeys(checks, True)

    # a comm opened before install still receives (routed by ipykernel's shell router,
    # which looks comms up in kernel.comm_manager) and answers
    out = kd.comm_msg(pre_id, {"x": 1})
    assert [m["content"]["data"] for m in out if m["msg_type"] == "comm_msg"] == [
        {"echo": {"x": 1}}
    ]
    # and so does a widget created before install
    kd.comm_msg(slider_id, {"method": "update", "state": {"value": 5}, "buffer_paths": []})
    assert kd.evaluate("pre_slider.value") == 5
    assert kd.evaluate("[r for r in records if 'No such comm' in r]") == []

    # frontend closes the adopted comm: on_close runs, it is unregistered
    kd.request("comm_close", {"comm_id": pre_id, "data": {"bye": True}})
    assert kd.evaluate("pre_closed") == [{"bye": True}]
    assert kd.evaluate(f"{pre_id!r} in m.comms") is False

    # comm_info lists the adopted widget with the introspection keys
    info = kd.reply(kd.send("comm_info_request", {}))["content"]["comms"]
    assert info[slider_id]["target_name"] == "jupyter.widget"
    assert info[slider_id]["origin"] == "kernel"


def test_extension_config_installs_at_startup(kernel: KernelDriver) -> None:
    """``--IPKernelApp.extensions=jupyter_comm_ext.kernel`` (the ``kernel`` fixture)."""
    assert kernel.evaluate(
        "type(get_ipython().kernel.comm_manager).__module__ == 'jupyter_comm_ext.kernel.manager'"
        " and comm.get_comm_manager() is get_ipython().kernel.comm_manager"
    )
    # libraries imported afterwards register their targets with ours
    kernel.execute("import ipywidgets")
    assert kernel.evaluate("'jupyter.widget' in mgr.targets")
    # a comm made through the comm package hook is ours, with a kernel
    out = kernel.execute("c = comm.create_comm(target_name='hooked')")
    assert [m["content"]["target_name"] for m in out if of_type("comm_open")(m)] == ["hooked"]
    assert kernel.evaluate("type(c).__module__ == 'jupyter_comm_ext.kernel.comm'")
    assert kernel.evaluate("c.kernel is get_ipython().kernel")
    kernel.execute("c.close()")


def test_first_comm_installs_in_a_plain_kernel() -> None:
    kd = start_kernel()
    try:
        out = kd.execute(
            "import comm\n"
            "from jupyter_comm_ext.kernel import Comm, CommManager\n"
            "c = Comm(target_name='auto')"
        )
        assert [m["msg_type"] for m in out] == ["execute_input", "comm_open"]
        assert kd.evaluate(
            "isinstance(get_ipython().kernel.comm_manager, CommManager)"
            " and comm.get_comm_manager().get_comm(c.comm_id) is c"
        )
    finally:
        kd.close()
