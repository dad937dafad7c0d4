// The admin page: loads comms, kernels and closed comms, and wires the parts together.

import { Actions } from "./actions.js";
import { api, plainWords } from "./api.js";
import { Live } from "./live.js";
import { CommTable, renderClosed } from "./table.js";

const STATUS_TEXT = {
  live: "Live",
  polling: "Polling (event stream unavailable)",
  offline: "Server unreachable, retrying",
};

const table = new CommTable({
  onClose: (comm) => actions.closeOne(comm),
  onSelection: () => actions.selectionChanged(),
});
const actions = new Actions(table, () => live.request());
const live = new Live(refresh, (status) => {
  const badge = document.getElementById("live-status");
  badge.textContent = STATUS_TEXT[status];
  badge.className = `badge ${status}`;
});
const loadError = document.getElementById("load-error");

async function refresh() {
  let open, closed, kernelList;
  try {
    [open, closed, kernelList] = await Promise.all([
      api.comms(),
      api.comms({ status: "closed" }),
      // Names, states and connections only decorate the table: do without them if refused.
      api.kernels().catch((error) => (error.status === 0 ? Promise.reject(error) : [])),
    ]);
  } catch (error) {
    loadError.textContent = plainWords(error, "list comms");
    loadError.hidden = false;
    throw error;
  }
  loadError.hidden = true;
  const kernels = new Map(kernelList.map((k) => [k.id, k]));
  table.setData(open, kernels);
  table.render();
  actions.selectionChanged();
  renderClosed(closed, kernels);
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const withComms = new Set(open.map((c) => c.kernel_id)).size;
  const where = open.length ? ` on ${plural(withComms, "kernel")}` : "";
  document.getElementById("summary").textContent =
    `${open.length ? plural(open.length, "open comm") : "No open comms"}${where} · ` +
    `${plural(kernels.size, "kernel")} running · updated ${new Date().toLocaleTimeString()}`;
}

document.addEventListener("keydown", (event) => {
  const typing = event.target.closest("input, select, textarea, dialog");
  if (event.key === "/" && !typing) {
    event.preventDefault();
    document.getElementById("filter-text").focus();
  }
});

live.start();
