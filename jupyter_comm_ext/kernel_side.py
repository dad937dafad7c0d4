"""Opt-in: the IPython kernels this server starts load ``jupyter_comm_ext.kernel``.

The kernel side releases the ipywidgets objects of comms closed from outside, which stock
ipywidgets keeps in ``Widget.widgets`` forever. It is loaded the way IPython loads any
extension: one more option on the kernel's command line. The server builds every kernel's
command from its kernel spec, so that is where the option goes: kernel specs are read
through ``KernelSpecManager.kernel_spec_class``, a class made for customizing them.
"""

from __future__ import annotations

import typing as t

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from traitlets import Bool
from traitlets.config import LoggingConfigurable

#: extensions loaded on top of the configured ones (the user's ``IPKernelApp.extensions``
#: stay as they are); a kernel without the package logs a warning and runs on.
KERNEL_ARG = "--IPKernelApp.extra_extensions=jupyter_comm_ext.kernel"
#: how a kernel command names ipykernel (``python -m ipykernel_launcher -f ...``); other
#: kernels, Python ones included, would refuse an IPython option
IPYKERNEL_MODULES = frozenset({"ipykernel", "ipykernel_launcher"})


def runs_ipykernel(argv: t.Sequence[str]) -> bool:
    """Whether a kernel command runs ipykernel."""
    return any(arg in IPYKERNEL_MODULES for arg in argv)


class CommKernelSpec(KernelSpec):
    """A kernel spec whose ipykernel command also loads the kernel side."""

    def __init__(self, **kwargs: t.Any) -> None:
        super().__init__(**kwargs)
        if runs_ipykernel(self.argv) and KERNEL_ARG not in self.argv:
            self.argv = [*self.argv, KERNEL_ARG]


class CommKernelSide(LoggingConfigurable):
    """Whether the server's IPython kernels load the kernel side."""

    enabled = Bool(
        False,
        config=True,
        help="""Load jupyter_comm_ext.kernel into the IPython kernels this server starts
        (their kernel spec's command gets --IPKernelApp.extra_extensions). Then a widget
        whose comm is closed from outside, by finishing it here or from a frontend, leaves
        the kernel's Widget.widgets and its memory is freed; without it, closing frees the
        comm but the kernel keeps the widget. Kernels started before the server keep what
        they have (use %load_ext jupyter_comm_ext.kernel in them).""",
    )

    def apply(self, kernel_spec_manager: KernelSpecManager | None) -> None:
        """Make ``kernel_spec_manager`` add the option to ipykernel specs, if enabled."""
        if not self.enabled or kernel_spec_manager is None:
            return
        current = kernel_spec_manager.kernel_spec_class
        if issubclass(current, CommKernelSpec):
            return
        if current is KernelSpec:
            kernel_spec_manager.kernel_spec_class = CommKernelSpec
        else:  # a spec class configured by the user keeps its behaviour, ours comes first
            name, bases = f"Comm{current.__name__}", (CommKernelSpec, current)
            composed = type(name, bases, {"__module__": __name__})
            kernel_spec_manager.kernel_spec_class = t.cast("type[KernelSpec]", composed)
        self.log.info("IPython kernels started from now on load jupyter_comm_ext.kernel")
