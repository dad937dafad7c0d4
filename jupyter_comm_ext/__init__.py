"""jupyter_comm_ext: see, count and close kernel comms from the Jupyter server."""

__version__ = "0.1.0"
