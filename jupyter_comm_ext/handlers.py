"""REST handlers: thin, the logic lives in the mirror."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import urlencode

import orjson
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from .mirror import CommMirror
from .query import FILTERS, BadQuery, CommFilter
from .registry import CommRecord, page

AUTH_RESOURCE = "comms"
PAGING = ("limit", "cursor")
#: query arguments jupyter_server itself reads, allowed on every route (`no_track_activity`
#: changes nothing here: no route of ours counts as activity)
SERVER_ARGUMENTS = ("token", "_xsrf", "no_track_activity")
MAX_ID_LENGTH = 256
#: names the kernels a `refresh=1` could not ask (see rest-api.yml)
NOT_REFRESHED_HEADER = "X-Comms-Not-Refreshed"
#: when a kernel's comms last moved, by side (see rest-api.yml)
ACTIVITY_HEADERS = {"user": "X-Comms-User-Activity", "kernel": "X-Comms-Kernel-Activity"}
#: the largest page `GET /api/comms?limit=` gives
MAX_LIMIT = 10_000
#: A client acting for someone else (the JupyterHub service, for the Hub user who asked)
#: names them here; a close is then recorded as "<them> via <authenticated user>".
ON_BEHALF_HEADER = "X-Comms-On-Behalf-Of"
#: printable ASCII (header values are Latin-1 on the wire), no spaces at the ends (HTTP strips
#: them), at most 256 characters
ON_BEHALF_VALUE = re.compile(r"[!-~](?:[ -~]{0,254}[!-~])?")


class CommsBaseHandler(APIHandler):
    """Shared by the comm routes: the mirror, argument checks, JSON output."""

    auth_resource = AUTH_RESOURCE
    #: Neither reading comms (a panel's poll, the admin page, the Hub service) nor an
    #: admin's force-close is the user's activity: none of them may keep an idle server
    #: from its culler (jupyter_server's `last_activity`, which JupyterHub is told).
    _track_activity = False

    @property
    def mirror(self) -> CommMirror:
        mirror: CommMirror = self.settings["comm_mirror"]
        return mirror

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 405:
            # A 405 must name the methods the route has (RFC 9110); tornado's does not.
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        super().write_error(status_code, **kwargs)

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The methods this route implements (OPTIONS is jupyter_server's CORS preflight)."""
        return [
            method
            for method in cls.SUPPORTED_METHODS
            if getattr(cls, method.lower()) is not getattr(web.RequestHandler, method.lower())
        ]

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        # Tornado's own failure here logs a traceback and answers with an empty 400.
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise web.HTTPError(400, f"{name or 'argument'} is not valid UTF-8") from None

    def check_arguments(self, allowed: tuple[str, ...]) -> None:
        """400 on an argument the route does not take; `@jupyterlab/services`' bare
        `?<timestamp>` (its cache buster on GET) is not one, it is ignored."""
        args = self.request.query_arguments
        unknown = set(args) - set(allowed) - set(SERVER_ARGUMENTS)
        unknown = {name for name in unknown if not (name.isdigit() and args[name] == [b""])}
        if unknown:
            raise web.HTTPError(400, f"unknown query argument(s): {', '.join(sorted(unknown))}")

    def flag(self, name: str) -> bool:
        value = self.get_query_argument(name, "0")
        if value not in ("0", "1", "true", "false"):
            raise web.HTTPError(400, f"{name} must be 0 or 1, not {value!r}")
        return value in ("1", "true")

    def comm_filter(self) -> CommFilter:
        """The filters of the query string, validated (400 on any bad value)."""
        try:
            flt = CommFilter.from_arguments(
                {name: self.get_query_argument(name, None) for name in FILTERS}
            )
        except BadQuery as e:
            raise web.HTTPError(400, str(e)) from None
        if flt.kernel_id is not None and flt.kernel_id not in self.kernel_manager:
            raise web.HTTPError(404, f"no kernel with id {flt.kernel_id!r}")
        return flt

    def closer(self) -> tuple[str | None, str | None]:
        """Who closes, as (username, display name): the authenticated user, after whoever
        they say they act for (a label only: the authenticated name is always in it, so no
        one can pass as another)."""
        user = self.current_user
        name = getattr(user, "username", None) or getattr(user, "name", None)
        shown = getattr(user, "display_name", None) or getattr(user, "name", None) or name
        asker = self.request.headers.get(ON_BEHALF_HEADER)
        if asker is None:
            return name, shown
        if ON_BEHALF_VALUE.fullmatch(asker) is None:
            raise web.HTTPError(
                400, f"{ON_BEHALF_HEADER} must be 1 to 256 printable ASCII characters"
            )
        return f"{asker} via {name}", f"{asker} via {shown}"

    async def force_close(
        self, records: list[CommRecord], closer: tuple[str | None, str | None]
    ) -> list[CommRecord]:
        """Close each record; the ones whose kernel went away meanwhile are left out."""
        username, shown = closer
        return [
            r
            for r in records
            if await self.mirror.force_close(r, username=username, display_name=shown)
        ]

    async def refresh_if_asked(self, kernel_ids: list[str] | None = None) -> None:
        """With `refresh=1`, ask the kernels first; the ones that could not be asked are
        named in the `X-Comms-Not-Refreshed` header (their comms as the mirror has them)."""
        if not self.flag("refresh"):
            self.mirror.sync_kernels()
            return
        failed = await self.mirror.refresh(kernel_ids)
        if failed:
            self.set_header(NOT_REFRESHED_HEADER, ", ".join(sorted(failed)))

    def write_models(self, records: list[CommRecord] | CommRecord) -> None:
        self.set_header("Content-Type", "application/json")
        if isinstance(records, CommRecord):
            self.finish(orjson.dumps(records.to_json()))
        else:
            self.finish(orjson.dumps([r.to_json() for r in records]))


