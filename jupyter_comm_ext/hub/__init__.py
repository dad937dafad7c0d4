"""The JupyterHub service: every user's comms in one place (`python -m jupyter_comm_ext.hub`).

A separate process that talks only HTTP: to the Hub's REST API (which servers run) and to
each single-user server's `/api/comms` routes through the Hub's proxy, with the service's
own token. It imports nothing of the server extension but the comm model's field names.
"""
