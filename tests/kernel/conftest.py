"""Fixtures for the kernel side: one real ipykernel per test module."""

from __future__ import annotations

import typing as t

import pytest

from .kernel_driver import EXTENSION_ARG, KernelDriver, start_kernel

SETUP = """
import comm
from jupyter_comm_ext.kernel import Comm
mgr = comm.get_comm_manager()
"""


@pytest.fixture(scope="module")
def kernel() -> t.Iterator[KernelDriver]:
    """One kernel per module with our manager installed through the extension config."""
    driver = start_kernel(EXTENSION_ARG)
    driver.execute(SETUP)
    yield driver
    driver.close()


@pytest.fixture(scope="module")
def plain_kernel() -> t.Iterator[KernelDriver]:
    """One stock ipykernel per module (our manager not installed)."""
    driver = start_kernel()
    yield driver
    driver.close()