def encode_cursor(key: tuple[float, str]) -> str:
    """An opaque cursor for `GET /api/comms`: where the next page starts."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        opened_at, comm_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(opened_at, (int, float)) and isinstance(comm_id, str):
            return float(opened_at), comm_id
    except (binascii.Error, ValueError, TypeError):
        pass
    raise web.HTTPError(400, "cursor is not one this server gave out")


class CommsHandler(CommsBaseHandler):
    """`/api/comms`: list comms, filtered."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.check_arguments((*FILTERS, *PAGING, "refresh"))
        flt = self.comm_filter()
        limit, after = self.paging()
        kernel_ids = None if flt.kernel_id is None else [flt.kernel_id]  # a known kernel
        await self.refresh_if_asked(kernel_ids)
        records = self.mirror.registry.query(flt)
        if limit is not None:
            records, resume = page(records, limit, after)
            if resume is not None:
                self.set_header("Link", f'<{self.next_page(resume)}>; rel="next"')
        self.write_models(records)

    def compute_etag(self) -> None:
        """No ETag: tornado's is a SHA-1 of the whole answer (4 ms for 10,000 comms, a
        quarter of the request), and a list of live counters changes too often for a
        304 to save the client anything."""
        return None

    def paging(self) -> tuple[int | None, tuple[float, str] | None]:
        """`limit` and the decoded `cursor` (400 on bad values; a cursor needs a limit)."""
        limit = self.get_query_argument("limit", None)
        cursor = self.get_query_argument("cursor", None)
        if limit is None:
            if cursor is not None:
                raise web.HTTPError(400, "cursor needs limit")
            return None, None
        if not (limit.isascii() and limit.isdigit() and 0 < int(limit) <= MAX_LIMIT):
            raise web.HTTPError(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
        return int(limit), None if cursor is None else decode_cursor(cursor)

    def next_page(self, resume: tuple[float, str]) -> str:
        args = {k: v[-1].decode() for k, v in self.request.query_arguments.items()}
        args.pop("token", None)  # never echo a credential into a header
        args.pop("refresh", None)  # the first page asked the kernels; the next pages need not
        args["cursor"] = encode_cursor(resume)
        return f"{self.request.path}?{urlencode(args)}"

    @web.authenticated
    @authorized
    async def delete(self) -> None:
        """Force-close every open (or orphaned) comm that matches; never all by accident."""
        self.check_arguments(FILTERS)
        closer = self.closer()  # a bad X-Comms-On-Behalf-Of is a 400 even if nothing matches
        flt = self.comm_filter()
        try:
            flt.check_closable()
        except BadQuery as e:
            raise web.HTTPError(400, str(e)) from None
        self.mirror.sync_kernels()
        self.write_models(await self.force_close(self.mirror.registry.query(flt), closer))


class CommHandler(CommsBaseHandler):
    """`/api/comms/{comm_id}`: one comm."""

    @web.authenticated
    @authorized
    async def get(self, comm_id: str) -> None:
        self.check_arguments(("refresh",))
        await self.refresh_if_asked()
        self.write_models(self.find(comm_id))

    @web.authenticated
    @authorized
    async def delete(self, comm_id: str) -> None:
        """Force-close one comm: 204, or 404 if unknown or already closed.

        With `cascade=1`, also every widget model only it references, transitively (a box's
        children, their layouts and styles): 200 with the closed models, it first.
        """
        self.check_arguments(("cascade",))
        cascade = self.flag("cascade")
        closer = self.closer()
        self.mirror.sync_kernels()
        record = self.find(comm_id)
        if record.status == "closed":
            raise web.HTTPError(404, f"comm {comm_id!r} is already closed")
        records = self.mirror.registry.cascade(record) if cascade else [record]
        closed = await self.force_close(records, closer)
        if not closed:
            raise web.HTTPError(404, f"the kernel of comm {comm_id!r} is gone")
        if cascade:
            self.write_models(closed)
            return
        self.set_status(204)
        self.finish()

    def find(self, comm_id: str) -> CommRecord:
        # Any id a kernel may have chosen is looked up (a tab in it included): the messages
        # below quote it with repr, so nothing unprintable reaches a log or a page.
        if len(comm_id) > MAX_ID_LENGTH:
            raise web.HTTPError(400, f"comm ids are at most {MAX_ID_LENGTH} characters")
        record = self.mirror.registry.get(comm_id)
        if record is None:
            raise web.HTTPError(404, f"no comm with id {comm_id!r}")
        return record


class SummaryHandler(CommsBaseHandler):
    """`/api/comms/summary`: counts without per-comm models (for aggregators, dashboards)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.check_arguments(("refresh",))
        await self.refresh_if_asked()
        summary = self.mirror.registry.summary()
        self.mirror.activity.annotate(summary["by_kernel"])
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(summary))


class KernelCommsHandler(CommsBaseHandler):
    """`/api/kernels/{kernel_id}/comms`: the open comms of one kernel."""

    @web.authenticated
    @authorized
    async def get(self, kernel_id: str) -> None:
        self.check_arguments(("refresh",))
        if kernel_id not in self.kernel_manager:
            raise web.HTTPError(404, f"no kernel with id {kernel_id!r}")
        await self.refresh_if_asked([kernel_id])
        for side, when in self.mirror.activity.model(kernel_id).items():
            if when is not None:
                self.set_header(ACTIVITY_HEADERS[side], when)
        self.write_models(list(self.mirror.registry.kernel_comms(kernel_id).values()))


_comm_id = r"(?P<comm_id>[^/]+)"
_kernel_id = r"(?P<kernel_id>[^/]+)"

handlers: list[tuple[str, Any]] = [
    (r"/api/comms/?", CommsHandler),
    (r"/api/comms/summary/?", SummaryHandler),
    (rf"/api/comms/{_comm_id}/?", CommHandler),
    (rf"/api/kernels/{_kernel_id}/comms/?", KernelCommsHandler),
]
