"""`jupyter comms`: list, count and close the comms of a running Jupyter server.

`client` finds the server and speaks the REST API; `app` is the command line on top.
"""

from .app import CommsApp, main
from .client import Exit

__all__ = ["CommsApp", "Exit", "main"]
