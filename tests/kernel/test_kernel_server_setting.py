"""`CommKernelSide.enabled`: the kernels a real server starts load the kernel side, and
finishing a closed slider's left-behind models through the server empties Widget.widgets."""

from __future__ import annotations

import ast
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from traitlets.config import Config
from waiting import wait_for

from jupyter_comm_ext.kernel_side import KERNEL_ARG, CommKernelSide

KernelClient = Any
#: the module of the kernel's comm manager, read from inside the kernel
MANAGER_MODULE = "type(get_ipython().kernel.comm_manager).__module__"
SETUP = """
import gc
import ipywidgets
from ipywidgets.widgets.widget import _instances
baseline = len(_instances)
"""


@pytest.fixture
def enabled(request: pytest.FixtureRequest) -> bool:
    """The setting: on, unless a test parametrizes it."""
    return bool(getattr(request, "param", True))


@pytest.fixture
def jp_server_config(jp_server_config: Config, enabled: bool) -> Config:
    if enabled:
        jp_server_config.CommKernelSide.enabled = True
    return jp_server_config


@asynccontextmanager
async def started_kernel(
    jp_serverapp: Any, start_kernel: Callable[[], Awaitable[str]]
) -> AsyncIterator[tuple[str, KernelClient]]:
    """(kernel id, a client of the server's kernel manager): a real kernel the server started."""
    kernel_id = await start_kernel()
    client = jp_serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        yield kernel_id, client
    finally:
        client.stop_channels()


async def evaluate(client: KernelClient, expr: str) -> Any:
    """The JSON value of ``expr`` in the kernel."""
    code = f"__import__('json').dumps({expr})"
    reply = await client.execute_interactive("", user_expressions={"v": code}, timeout=30)
    value = reply["content"]["user_expressions"]["v"]
    assert value["status"] == "ok", value
    return json.loads(ast.literal_eval(value["data"]["text/plain"]))


async def execute(client: KernelClient, code: str) -> None:
    reply = await client.execute_interactive(code, timeout=30)
    assert reply["content"]["status"] == "ok", reply["content"]


class Tagged(KernelSpec):
    """A kernel spec class a user configured: it keeps its behaviour."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metadata = {**self.metadata, "tagged": True}


@pytest.mark.parametrize("spec_class", [KernelSpec, Tagged])
def test_only_ipykernel_commands_get_the_option(spec_class: type[KernelSpec]) -> None:
    manager = KernelSpecManager(kernel_spec_class=spec_class)
    CommKernelSide(enabled=True).apply(manager)
    CommKernelSide(enabled=True).apply(manager)  # once is enough
    make = manager.kernel_spec_class
    ipykernel = make(argv=["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    assert ipykernel.argv[-1] == KERNEL_ARG and ipykernel.argv.count(KERNEL_ARG) == 1
    assert make(argv=["xpython", "-f", "{connection_file}"]).argv == [
        "xpython",
        "-f",
        "{connection_file}",
    ]
    assert isinstance(ipykernel, spec_class)
    assert ipykernel.metadata.get("tagged", False) == (spec_class is Tagged)


@pytest.mark.parametrize("enabled", [True, False], ids=["enabled", "default"], indirect=True)
async def test_kernel_side_is_loaded_when_enabled(
    jp_serverapp: Any, start_kernel: Any, fetch_json: Any, enabled: bool
) -> None:
    async with started_kernel(jp_serverapp, start_kernel) as (_, client):
        module = await evaluate(client, MANAGER_MODULE)
    assert module.startswith("jupyter_comm_ext.kernel.") == enabled
    # the kernel spec says so too (the server builds the kernel's command from it)
    spec = (await fetch_json("api", "kernelspecs", "python3"))["spec"]
    assert (KERNEL_ARG in spec["argv"]) == enabled


async def test_finishing_left_behind_models_empties_widget_registry(
    jp_serverapp: Any, start_kernel: Any, fetch_json: Any
) -> None:
    async with started_kernel(jp_serverapp, start_kernel) as (kernel_id, client):
        await execute(client, SETUP)
        code = "s = ipywidgets.IntSlider(); left = [s.layout.model_id, s.style.model_id]"
        await execute(client, code)
        slider = await evaluate(client, "s.model_id")
        await execute(client, "s.close(); del s")

        async def close_seen() -> bool:  # then the server has seen every model open too
            closed = {"kernel_id": kernel_id, "status": "closed"}
            return slider in {m["comm_id"] for m in await fetch_json("api", "comms", params=closed)}

        await wait_for(close_seen, what="the server sees the slider closed")
        widgets = {"kernel_id": kernel_id, "target_name": "jupyter.widget"}
        finished = await fetch_json("api", "comms", method="DELETE", params=widgets)
        assert {m["comm_id"] for m in finished} <= set(await evaluate(client, "left"))

        async def released() -> bool:
            return bool(await evaluate(client, "len(_instances) == baseline"))

        await wait_for(released, what="Widget.widgets back to its baseline")
        assert await evaluate(client, "len(get_ipython().kernel.comm_manager.comms)") == 0
