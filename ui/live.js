// Keeping the page current: the server's event stream says when, polling covers the rest.
//
// Refreshes never overlap and never run closer than MIN_GAP_MS (or four times the last
// one's duration, for big servers), however many events arrive. Comm messages raise no
// events, so counters and idle times are polled too: slowly while the stream is up, faster
// when it is not. A dropped stream (server restart) is reopened with backoff.

import { eventsUrl } from './api.js';

const WATCHED_SCHEMAS = new Set([
  'https://events.jupyter.org/jupyter_comm_ext/comm/v1',
  'https://events.jupyter.org/jupyter_server/kernel_actions/v1'
]);
const MIN_GAP_MS = 1000;
const POLL_LIVE_MS = 5000;
const POLL_FALLBACK_MS = 3000;
const MAX_BACKOFF_MS = 30000;

export class Live {
  /**
   * @param {() => Promise<void>} refresh reloads the data; throws when the server is unreachable
   * @param {(status: "live" | "polling" | "offline") => void} onStatus
   */
  constructor(refresh, onStatus) {
    this.refresh = refresh;
    this.onStatus = onStatus;
    this.streaming = false;
    this.reachable = true;
    this.backoff = 1000;
    this.timer = null;
    this.dueAt = Infinity;
    this.running = false;
    this.again = false;
    this.gap = MIN_GAP_MS;
    this.lastEnd = 0;
  }

  start() {
    this.connect();
    this.request();
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.request();
    });
  }

  /** Refresh as soon as the rate limit allows (after `delay` ms at the earliest). */
  request(delay = 0) {
    if (this.running) {
      this.again = true;
      return;
    }
    const at = Math.max(Date.now() + delay, this.lastEnd + this.gap);
    if (at >= this.dueAt) return;
    clearTimeout(this.timer);
    this.dueAt = at;
    this.timer = setTimeout(() => this.run(), at - Date.now());
  }

  async run() {
    this.dueAt = Infinity;
    if (document.hidden) return; // resumed by visibilitychange
    this.running = true;
    const started = Date.now();
    try {
      await this.refresh();
      this.reachable = true;
    } catch {
      this.reachable = false;
    }
    this.lastEnd = Date.now();
    this.gap = Math.max(MIN_GAP_MS, 4 * (this.lastEnd - started));
    this.running = false;
    this.report();
    if (this.again) {
      this.again = false;
      this.request();
    }
    this.request(this.streaming ? POLL_LIVE_MS : POLL_FALLBACK_MS);
  }

  connect() {
    const socket = new WebSocket(eventsUrl());
    socket.addEventListener('open', () => {
      this.streaming = true;
      this.backoff = 1000;
      this.report();
      this.request(); // events may have been missed while the stream was down
    });
    socket.addEventListener('message', event => {
      let schema;
      try {
        schema = JSON.parse(event.data).schema_id;
      } catch {
        return;
      }
      if (WATCHED_SCHEMAS.has(schema)) this.request();
    });
    socket.addEventListener('close', () => {
      this.streaming = false;
      this.report();
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(2 * this.backoff, MAX_BACKOFF_MS);
    });
  }

  report() {
    this.onStatus(
      !this.reachable ? 'offline' : this.streaming ? 'live' : 'polling'
    );
  }
}
