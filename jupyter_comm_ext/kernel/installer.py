"""Put our CommManager into a running kernel and behind the ``comm`` package hooks."""

from __future__ import annotations

import logging
import sys
import typing as t

import comm as comm_package

from .comm import Comm
from .manager import CommManager

_manager: CommManager | None = None

COMM_MSG_TYPES = ("comm_open", "comm_msg", "comm_close", "comm_info_request")


def install(kernel: t.Any = None) -> CommManager:
    """Make our manager the kernel's comm manager; idempotent, returns the manager.

    ``kernel`` defaults to the running ipykernel. Comms and targets of the previous
    manager are adopted, so widgets created before keep working. Afterwards:
    ``comm.create_comm``/``comm.get_comm_manager`` return ours, ``kernel.comm_manager``
    is ours (ipykernel's shell router looks comms up there) and so are the shell and
    control handlers for comm messages (control, so a busy kernel answers comm_info).
    """
    global _manager
    if kernel is None:
        kernel = _running_ipykernel()
    current = getattr(kernel, "comm_manager", None)
    if isinstance(current, CommManager):
        manager = current
    else:
        manager = CommManager(kernel, log=_kernel_log(kernel))
        if current is not None:
            manager.adopt(current)
        manager.on_external_close(release_widget)
        kernel.comm_manager = manager
    for msg_type in COMM_MSG_TYPES:
        kernel.shell_handlers[msg_type] = getattr(manager, msg_type)
    control = getattr(kernel, "control_handlers", None)
    if control is not None and "comm_info_request" in control:
        control["comm_info_request"] = manager.comm_info_request
    _manager = manager
    # ours have the same call signatures; the package's annotations name its own classes
    comm_package.create_comm = create_comm  # type: ignore[assignment]
    comm_package.get_comm_manager = get_comm_manager  # type: ignore[assignment]
    return manager


def load_ipython_extension(ipython: t.Any) -> None:
    """``%load_ext jupyter_comm_ext.kernel`` and ``IPKernelApp.extensions``."""
    kernel = getattr(ipython, "kernel", None)
    if kernel is None:
        raise RuntimeError("jupyter_comm_ext.kernel needs an IPython kernel (no kernel here)")
    install(kernel)


def create_comm(*args: t.Any, **kwargs: t.Any) -> Comm:
    """The ``comm.create_comm`` hook once installed."""
    return Comm(*args, **kwargs)


def get_comm_manager() -> CommManager | None:
    """The ``comm.get_comm_manager`` hook once installed."""
    return _manager


def release_widget(comm: t.Any, msg: dict[str, t.Any]) -> None:
    """External-close hook: let go of the ipywidgets object bound to ``comm``.

    Without it a force-closed widget stays in ``Widget.widgets`` (and alive) forever.
    """
    widget_module = sys.modules.get("ipywidgets.widgets.widget")
    if widget_module is None:
        return
    widget = widget_module._instances.get(comm.comm_id)
    if widget is not None and widget.comm is comm:
        widget.close()  # drops it from _instances; comm.close() is a no-op by now
    if widget_module.Widget._control_comm is comm:
        widget_module.Widget._control_comm = None


def _running_ipykernel() -> t.Any:
    try:
        from ipykernel.kernelbase import Kernel
    except ImportError:
        Kernel = None  # type: ignore[assignment,misc]
    if Kernel is None or not Kernel.initialized():
        raise RuntimeError(
            "no running ipykernel: use install(kernel), or Comm(..., manager=CommManager(kernel))"
        )
    return Kernel.instance()


def _kernel_log(kernel: t.Any) -> logging.Logger | None:
    """A child of the kernel's logger: its handler writes to the process's real stderr.

    Our own logger would fall back to ``sys.stderr``, which ipykernel redirects to the
    notebook (the reference's log lines show up as red stream output there).
    """
    log = getattr(kernel, "log", None)
    return log.getChild("comm") if isinstance(log, logging.Logger) else None
