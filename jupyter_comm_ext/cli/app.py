"""The `jupyter comms` commands: list, summary, close.

A client of the extension's REST API and nothing more: it runs where an admin has a
terminal, needs no kernel, and sees exactly what the API shows (so what the server refuses,
it refuses too). The server is found the way `jupyter server list` finds it, from the
runtime directory's `jpserver-*.json` files, which also hold its token.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Generator, Sequence
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import Any

from jupyter_core.application import JupyterApp, base_aliases, base_flags
from traitlets import Bool, Dict, Float, Integer, Unicode, default

from .. import __version__
from ..query import NARROW_STATUSES, ORIGINS, STATUSES
from ..registry import parse_isoformat
from .client import EXIT_MEANINGS, CommsClient, CommsError, Exit, Response, find_server


class ExitStatuses:
    """Mixed into every command: its `--help` lists the exit statuses, and a bad option
    value exits with USAGE like an unknown option does."""

    def emit_description(self) -> Generator[str, None, None]:
        yield from super().emit_description()  # type: ignore[misc]
        yield "Exit status:"
        yield from (f"  {int(code)}  {meaning}" for code, meaning in EXIT_MEANINGS.items())
        yield ""

    def exit(self, exit_status: int | str | None = 0) -> None:
        # traitlets exits 1 on a bad option value (its only exit(1)); argparse exits 2 on an
        # unknown option. Both are USAGE, and 1 stays what Python exits with on a bug.
        super().exit(Exit.USAGE if exit_status == 1 else exit_status)  # type: ignore[misc]


# -- formatting ---------------------------------------------------------------------------


def printable(value: Any, width: int | None = None) -> str:
    """Text from the server made safe for a terminal: target names and comm ids come from
    kernels and frontends, and an escape sequence in one must not reach the screen as one."""
    text = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
        for c in ("-" if value is None else str(value))
    )
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def duration(seconds: float | None) -> str:
    """A short age: 42s, 7m05s, 3h12m, 4d06h."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds from "90", "90s", "10m", "1.5h" or "2d"."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*", text)
    if match is None:
        raise CommsError(
            f"--min-idle must be a duration like 90, 90s, 10m, 2h or 1d, not {text!r}",
            Exit.USAGE,
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def size(n: int) -> str:
    """Bytes in binary units: 310 B, 4.0 KiB, 1.2 MiB."""
    if n < 1024:
        return f"{n} B"
    value, units = n / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """Columns padded to their widest cell; the `numeric` ones right-aligned."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in numeric else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join(line(r) for r in [headers, *rows])


def server_time(response: Response) -> float:
    """The server's clock (its Date header), so ages are right on another machine too."""
    try:
        return parsedate_to_datetime(response.headers["Date"]).timestamp()
    except (TypeError, ValueError):
        return time.time()


# -- the commands -------------------------------------------------------------------------

_common_aliases = {
    **base_aliases,
    "url": "CommsCommand.url",
    "token": "CommsCommand.token",
    "timeout": "CommsCommand.timeout",
}
_common_flags = {
    **base_flags,
    "json": ({"CommsCommand": {"json": True}}, "Print the API's JSON instead of a table."),
}
_refresh_flag = {
    "refresh": (
        {"CommsCommand": {"refresh": True}},
        "Ask the kernels for their comms first (waits for busy kernels).",
    )
}


class CommsCommand(ExitStatuses, JupyterApp):
    """What every `jupyter comms` subcommand shares: the server, the client, the output."""

    version = __version__
    aliases = _common_aliases
    flags = _common_flags
    examples = ""

    url = Unicode(
        "",
        config=True,
        help="""URL of the server (with its base_url), e.g. http://127.0.0.1:8888/.
        Without it, the server this user runs is found from the runtime directory, as
        `jupyter server list` does, and its token is read from there.""",
    )
    token = Unicode(
        config=True,
        help="""Token for the server; JUPYTER_TOKEN by default. Needed only with --url
        for a server whose runtime file this user cannot read; a token on the command
        line is visible to other users in `ps`, the environment variable is not.""",
    )

    @default("token")
    def _token_default(self) -> str:
        return os.environ.get("JUPYTER_TOKEN", "")

    timeout = Float(
        30.0,
        config=True,
        help="""Seconds to wait for each answer. `--refresh` asks every kernel and waits
        up to the server's reconcile timeout for busy ones, so keep this above it.""",
    )
    json = Bool(False, config=True, help="Print the API's JSON instead of a table.")
    refresh = Bool(
        False,
        config=True,
        help="""Before answering, have the server ask every kernel for its comms (for
        `list` and `summary`). Catches comms the server missed (opened before it watched
        the kernel), but waits for busy kernels, up to the server's reconcile timeout.""",
    )

    def _log_level_default(self) -> int:
        return 30  # warnings only: the output is the point, not the app's chatter

    @cached_property
    def client(self) -> CommsClient:
        """The client of the server this command talks to, found on first use."""
        if not self.token:
            source = ""
        elif self.token == os.environ.get("JUPYTER_TOKEN"):
            source = "JUPYTER_TOKEN"
        else:
            source = "--token"
        server = find_server(self.url, self.token, source, self.runtime_dir)
        return CommsClient(server, self.timeout)

    def start(self) -> None:
        try:
            self.run()
        except CommsError as e:
            print(f"jupyter comms: {e}", file=sys.stderr)
            self.exit(e.code)
        except KeyboardInterrupt:
            self.exit(Exit.INTERRUPTED)  # without a traceback

    def run(self) -> None:
        raise NotImplementedError

    def refresh_query(self) -> dict[str, str]:
        return {"refresh": "1"} if self.refresh else {}

    def print_json(self, value: Any) -> None:
        print(json.dumps(value, indent=2))

    @cached_property
    def kernel_labels(self) -> dict[str, str]:
        """kernel id -> the path of its notebook (or console, or file), from the sessions.

        A user allowed to read comms but not sessions still gets a table, with kernel ids.
        """
        try:
            sessions = self.client.get_json("api/sessions")
        except CommsError as e:
            if e.code not in (Exit.NOT_AUTHORIZED, Exit.USAGE, Exit.SERVER_ERROR):
                raise
            self.log.warning("no notebook names (%s): showing kernel ids", e)
            return {}
        labels: dict[str, str] = {}
        for s in sessions:
            kernel_id = (s.get("kernel") or {}).get("id")
            if kernel_id and kernel_id not in labels:
                labels[kernel_id] = s.get("path") or s.get("name") or kernel_id
        return labels


def kernel_label(kernel_id: str, labels: dict[str, str]) -> str:
    """A notebook path, shortened from the left (the file name matters most), or the start
    of the kernel id (enough to tell kernels apart, and accepted by --kernel)."""
    label = labels.get(kernel_id)
    if label is None:
        return printable(kernel_id[:8])
    label = printable(label)
    return label if len(label) <= 32 else "…" + label[-31:]


class FilterCommand(CommsCommand):
    """A command that selects comms with the API's filters."""

    aliases = {
        **_common_aliases,
        "kernel": "FilterCommand.kernel",
        "target": "FilterCommand.target",
        "origin": "FilterCommand.origin",
        "min-idle": "FilterCommand.min_idle",
        "status": "FilterCommand.status",
    }

    kernel = Unicode(
        "",
        config=True,
        help="Only the comms of this kernel: its id, the start of it (as the table shows it), "
        "or its notebook's path.",
    )
    target = Unicode("", config=True, help="Only comms of this target name.")
    origin = Unicode("", config=True, help=f"Only comms opened by: {', '.join(ORIGINS)}.")
    min_idle = Unicode(
        "",
        config=True,
        help="Only comms without a message either way for this long: seconds, or 90s, 10m, 2h, 1d.",
    )
    status = Unicode("", config=True, help=f"Which comms: {', '.join(STATUSES)} (default open).")

    page_size = Integer(
        1000,
        config=True,
        help="""Comms per request when listing. One request for 10,000 comms makes the
        server build a 4 MB answer in one go; pages keep each answer short, at the cost
        of a request per page.""",
    )

    def query(self) -> dict[str, str]:
        """The filters as the API's query arguments; the server checks their values."""
        query = {"target_name": self.target, "origin": self.origin, "status": self.status}
        if self.min_idle:
            query["min_idle"] = f"{parse_duration(self.min_idle):g}"
        if self.kernel:
            query["kernel_id"] = self.resolve_kernel(self.kernel)
        return {k: v for k, v in query.items() if v}

    def resolve_kernel(self, name: str) -> str:
        """A kernel id from an id, a unique start of one, or a session's path."""
        try:
            kernel_ids = [k["id"] for k in self.client.get_json("api/kernels")]
        except CommsError as e:
            if e.code != Exit.NOT_AUTHORIZED:
                raise
            self.log.warning("cannot list kernels (%s): passing --kernel on as it is", e)
            return name
        if name in kernel_ids:
            return name
        by_path = {kid for kid, path in self.kernel_labels.items() if path == name}
        matches: list[str] = sorted(by_path or {k for k in kernel_ids if k.startswith(name)})
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise CommsError(
                f"no kernel {name!r} on {self.client.server.url} (give a kernel id, the start "
                "of one, or a notebook path)",
                Exit.USAGE,
            )
        raise CommsError(
            f"--kernel {name!r} matches {len(matches)} kernels: {', '.join(matches)}",
            Exit.USAGE,
        )

    def models(self, query: dict[str, str]) -> tuple[list[dict[str, Any]], float]:
        """Every comm model the query selects (all pages), and the server's time."""
        models: list[dict[str, Any]] = []
        now = time.time()
        for i, page in enumerate(
            self.client.pages("api/comms", {**query, "limit": self.page_size}, not_found=Exit.USAGE)
        ):
            models.extend(page.json())
            if i == 0:
                now = server_time(page)
        return models, now

    def print_models(self, models: list[dict[str, Any]], now: float) -> None:
        """The comms as a table, one line each (or the API's JSON with --json)."""
        if self.json:
            self.print_json(models)
            return
        if not models:
            print("No comms.")
            return
        labels = self.kernel_labels
        rows = []
        for m in models:
            opened = parse_isoformat(m.get("opened_at"))
            active = parse_isoformat(m.get("last_activity"))
            rows.append(
                [
                    printable(m["comm_id"]),
                    kernel_label(m["kernel_id"], labels),
                    printable(m.get("target_name"), 40),
                    printable(model_name(m), 32),
                    printable(m.get("origin")),
                    printable(status(m)),
                    duration(None if opened is None else now - opened),
                    duration(None if active is None else now - active),
                    str(m["messages"]["to_kernel"]),
                    str(m["messages"]["from_kernel"]),
                ]
            )
        headers = ["COMM", "KERNEL", "TARGET", "MODEL", "ORIGIN", "STATUS", "AGE", "IDLE"]
        print(table([*headers, "TO KERNEL", "FROM KERNEL"], rows, numeric={6, 7, 8, 9}))


def model_name(model: dict[str, Any]) -> str | None:
    """The widget model a comm is (`IntSliderModel`), or None for other comms."""
    widget = model.get("widget")
    return widget.get("model_name") if isinstance(widget, dict) else None


def status(model: dict[str, Any]) -> str | None:
    """A comm's status, `left_behind` for an open widget model nothing open refers to."""
    widget = model.get("widget")
    if model.get("status") == "open" and isinstance(widget, dict) and widget.get("left_behind"):
        return "left_behind"
    return model.get("status")


class ListCommand(FilterCommand):
    """List the comms of the server's kernels."""

    name = "jupyter-comms-list"
    description = """List the comms of the server's kernels: one line each, with its
    notebook (or kernel), target, widget model, who opened it, its age, how long it has been
    idle and its messages each way. Filters narrow it down; --json prints the API's comm
    models."""
    examples = """
    jupyter comms list
    jupyter comms list --target=jupyter.widget --min-idle=1h
    jupyter comms list --status=left_behind
    jupyter comms list --kernel=analysis.ipynb --status=all --json
    """
    flags = {**_common_flags, **_refresh_flag}

    def run(self) -> None:
        self.print_models(*self.models({**self.query(), **self.refresh_query()}))


class SummaryCommand(CommsCommand):
    """Count the server's comms per kernel and per target."""

    name = "jupyter-comms-summary"
    description = """Count the server's open, orphaned and left-behind comms, and their
    messages, per kernel and per target; --json prints the API's summary."""
    flags = {**_common_flags, **_refresh_flag}

    def run(self) -> None:
        summary = self.client.get_json("api/comms/summary", self.refresh_query())
        if self.json:
            self.print_json(summary)
            return
        messages, sizes = summary["messages"], summary["bytes"]
        origins = ", ".join(f"{k} {v}" for k, v in summary["by_origin"].items())
        print(
            f"{summary['open']} open, {summary['orphaned']} orphaned, "
            f"{summary.get('left_behind', 0)} left behind, "
            f"{summary['closed']} closed (in the server's history)\n"
            f"messages: {messages['to_kernel']} to kernels ({size(sizes['to_kernel'])}), "
            f"{messages['from_kernel']} from kernels ({size(sizes['from_kernel'])})\n"
            f"opened by: {origins}"
        )
        labels = self.kernel_labels if summary["by_kernel"] else {}
        kernels = [
            [
                kernel_label(kid, labels),
                str(k["open"]),
                str(k["orphaned"]),
                str(k.get("left_behind", 0)),
                str(k["messages"]["to_kernel"]),
                str(k["messages"]["from_kernel"]),
            ]
            for kid, k in sorted(summary["by_kernel"].items(), key=lambda i: -i[1]["open"])
        ]
        if kernels:
            headers = ["KERNEL", "OPEN", "ORPHANED", "LEFT BEHIND", "TO KERNEL", "FROM KERNEL"]
            print("\n" + table(headers, kernels, numeric={1, 2, 3, 4, 5}))
        targets = [
            [printable(name, 40), str(t["open"]), str(t["orphaned"]), str(t.get("left_behind", 0))]
            for name, t in sorted(summary["by_target"].items(), key=lambda i: -i[1]["open"])
        ]
        if targets:
            headers = ["TARGET", "OPEN", "ORPHANED", "LEFT BEHIND"]
            print("\n" + table(headers, targets, numeric={1, 2, 3}))


class CloseCommand(FilterCommand):
    """Force-close comms, by id or by filter."""

    name = "jupyter-comms-close"
    description = """Force-close comms: the kernel runs its close callbacks and forgets
    them, every connected frontend disposes of them. Give comm ids, or filters: closing in
    bulk needs at least one (--target, --kernel, --origin, --min-idle), or --left-behind
    (widget models no open widget refers to any more) or --status=orphaned, so nothing is
    closed by accident. Prints what was closed."""
    examples = """
    jupyter comms close 1f0c2a9e4b5d4c3e8f7a6b5c4d3e2f1a
    jupyter comms close --left-behind
    jupyter comms close --target=jupyter.widget --min-idle=1h
    jupyter comms close --target=jupyter.widget --kernel=analysis.ipynb --dry-run
    """
    flags = {
        **_common_flags,
        "dry-run": (
            {"CloseCommand": {"dry_run": True}},
            "Show what the filters select, close nothing.",
        ),
        "left-behind": (
            {"FilterCommand": {"status": "left_behind"}},
            "Close the widget models left behind: no open widget refers to them any more "
            "(the layout and style of a closed slider). Same as --status=left_behind.",
        ),
    }
    dry_run = Bool(False, config=True, help="Show what the filters select, close nothing.")

    def run(self) -> None:
        comm_ids = self.extra_args
        has_filter = any((self.kernel, self.target, self.origin, self.min_idle))
        if comm_ids and (has_filter or self.status):
            raise CommsError("give comm ids or filters, not both", Exit.USAGE)
        if comm_ids:
            if self.dry_run:
                raise CommsError("--dry-run goes with filters, not with comm ids", Exit.USAGE)
            self.close_ids(comm_ids)
            return
        if not has_filter and self.status not in NARROW_STATUSES:
            raise CommsError(
                "close needs comm ids, or at least one filter "
                "(--target, --kernel, --origin, --min-idle, --left-behind)",
                Exit.USAGE,
            )
        query = self.query()
        if self.dry_run:
            self.print_models(*self.models(query))
            return
        response = self.client.call("DELETE", "api/comms", query, not_found=Exit.USAGE)
        self.print_models(response.json(), server_time(response))

    def close_ids(self, comm_ids: list[str]) -> None:
        """Close each; report the unknown ones and go on, then fail if there were any."""
        closed: list[dict[str, Any]] = []
        failed = 0
        now = time.time()
        for comm_id in dict.fromkeys(comm_ids):
            path = "api/comms/" + urllib.parse.quote(comm_id, safe="")
            try:
                self.client.call("DELETE", path)
            except CommsError as e:
                if e.code != Exit.UNKNOWN_COMM:
                    raise
                print(f"jupyter comms: {e}", file=sys.stderr)
                failed += 1
                continue
            try:  # the closed model, to show (DELETE answers 204, no body)
                response = self.client.call("GET", path)
            except CommsError as e:
                if e.code != Exit.UNKNOWN_COMM:
                    raise
                self.log.warning("closed %s; the server's closed history has dropped it", comm_id)
                continue
            closed.append(response.json())
            now = server_time(response)
        if closed or self.json:
            self.print_models(closed, now)
        if failed:
            self.exit(Exit.UNKNOWN_COMM)


class CommsApp(ExitStatuses, JupyterApp):
    """`jupyter comms`: the subcommands."""

    name = "jupyter-comms"
    version = __version__
    description = """See and close the comms of a running Jupyter server (jupyter_comm_ext).

    Finds the server this user runs like `jupyter server list` (with its token), or
    talks to --url with --token or JUPYTER_TOKEN."""
    examples = """
    jupyter comms list --target=jupyter.widget
    jupyter comms summary
    jupyter comms close --target=jupyter.widget --min-idle=1h
    """
    subcommands = Dict(
        {
            "list": (ListCommand, ListCommand.__doc__),
            "summary": (SummaryCommand, SummaryCommand.__doc__),
            "close": (CloseCommand, CloseCommand.__doc__),
        }
    )

    def start(self) -> None:
        if self.subapp is None:
            print(f"jupyter comms: give a subcommand: {', '.join(self.subcommands)}\n")
            self.print_subcommands()
            self.exit(Exit.USAGE)
        else:
            self.subapp.start()


def main(argv: list[str] | None = None) -> None:
    """`jupyter comms`; a reader that stops early (`jupyter comms list | head`) ends the
    output quietly, as with other Unix tools."""
    try:
        CommsApp.launch_instance(argv)
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it where a write cannot fail
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(Exit.OK)
