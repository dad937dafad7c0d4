"""Authorizers for a server that may look at comms but not close them.

A server subprocess finds them by name (this folder is on its PYTHONPATH):
`--ServerApp.authorizer_class=authorizers.ReadOnlyAuthorizer`.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth import Authorizer


class ReadOnlyAuthorizer(Authorizer):
    """May look at comms, may not close them."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return not (resource == "comms" and action == "write")


class CommsWriteDeniedAuthorizer(Authorizer):
    """Says yes when JupyterLab asks `/api/me` whether the user may close comms, and no to
    the close itself: a permission taken away after the page loaded."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        if resource == "comms" and action == "write":
            return type(handler).__name__ == "IdentityHandler"
        return True
