"""Kernel watchers: one per kernel, over ZMQ (`iopub`) or a gateway's websocket (`gateway`)."""

from .base import KernelUnreachable, KernelWatcher
from .gateway import GatewayKernelWatcher, is_remote
from .iopub import IOPubWatcher

__all__ = [
    "GatewayKernelWatcher",
    "IOPubWatcher",
    "KernelUnreachable",
    "KernelWatcher",
    "is_remote",
]
