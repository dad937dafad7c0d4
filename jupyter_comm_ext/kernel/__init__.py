"""Kernel-side comms: ipykernel's Comm/CommManager API with per-comm introspection.

``%load_ext jupyter_comm_ext.kernel`` (or ``install()``) makes them the running kernel's.
"""

from .comm import Comm
from .installer import install, load_ipython_extension
from .manager import CommManager

__all__ = ["Comm", "CommManager", "install", "load_ipython_extension"]
