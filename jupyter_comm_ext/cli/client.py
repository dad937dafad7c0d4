"""Finding the Jupyter server and talking to the extension's REST API, for `jupyter comms`.

No output here: every failure is a `CommsError` carrying the exit status of its kind, so
the commands decide what to print. HTTP goes through the standard library's `urllib`: a
handful of blocking requests needs no other dependency and no event loop.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from enum import IntEnum
from pathlib import Path
from typing import Any


class Exit(IntEnum):
    """Exit statuses, one per way a command can fail (in `--help` and docs/user/cli.md)."""

    OK = 0
    BUG = 1  # what Python exits with on an uncaught exception
    USAGE = 2  # what argparse exits with for an unknown option
    NO_SERVER = 3
    SEVERAL_SERVERS = 4
    NO_EXTENSION = 5
    NOT_AUTHENTICATED = 6
    NOT_AUTHORIZED = 7
    UNKNOWN_COMM = 8
    SERVER_ERROR = 9
    INTERRUPTED = 130  # what a shell reports for a process ended by SIGINT


EXIT_MEANINGS = {
    Exit.OK: "done",
    Exit.BUG: "a bug in jupyter comms (with a traceback: please report it)",
    Exit.USAGE: "bad command line or filter value (the server's 400 included)",
    Exit.NO_SERVER: "no Jupyter server running, or none answering at --url",
    Exit.SEVERAL_SERVERS: "several servers running: pick one with --url",
    Exit.NO_EXTENSION: "the server does not have jupyter_comm_ext enabled",
    Exit.NOT_AUTHENTICATED: "the server refused the token",
    Exit.NOT_AUTHORIZED: "the server's Authorizer denied this action on comms",
    Exit.UNKNOWN_COMM: "a comm id is unknown or that comm already closed",
    Exit.SERVER_ERROR: "the server failed (5xx), timed out, or answered nonsense",
    Exit.INTERRUPTED: "interrupted (Ctrl-C)",
}


class CommsError(Exception):
    """A failure to report in one line, with the exit status that names its kind."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.code = code


