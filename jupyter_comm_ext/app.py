"""The server extension: wires the mirror into jupyter_server."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from jupyter_server.extension.application import ExtensionApp

from .culler import CommCuller
from .handlers import handlers
from .metrics import CommMetrics
from .mirror import CommMirror
from .page import page_handlers
from .tap import CommTap

HERE = Path(__file__).parent


class CommExtensionApp(ExtensionApp):
    """See, count and close the comms of every kernel of this server."""

    name = "jupyter_comm_ext"
    load_other_extensions = True
    classes: ClassVar[list[type]] = [CommMirror, CommTap, CommCuller, CommMetrics]

    def initialize_settings(self) -> None:
        serverapp = self.serverapp
        serverapp.event_logger.register_event_schema(HERE / "events" / "comm.yaml")
        self.mirror = CommMirror(
            parent=self,
            kernel_manager=serverapp.kernel_manager,
            event_logger=serverapp.event_logger,
        )
        # self.settings starts as a copy of the server's and is written back over them.
        self.settings["comm_mirror"] = self.mirror
        self.tap = CommTap(parent=self, mirror=self.mirror)
        self.settings["comm_tap"] = self.tap
        self.settings["kernel_websocket_connection_class"] = self.tap.connection_class(
            self.settings["kernel_websocket_connection_class"]
        )
        self.culler = CommCuller(parent=self, mirror=self.mirror)
        self.metrics = CommMetrics(self.mirror, self.tap, parent=self)
        self.metrics.start()
        # Kernels started before this extension loaded are reconciled on first contact.
        self.mirror.sync_kernels()

    async def _start_jupyter_server_extension(self, serverapp: object) -> None:
        """Runs once the server's event loop does."""
        self.culler.start()

    def initialize_handlers(self) -> None:
        self.handlers.extend([*handlers, *page_handlers])

    async def stop_extension(self) -> None:
        self.metrics.stop()
        self.culler.stop()
        self.mirror.close()
