// Shared by the host dashboard and the viewer page: tokens, the REST API, the
// WebSocket session (JSON subprotocol, resume with last_seq) and the server clock.
// Only the public API is used; nothing here is private to the server.

export const params = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, token, body) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const e = data.error || {};
    throw new ApiError(res.status, e.code || "http_" + res.status, e.message || res.statusText);
  }
  return data;
}

export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

/** A token for this page: from the URL fragment (#token=..., kept out of server logs), from
 *  this tab's earlier visit, or, on a --dev server only, minted by POST /api/v1/dev/tokens.
 *  Returns null when none can be had: the page then asks for one.  `fromUrl: false` skips the
 *  fragment (a token for another role than the page's user, e.g. the demo payments). */
export async function obtainToken(role, sub, name, { fromUrl = true } = {}) {
  const given = fromUrl && fragment.get("token");
  if (given) return given;
  const key = `liveserver.${role}.${sub}`;
  const saved = sessionStorage.getItem(key);
  const claims = saved && tokenClaims(saved);
  if (claims && claims.exp * 1000 > Date.now() + 60_000) return saved;
  try {
    const minted = await api("POST", "/api/v1/dev/tokens", null, { sub, role, name });
    sessionStorage.setItem(key, minted.token);
    return minted.token;
  } catch (e) {
    if (e.status === 403) return null; // not a --dev server
    throw e;
  }
}

export function roomFromUrl() {
  return params.get("room") || fragment.get("room") || "demo";
}

/** Show the "paste a token" form in `el`; resolves when the user gave one (the page reloads with it). */
export function askForToken(el, what) {
  el.hidden = false;
  el.innerHTML = `<form class="token-form"><p>This server mints no demo tokens. Paste a ${what} token
    (the platform's backend mints them; <code>liveserver token --sub alice --role ${what}</code> does too).</p>
    <input name="token" placeholder="eyJhbGciOiJIUzI1NiIs..." required autocomplete="off">
    <button>Open</button></form>`;
  el.querySelector("form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = new FormData(ev.target).get("token").trim();
    location.hash = new URLSearchParams({ token: t, room: roomFromUrl() }).toString();
    location.reload();
  });
}

/** The server's clock: offset from the pongs with the shortest round trip (NTP's rule). */
export class ServerClock {
  constructor() {
    this.offset = 0;
    this.rtt = null;
    this.samples = [];
  }
  now() {
    return Date.now() + this.offset;
  }
  roughSync(serverTimeMs) {
    if (this.rtt === null) this.offset = serverTimeMs - Date.now();
  }
  sample(sentAt, serverTimeMs, receivedAt) {
    const rtt = receivedAt - sentAt;
    this.samples.push({ rtt, offset: serverTimeMs + rtt / 2 - receivedAt });
    if (this.samples.length > 8) this.samples.shift();
    const best = this.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
    this.offset = best.offset;
    this.rtt = rtt;
  }
}

const FATAL = { 4001: "unauthorized", 4003: "forbidden", 4004: "room not found" };

/** One WebSocket session that reconnects (resuming danmaku with last_seq) until closed for good. */
export class LiveSocket {
  constructor(room, token) {
    this.room = room;
    this.token = token;
    this.clock = new ServerClock();
    this.handlers = new Map();
    this.pending = new Map();
    this.lastSeq = null;
    this.nextId = 1;
    this.backoff = 500;
    this.closedForGood = false;
    this.ws = null;
  }
  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(fn);
    return this;
  }
  emit(type, msg) {
    for (const fn of this.handlers.get(type) || []) fn(msg);
  }
  connect() {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    const ws = new WebSocket(url, ["liveserver.v1.json"]);
    this.ws = ws;
    ws.onopen = () => {
      const hello = { type: "hello", token: this.token, room: this.room };
      if (this.lastSeq !== null) hello.last_seq = this.lastSeq;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev) => this.receive(JSON.parse(ev.data));
    ws.onclose = (ev) => this.closed(ev);
  }
  receive(msg) {
    if (msg.type === "welcome") {
      this.backoff = 500;
      this.clock.roughSync(msg.server_time_ms);
      if (this.lastSeq === null) this.lastSeq = msg.seq;
      this.startPings();
      // grabs and claims sent before a reconnect go again with the same req_id: the server
      // answers a repeat with its first answer, so a won order is never lost to a dropped socket
      for (const p of this.pending.values()) if (p.resend) this.send(p.msg);
    }
    if (msg.type === "danmaku") {
      for (const item of msg.items) this.lastSeq = Math.max(this.lastSeq ?? 0, item.id);
    }
    if (msg.req_id && this.pending.has(msg.req_id)) {
      const { resolve, timer } = this.pending.get(msg.req_id);
      clearTimeout(timer);
      this.pending.delete(msg.req_id);
      resolve(msg);
    }
    this.emit(msg.type, msg);
    this.emit("*", msg);
  }
  closed(ev) {
    clearInterval(this.pingTimer);
    const fatal = FATAL[ev.code];
    for (const [reqId, p] of this.pending) {
      if (p.resend && !fatal && !this.closedForGood) continue;
      clearTimeout(p.timer);
      p.reject(new Error("connection closed"));
      this.pending.delete(reqId);
    }
    this.emit("status", { connected: false, code: ev.code, reason: ev.reason, fatal: Boolean(fatal) });
    if (fatal || this.closedForGood) return;
    const delay = ev.code === 1012 ? 200 + Math.random() * 800 : this.backoff * (0.5 + Math.random());
    this.backoff = Math.min(this.backoff * 2, 15_000);
    setTimeout(() => this.connect(), delay);
  }
  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }
  /** Send a command with a fresh req_id; resolves with its reply (grab_result, ack, pong...).
   *  With `resend`, an idempotent command (grab, claim) survives a reconnect: it is sent again
   *  with the same req_id after the next welcome. */
  request(msg, timeoutMs = 10_000, { resend = false } = {}) {
    const reqId = `${msg.type}-${Date.now().toString(36)}-${this.nextId++}`;
    const sent = { ...msg, req_id: reqId };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(reqId);
        reject(new Error(`no answer to ${msg.type}`));
      }, timeoutMs);
      this.pending.set(reqId, { resolve, reject, timer, resend, msg: sent });
      this.send(sent);
    });
  }
  startPings() {
    clearInterval(this.pingTimer);
    const ping = async () => {
      const sentAt = Date.now();
      const msg = { type: "ping", t: sentAt };
      if (this.clock.rtt !== null) msg.rtt_ms = Math.min(60_000, Math.round(this.clock.rtt));
      try {
        const pong = await this.request(msg, 5000);
        this.clock.sample(sentAt, pong.server_time_ms, Date.now());
        this.emit("clock", this.clock);
      } catch {
        /* the close handler reconnects */
      }
    };
    ping();
    setTimeout(ping, 300);
    this.pingTimer = setInterval(ping, 5000);
  }
  close() {
    this.closedForGood = true;
    if (this.ws) this.ws.close(1000);
  }
}

export const money = (cents) =>
  (cents / 100).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
export const pct = (rate) => `${(rate * 100).toFixed(1)}%`;
export const esc = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
