"""`python -m jupyter_comm_ext.hub`: run the service (JupyterHub starts it as a managed service)."""

from .app import main

main()
