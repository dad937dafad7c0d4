"""An ipykernel whose IOPub never drops messages: the benchmarks' kernel.

ipykernel's IOPub is a PUB socket with the default high-water mark of 1000 messages: a
kernel that sends faster than the server reads drops the excess silently, and a flood
would measure drops, not throughput.  This launcher sets SNDHWM=0 (no limit) on the
context before ipykernel creates IOPub, so every message reaches every subscriber;
otherwise it is `python -m ipykernel_launcher`.  Every server in a benchmark run, stock or
not, gets the same kernel.
"""

from __future__ import annotations

import zmq
from ipykernel.kernelapp import IPKernelApp

_init_iopub = IPKernelApp.init_iopub


def init_iopub(self: IPKernelApp, context: zmq.Context) -> None:
    context.setsockopt(zmq.SNDHWM, 0)  # a default for sockets created from now on
    _init_iopub(self, context)


IPKernelApp.init_iopub = init_iopub  # type: ignore[method-assign]

if __name__ == "__main__":
    IPKernelApp.launch_instance()
