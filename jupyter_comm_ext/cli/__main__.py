"""`python -m jupyter_comm_ext.cli`, for when `jupyter-comms` is not on PATH."""

from . import main

main()
