"""A widget the kernel updates on its own, and a user who drags a slider: the two sides of
comm activity, for tests/test_activity.py and tests/test_hub_activity.py."""

from __future__ import annotations

import asyncio
import time

from wsclient import KernelWS

#: a slider the kernel moves on its own, from a thread, every 0.5 s (a clock, a progress poll)
TIMER = """
import threading, time, ipywidgets
slider = ipywidgets.IntSlider()
def _tick():
    while True:
        time.sleep(0.5)
        slider.value += 1
threading.Thread(target=_tick, daemon=True).start()
"""


async def slider_id(ws: KernelWS) -> str:
    """The comm id of TIMER's slider."""
    return str((await ws.evaluate("slider.comm.comm_id")).strip("'"))


async def drag(ws: KernelWS, comm_id: str, every: float, moved: list[float]) -> None:
    """Move the slider as a frontend does (a comm_msg `update`) every `every` seconds, until
    cancelled; the time of each move is appended to `moved`."""
    while True:
        moved.append(time.time())
        data = {"method": "update", "state": {"value": -len(moved)}, "buffer_paths": []}
        await ws.send("comm_msg", {"comm_id": comm_id, "data": data})
        await asyncio.sleep(every)