# -- finding the server -------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """Where to send requests, and with what token."""

    url: str  # ends in "/", includes the server's base_url
    token: str
    token_source: str  # said in the error when the token is refused


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def running_servers(runtime_dir: str) -> list[dict[str, Any]]:
    """The info of every server this user runs, from its `jpserver-<pid>.json` file in the
    runtime directory, as `jupyter server list` reads it.

    Read here rather than with jupyter_server's `list_running_servers`: importing
    jupyter_server.serverapp takes seconds (tornado, jupyter_events' schemas), far more than
    a command's whole run. A file whose process is gone is left for `jupyter server list`
    to clean up.
    """
    found = []
    for path in sorted(Path(runtime_dir).glob("jpserver-*.json")):
        try:
            info = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue  # removed meanwhile, or still being written
        if isinstance(info, dict) and isinstance(info.get("pid"), int) and _alive(info["pid"]):
            found.append(info)
    return found


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (ours or not)."""
    if sys.platform == "win32":  # os.kill would end it there
        from jupyter_server.utils import check_pid

        return bool(check_pid(pid))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's
    return True


def find_server(url: str, token: str, token_source: str, runtime_dir: str) -> Server:
    """The server to talk to: `url` if given, else the only one this user runs.

    A token given on the command line or in JUPYTER_TOKEN wins; otherwise the token comes
    from the server's runtime file (for `--url`, from the file whose URL matches, if any).
    """
    from_file = "the server's runtime file"
    if url:
        url = _with_slash(url)
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise CommsError(f"--url must be an http:// or https:// URL, not {url!r}", Exit.USAGE)
        if not token:
            running = running_servers(runtime_dir)
            info = next((i for i in running if _with_slash(i.get("url", "")) == url), {})
            token, token_source = info.get("token", ""), from_file
        return Server(url, token, token_source)
    running = running_servers(runtime_dir)
    if not running:
        raise CommsError(
            f"no Jupyter server is running (no server file in {runtime_dir}); "
            "start one, or pass --url",
            Exit.NO_SERVER,
        )
    if len(running) > 1:
        listing = "".join(f"\n  {i['url']}  (root {i.get('root_dir', '?')})" for i in running)
        raise CommsError(
            f"{len(running)} Jupyter servers are running; pick one with --url:{listing}",
            Exit.SEVERAL_SERVERS,
        )
    (info,) = running
    if info.get("sock"):
        raise CommsError(
            f"the server listens on the UNIX socket {info['sock']}, which this client cannot "
            "use; pass --url of a TCP address",
            Exit.NO_SERVER,
        )
    if not token:
        token, token_source = info.get("token", ""), from_file
    return Server(_with_slash(info["url"]), token, token_source)


# -- HTTP ---------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise CommsError(
                f"the server answered {self.status} with a body that is not JSON",
                Exit.SERVER_ERROR,
            ) from None

    @property
    def message(self) -> str:
        """The `message` of a jupyter_server JSON error, or the HTTP status."""
        try:
            message = json.loads(self.body).get("message")
        except (ValueError, AttributeError):
            message = None
        return str(message) if message else f"HTTP {self.status}"

    def next_link(self) -> str | None:
        """The target of a `Link: <...>; rel="next"` header (RFC 8288), if any."""
        for link in self.headers.get_all("Link") or []:
            for part in link.split(","):
                match = re.fullmatch(r"\s*<([^>]*)>\s*;(.*)", part)
                if match and re.search(r'(^|;)\s*rel="?next"?\s*(;|$)', match.group(2)):
                    return match.group(1)
        return None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """The token rides in a header; a redirect must not carry it somewhere else."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class CommsClient:
    """The extension's routes on one server, with its answers turned into `CommsError`s."""

    def __init__(self, server: Server, timeout: float) -> None:
        self.server = server
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects)
        self._origin = urllib.parse.urlsplit(server.url)[:2]
        self._has_extension = False  # known once a 404 made us ask

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        url = urllib.parse.urljoin(self.server.url, path)
        if query:
            url += "?" + urllib.parse.urlencode(query)
        if urllib.parse.urlsplit(url)[:2] != self._origin:
            raise CommsError(f"the server pointed to another host: {url}", Exit.SERVER_ERROR)
        return url

    def send(self, method: str, url: str) -> Response:
        """One request, whatever its HTTP status; only a failure to get an answer raises."""
        headers = {"Accept": "application/json"}
        if self.server.token:
            headers["Authorization"] = f"token {self.server.token}"
        request = urllib.request.Request(url, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as r:
                return Response(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            with e:
                return Response(e.code, e.headers, e.read())
        except TimeoutError:
            raise CommsError(
                f"{self.server.url} did not answer within {self.timeout:g} s (--timeout)",
                Exit.SERVER_ERROR,
            ) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CommsError(
                f"no Jupyter server answers at {self.server.url} ({reason})", Exit.NO_SERVER
            ) from None

    def call(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        not_found: Exit = Exit.UNKNOWN_COMM,
    ) -> Response:
        """A request that must succeed (2xx); anything else raises, its kind as exit status.

        A 404 is `not_found` (an unknown comm, or a kernel that went away) when the
        extension answers on this server, and NO_EXTENSION when it does not.
        """
        response = self.send(method, path if "://" in path else self.url(path, query))
        if response.status < 300:
            return response
        if response.status == 400:
            raise CommsError(response.message, Exit.USAGE)
        if response.status in (401, 403):
            self._explain_refusal(method, path)
        if response.status == 404:
            self._check_extension()
            raise CommsError(response.message, not_found)
        raise CommsError(
            f"{method} {path} failed on the server: {response.message}", Exit.SERVER_ERROR
        )

    def _explain_refusal(self, method: str, path: str) -> None:
        """jupyter_server answers 403 both to a bad token and to an Authorizer's no: ask
        `/api/me`, which needs only a valid token, to tell which."""
        if self.send("GET", self.url("api/me")).status == 200:
            route = urllib.parse.urlsplit(path).path
            action = "close comms" if method == "DELETE" else f"read {route}"
            raise CommsError(
                f"not authorized to {action} on {self.server.url} (the server's Authorizer "
                "said no)",
                Exit.NOT_AUTHORIZED,
            )
        if not self.server.token:
            raise CommsError(
                f"{self.server.url} needs a token: pass --token or set JUPYTER_TOKEN",
                Exit.NOT_AUTHENTICATED,
            )
        raise CommsError(
            f"{self.server.url} refused the token from {self.server.token_source}",
            Exit.NOT_AUTHENTICATED,
        )

    def _check_extension(self) -> None:
        """Raise unless the extension answers here (jupyter_server's 404 for an unknown
        route and the extension's for an unknown comm look alike to a caller)."""
        if self._has_extension or self.send("GET", self.url("api/comms/summary")).status != 404:
            self._has_extension = True
            return
        try:
            is_jupyter = "version" in self.send("GET", self.url("api")).json()
        except (CommsError, TypeError):
            is_jupyter = False
        if not is_jupyter:
            raise CommsError(f"{self.server.url} is not a Jupyter server", Exit.NO_SERVER)
        raise CommsError(
            f"jupyter_comm_ext is not enabled on the server at {self.server.url} "
            "(jupyter server extension enable jupyter_comm_ext, then restart it)",
            Exit.NO_EXTENSION,
        )

    def get_json(self, path: str, query: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.call("GET", path, query, **kw).json()

    def pages(self, path: str, query: dict[str, Any], **kw: Any) -> Iterator[Response]:
        """Every page of a paginated list, following `Link: rel="next"` (the server leaves
        `refresh` out of it: only the first page asks the kernels)."""
        response = self.call("GET", path, query, **kw)
        yield response
        while (link := response.next_link()) is not None:
            response = self.call("GET", self.url(link), **kw)
            yield response
