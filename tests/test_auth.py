"""Authentication and authorization: every route goes through the server's Authorizer."""

from __future__ import annotations

import urllib.parse

import pytest
from inprocess import kernel_client, status_of
from jupyter_server.auth.authorizer import AllowAllAuthorizer
from waiting import wait_for


class ReadOnlyComms(AllowAllAuthorizer):
    """May look at comms, may not close them."""

    def is_authorized(self, handler, user, action, resource):
        return not (resource == "comms" and action == "write")


@pytest.fixture
def jp_server_config(jp_server_config, request):
    if request.node.get_closest_marker("read_only"):
        jp_server_config.ServerApp.authorizer_class = ReadOnlyComms
    return jp_server_config


async def open_one_comm(jp_serverapp, fetch_json, start_kernel, target="x"):
    """A kernel with one kernel-opened comm, made without any frontend."""
    kernel_id = await start_kernel()
    async with kernel_client(jp_serverapp, kernel_id) as client:
        await client.execute_interactive(
            f"from comm import create_comm; c = create_comm(target_name={target!r})", timeout=30
        )
    (model,) = await wait_for(lambda: fetch_json("api", "comms"), what="mirrored")
    return model


@pytest.mark.read_only
async def test_read_only_user_cannot_close(jp_serverapp, jp_fetch, fetch_json, start_kernel):
    model = await open_one_comm(jp_serverapp, fetch_json, start_kernel)
    assert (await fetch_json("api", "comms", model["comm_id"]))["status"] == "open"
    code, body = await status_of(jp_fetch, "api", "comms", model["comm_id"], method="DELETE")
    assert code == 403 and body["message"]
    code, _ = await status_of(
        jp_fetch, "api", "comms", method="DELETE", params={"target_name": "x"}
    )
    assert code == 403
    assert (await fetch_json("api", "comms", model["comm_id"]))["status"] == "open"


async def test_unauthenticated_and_xsrf(
    jp_fetch, fetch_json, jp_serverapp, http_server_client, jp_base_url, start_kernel
):
    model = await open_one_comm(jp_serverapp, fetch_json, start_kernel)
    url = f"{jp_base_url}api/comms/{model['comm_id']}"

    # no credentials at all
    for method in ("GET", "DELETE"):
        r = await http_server_client.fetch(url, method=method, raise_error=False)
        assert r.code == 403, (method, r.code)

    # log in with the token as a browser would, and get the cookies
    login = f"{jp_base_url}login"
    r = await http_server_client.fetch(login, raise_error=False)
    cookies = _cookies(r)
    token = jp_serverapp.identity_provider.token
    r = await http_server_client.fetch(
        login,
        method="POST",
        follow_redirects=False,
        raise_error=False,
        body=urllib.parse.urlencode({"password": token, "_xsrf": cookies["_xsrf"]}),
        headers={"Cookie": _cookie_header(cookies)},
    )
    cookies.update(_cookies(r))
    headers = {"Cookie": _cookie_header(cookies)}
    r = await http_server_client.fetch(url, headers=headers, raise_error=False)
    assert r.code == 200  # the cookie works for reading
    r = await http_server_client.fetch(url, method="DELETE", headers=headers, raise_error=False)
    assert r.code == 403  # but a DELETE without the XSRF token is refused
    assert (await fetch_json("api", "comms", model["comm_id"]))["status"] == "open"
    r = await http_server_client.fetch(
        url,
        method="DELETE",
        raise_error=False,
        headers={**headers, "X-XSRFToken": cookies["_xsrf"]},
    )
    assert r.code == 204
    assert (await fetch_json("api", "comms", model["comm_id"]))["status"] == "closed"


def _cookies(response):
    cookies = {}
    for header in response.headers.get_list("Set-Cookie"):
        name, _, rest = header.partition("=")
        cookies[name] = rest.split(";", 1)[0]
    return cookies


def _cookie_header(cookies):
    return "; ".join(f"{k}={v}" for k, v in cookies.items())
