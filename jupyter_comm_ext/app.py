"""The server extension: wires the mirror into jupyter_server."""

from __future__ import annotations

from pathlib import Path

from jupyter_server.extension.application import ExtensionApp
from traitlets.config import Configurable

from .activity import CommActivity
from .culler import CommCuller
from .handlers import handlers
from .kernel_side import CommKernelSide
from .metrics import CommMetrics
from .mirror import CommMirror
from .nodelay import WebsocketNodelay
from .page import page_handlers
from .tap import CommTap

HERE = Path(__file__).parent


class CommExtensionApp(ExtensionApp):
    """See, count and close the comms of every kernel of this server."""

    name = "jupyter_comm_ext"
    load_other_extensions = True
    classes: list[type[Configurable]] = [
        CommMirror,
        CommActivity,
        CommTap,
        WebsocketNodelay,
        CommCuller,
        CommMetrics,
        CommKernelSide,
    ]

    #: set once `initialize_settings` has wired everything; None if loading failed
    culler: CommCuller | None = None
    metrics: CommMetrics | None = None

    def initialize_settings(self) -> None:
        serverapp = self.serverapp
        # both are set before jupyter_server loads extensions
        assert serverapp is not None and serverapp.event_logger is not None
        serverapp.event_logger.register_event_schema(HERE / "events" / "comm.yaml")
        CommKernelSide(parent=self).apply(serverapp.kernel_spec_manager)
        mirror = CommMirror(
            parent=self,
            kernel_manager=serverapp.kernel_manager,
            event_logger=serverapp.event_logger,
        )
        try:
            # A bad setting raises here (a TraitError naming it); jupyter_server then logs it
            # and runs on without the extension, so the mirror must not stay behind.
            tap = CommTap(parent=self, mirror=mirror)
            nodelay = WebsocketNodelay(parent=self, **tap.renamed_settings())
            culler = CommCuller(parent=self, mirror=mirror)
            metrics = CommMetrics(mirror, tap, parent=self)
        except Exception:
            mirror.close()
            raise
        self.mirror, self.tap = mirror, tap
        # self.settings starts as a copy of the server's and is written back over them.
        self.settings["comm_mirror"] = mirror
        self.settings["comm_tap"] = tap
        stock = self.settings["kernel_websocket_connection_class"]
        self.settings["kernel_websocket_connection_class"] = tap.connection_class(
            nodelay.connection_class(stock)
        )
        self.culler, self.metrics = culler, metrics
        metrics.start()
        mirror.activity.install()
        # Kernels started before this extension loaded are reconciled on first contact.
        mirror.sync_kernels()

    async def _start_jupyter_server_extension(self, serverapp: object) -> None:
        """Runs once the server's event loop does (unless loading failed: that is logged)."""
        if self.culler is not None:
            self.culler.start()

    def initialize_handlers(self) -> None:
        self.handlers.extend([*handlers, *page_handlers])

    async def stop_extension(self) -> None:
        if self.culler is None or self.metrics is None:  # it never loaded
            return
        self.metrics.stop()
        self.culler.stop()
        self.mirror.close()
