"""What the `test_stock_*` tests do when stock jupyter_server no longer has the bug."""

from __future__ import annotations

import pytest


def upstream_fixed(what: str) -> None:
    """A stock bug a test reproduces is gone: say so (a skip with the reason), do not fail.

    The `test_stock_*` tests document what the extension protects a server against; the
    day jupyter_server fixes one, the suite must stay green and tell.
    """
    import jupyter_server

    pytest.skip(f"no longer reproduced with jupyter_server {jupyter_server.__version__}: {what}")
