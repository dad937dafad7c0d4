"""jupyter_comm_ext: see, count and close kernel comms from the Jupyter server."""

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import CommExtensionApp

    return [{"module": "jupyter_comm_ext", "app": CommExtensionApp}]
