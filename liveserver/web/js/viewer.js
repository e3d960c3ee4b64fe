// The viewer's H5 page: danmaku overlay, pinned product, flash sales and coupons with a
// countdown on the server's clock, grab, pay, red packets.  Everything goes through /ws and
// the public API.  Words come from i18n.js (Simplified Chinese first, ?lang=en).
import { LiveSocket, api, askForToken, esc, money, obtainToken, roomFromUrl } from "./live.js";
import { reason, statusText, t, translatePage } from "./i18n.js";
import { watch } from "./webrtc.js";

const $ = (id) => document.getElementById(id);
const room = roomFromUrl();

// The program over WHEP (low latency), or over HLS (hls.js, loaded only then) where WebRTC cannot
// connect or `?video=hls` asks for it: watched while a camera of the room is live, under the danmaku.
const video = { seat: null, starting: false, live: [], retry: null, hls: null, failures: 0 };
const WEBRTC_CONNECT_MS = 8000; // a seat that has not connected by then falls back to HLS

function loadHls() {
  if (window.Hls) return Promise.resolve(window.Hls);
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "vendor/hls/hls.light.min.js";
    script.onload = () => resolve(window.Hls);
    script.onerror = reject;
    document.head.append(script);
  });
}

async function startHls() {
  const el = $("program");
  el.dataset.transport = "hls";
  const url = `/live/${encodeURIComponent(room)}/index.m3u8`;
  el.onplaying = () => {
    el.hidden = false;
    $("unmute").hidden = !el.muted;
  };
  const Hls = await loadHls().catch(() => null);
  if (Hls?.isSupported()) {
    video.hls = new Hls({ liveSyncDurationCount: 2, manifestLoadingMaxRetry: 30, manifestLoadingRetryDelay: 2000 });
    video.hls.on(Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return;
      // the playlist appears with the first segment (~2 s after the first camera): start again
      video.hls?.destroy();
      video.hls = null;
      if (video.live.length) video.retry = setTimeout(startVideo, 2000);
    });
    video.hls.loadSource(url);
    video.hls.attachMedia(el);
  } else if (el.canPlayType("application/vnd.apple.mpegurl")) {
    el.src = url; // no Media Source Extensions (older iPhones): the browser's own HLS
  }
  el.play().catch(() => {});
}

function onProgram(program) {
  video.live = program?.live || [];
  const el = $("program");
  el.dataset.main = program?.main || "";
  el.dataset.layout = program?.layout || "";
  if (video.live.length && !video.seat && !video.starting) startVideo();
  if (!video.live.length) stopVideo();
}

async function startVideo() {
  clearTimeout(video.retry);
  if (video.hls || video.failures >= 2 || new URLSearchParams(location.search).get("video") === "hls") {
    if (!video.hls) await startHls();
    return;
  }
  video.starting = true;
  const el = $("program");
  try {
    video.seat = await watch(room, state.token, el);
    el.dataset.transport = "webrtc";
    const seat = video.seat;
    setTimeout(() => {
      if (video.seat === seat && seat.pc.connectionState !== "connected") {
        video.failures = 2; // WebRTC does not get through here: the crowd's way, HLS
        stopVideo();
        startVideo();
      }
    }, WEBRTC_CONNECT_MS);
    el.onplaying = () => {
      el.hidden = false;
      $("unmute").hidden = !el.muted; // browsers start a video muted until the viewer taps
    };
    video.seat.pc.onconnectionstatechange = () => {
      if (["failed", "closed"].includes(video.seat?.pc.connectionState)) {
        stopVideo();
        if (video.live.length) video.retry = setTimeout(startVideo, 2000);
      }
    };
  } catch (e) {
    // 409: no camera live yet (Retry-After); anything else: try again a little later, then HLS
    if (e.status !== 409) video.failures += 1;
    if (video.live.length) video.retry = setTimeout(startVideo, 1000 * (e.retryAfterS || 3));
  } finally {
    video.starting = false;
  }
}

$("unmute").addEventListener("click", () => {
  $("program").muted = false;
  $("unmute").hidden = true;
});

function stopVideo() {
  clearTimeout(video.retry);
  video.seat?.stop();
  video.seat = null;
  video.hls?.destroy();
  video.hls = null;
  $("program").hidden = true;
  $("unmute").hidden = true;
}

const state = {
  drops: new Map(), // sale_id / coupon_id -> latest flash_sale / coupon message
  packets: new Map(), // packet_id -> latest red_packet message
  cards: new Map(), // drop id -> its card's elements
  held: new Map(), // drop id -> units this viewer holds (won, not cancelled)
  orders: new Map(), // drop id -> {id, expires, status}
  results: new Map(), // drop id -> the text under its Grab button
  grabbing: new Set(),
  exposed: new Set(),
  claimed: new Map(), // packet_id -> claim_result
  dismissed: new Set(),
  roomStatus: "connecting",
  online: 0,
  payToken: null,
};

function viewerSub() {
  let sub = sessionStorage.getItem("liveserver.viewer.sub");
  if (!sub) {
    sub = `viewer-${Math.random().toString(36).slice(2, 8)}`;
    sessionStorage.setItem("liveserver.viewer.sub", sub);
  }
  return sub;
}

function notice(text) {
  $("notice").textContent = text;
}

const dropId = (d) => d.sale_id || d.coupon_id;

function funnel(sock, kind, productId) {
  if (!productId) return;
  if (kind === "exposure") {
    if (state.exposed.has(productId)) return;
    state.exposed.add(productId);
  }
  sock.send({ type: kind, product_id: productId });
}

function clockText(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

// -- the room bar ------------------------------------------------------------------------------

function renderRoom() {
  const badge = $("status");
  badge.textContent = statusText(state.roomStatus);
  badge.dataset.status = state.roomStatus;
  $("online").textContent = state.online;
  // an ended room has no audience to count
  $("watching").textContent = state.roomStatus === "ended" ? "" : t("watching", { n: state.online });
}

// -- danmaku overlay -------------------------------------------------------------------------

const LANES = 6;
let lane = 0;
function fly(item) {
  const lanes = $("danmaku-lanes");
  if (lanes.childElementCount > 60) return; // a busy room: the overlay shows what it can
  const el = document.createElement("div");
  el.className = "bullet" + (item.prio ? " host" : "");
  el.dataset.id = item.id;
  el.innerHTML = `<b>${esc(item.name || item.user)}</b> ${esc(item.text)}`;
  el.style.top = `${(lane++ % LANES) * (100 / LANES) + 2}%`;
  el.style.animationDuration = `${7 + Math.random() * 3}s`;
  el.addEventListener("animationend", () => el.remove());
  lanes.appendChild(el);
}

// -- drops: one card per open flash sale or coupon --------------------------------------------

function openDrops() {
  const open = [...state.drops.values()].filter((d) => d.status !== "ended" || state.orders.has(dropId(d)));
  const rank = { live: 0, countdown: 1, sold_out: 2, ended: 3 };
  return open.sort((a, b) => rank[a.status] - rank[b.status] || a.starts_at_ms - b.starts_at_ms);
}

function card(sock, d) {
  const id = dropId(d);
  let c = state.cards.get(id);
  if (c) return c;
  const el = $("drop-card").content.firstElementChild.cloneNode(true);
  translatePage(el);
  el.dataset.dropId = id;
  c = { el };
  for (const part of el.querySelectorAll("[data-role]")) c[part.dataset.role] = part;
  c.grab.addEventListener("click", () => grab(sock, id));
  c.pay.addEventListener("click", () => pay(sock, id));
  c.cancel.addEventListener("click", () => cancel(sock, id));
  state.cards.set(id, c);
  return c;
}

function renderDrops(sock) {
  const shown = openDrops();
  const list = $("drops");
  const keep = new Set(shown.map(dropId));
  for (const [id, c] of state.cards) {
    if (!keep.has(id)) {
      c.el.remove();
      state.cards.delete(id);
    }
  }
  shown.forEach((d, i) => {
    const c = card(sock, d);
    if (list.children[i] !== c.el) list.insertBefore(c.el, list.children[i] || null);
    renderDrop(sock, d, c);
  });
}

function renderDrop(sock, d, c) {
  const id = dropId(d);
  funnel(sock, "exposure", d.product_id);
  const now = sock.clock.now();
  const coupon = Boolean(d.coupon_id);
  c.kind.textContent = coupon ? t("drop.coupon") : t("drop.sale");
  c.title.textContent = d.title || d.product_id;
  c.price.textContent = coupon ? t("drop.off", { amount: money(d.discount_cents) }) : `¥${money(d.price_cents)}`;
  const list = coupon ? null : d.original_price_cents;
  c["list-price"].textContent = list && list > d.price_cents ? `¥${money(list)}` : "";
  const startsIn = d.starts_at_ms - now;
  const started = startsIn <= 0;
  const over = d.status === "ended" || now >= d.ends_at_ms;
  const soldOut = d.status === "sold_out" || d.stock_left <= 0;
  c.stock.textContent = over ? "" : soldOut ? t("drop.sold_out") : started ? t("drop.left", { n: d.stock_left })
    : t("drop.in_stock", { n: d.stock_left });
  c.countdown.textContent = over ? statusText("ended") : soldOut ? t("drop.sold_out")
    : !started ? t("drop.starts_in", { t: clockText(startsIn) }) : t("drop.ends_in", { t: clockText(d.ends_at_ms - now) });
  const held = state.held.get(id) || 0;
  const atLimit = d.per_user_limit ? held >= d.per_user_limit : false;
  const busy = state.grabbing.has(id);
  c.grab.hidden = over; // an ended sale keeps its card only for the viewer's order
  c.grab.disabled = busy || !started || soldOut || over || atLimit;
  c.grab.textContent = busy ? t("grab.busy") : atLimit ? t("grab.done") : over ? t("grab.ended")
    : soldOut ? t("grab.sold_out") : started ? t("grab.go") : t("grab.wait");
  const order = state.orders.get(id);
  // once the order moved on (paid, cancelled, expired) its line says so: the grab's cheer is done
  c.result.textContent = order && order.status !== "pending" ? "" : state.results.get(id) || "";
  renderOrder(sock, id, c);
}

async function grab(sock, id) {
  const d = state.drops.get(id);
  if (!d || state.grabbing.has(id)) return;
  state.grabbing.add(id);
  renderDrops(sock);
  funnel(sock, "click", d.product_id);
  const msg = { type: "grab", [d.coupon_id ? "coupon_id" : "sale_id"]: id };
  try {
    const r = await sock.request(msg, 30_000, { resend: true });
    if (r.type === "error") {
      state.results.set(id, reason(r.code));
    } else if (r.ok) {
      state.results.set(id, d.coupon_id ? t("grab.got_coupon") : t("grab.got"));
      state.held.set(id, (state.held.get(id) || 0) + 1);
      if (r.order_id) state.orders.set(id, { id: r.order_id, expires: r.expires_at_ms, status: "pending" });
    } else {
      if (r.reason === "limit") state.held.set(id, Math.max(state.held.get(id) || 0, d.per_user_limit || 1));
      state.results.set(id, reason(r.reason));
    }
  } catch {
    state.results.set(id, t("grab.no_answer"));
  } finally {
    state.grabbing.delete(id);
    renderDrops(sock);
  }
}

function renderOrder(sock, id, c) {
  const o = state.orders.get(id);
  c.order.hidden = !o;
  if (!o) return;
  const left = o.expires - sock.clock.now();
  const key = o.status === "pending" ? (left > 0 ? "order.pending" : "order.late") : `order.${o.status}`;
  c["order-text"].textContent = t(key, { id: o.id, t: clockText(left) });
  c.order.dataset.status = o.status;
  c.pay.hidden = o.status !== "pending" || left <= 0 || !state.payToken;
  c.cancel.hidden = o.status !== "pending" || left <= 0;
}

async function pay(sock, id) {
  const o = state.orders.get(id);
  try {
    const r = await api("POST", `/api/v1/orders/${encodeURIComponent(o.id)}/pay`, state.payToken);
    o.status = r.status;
  } catch (e) {
    notice(reason(e.code));
  }
  renderDrops(sock);
}

async function cancel(sock, id) {
  const o = state.orders.get(id);
  try {
    const r = await api("POST", `/api/v1/orders/${encodeURIComponent(o.id)}/cancel`, state.token);
    o.status = r.status;
    state.held.set(id, Math.max(0, (state.held.get(id) || 1) - 1)); // the unit went back: may grab again
    state.results.delete(id);
  } catch (e) {
    notice(reason(e.code));
  }
  renderDrops(sock);
}

// -- red packets -----------------------------------------------------------------------------

function currentPacket() {
  const open = [...state.packets.values()].filter(
    (p) => (p.status === "live" || p.status === "countdown") && !state.dismissed.has(p.packet_id),
  );
  open.sort((a, b) => a.starts_at_ms - b.starts_at_ms);
  return open[0] || [...state.claimed.keys()].map((id) => state.packets.get(id)).find(
    (p) => p && !state.dismissed.has(p.packet_id),
  ) || null;
}

function renderPacket(sock) {
  const p = state.roomStatus === "ended" ? null : currentPacket();
  $("packet").hidden = !p;
  if (!p) return;
  const startsIn = p.starts_at_ms - sock.clock.now();
  const claim = state.claimed.get(p.packet_id);
  $("packet-info").textContent = startsIn > 0 ? t("packet.opens_in", { t: clockText(startsIn) })
    : claim ? "" : t("packet.shares", { n: p.count });
  const open = $("packet-open");
  open.hidden = Boolean(claim);
  open.disabled = startsIn > 0 || p.status !== "live";
  $("packet-result").textContent = claim
    ? claim.ok ? t("packet.got", { amount: money(claim.amount_cents) }) : reason(claim.reason)
    : "";
}

async function claim(sock) {
  const p = currentPacket();
  if (!p) return;
  $("packet-open").disabled = true;
  try {
    const r = await sock.request({ type: "claim", packet_id: p.packet_id }, 30_000, { resend: true });
    state.claimed.set(p.packet_id, r.type === "error" ? { ok: false, reason: r.code } : r);
  } catch {
    state.claimed.set(p.packet_id, { ok: false, reason: "unavailable" });
  }
  renderPacket(sock);
}

// -- the page --------------------------------------------------------------------------------

function showPinned(sock, p) {
  $("pinned").hidden = !p;
  if (!p) return;
  $("pinned-title").textContent = p.title;
  $("pinned-price").textContent = `¥${money(p.price_cents)}`;
  $("pinned").dataset.productId = p.product_id;
  funnel(sock, "exposure", p.product_id);
}

function onDropMessage(sock, msg) {
  if (msg.type === "red_packet") state.packets.set(msg.packet_id, msg);
  else state.drops.set(dropId(msg), { ...state.drops.get(dropId(msg)), ...msg });
  renderDrops(sock);
  renderPacket(sock);
}

function renderAll(sock) {
  renderRoom();
  renderDrops(sock);
  renderPacket(sock);
}

async function main() {
  translatePage();
  document.title = t("room.default");
  const sub = viewerSub();
  const token = await obtainToken("viewer", sub, `Viewer ${sub.slice(-4)}`);
  if (!token) return askForToken($("token-box"), "viewer");
  state.token = token;
  // --dev only: a demo payment system pays orders (real ones are paid by the platform's backend)
  state.payToken = await obtainToken("admin", "demo-payments", "Demo payments", { fromUrl: false }).catch(() => null);
  const sock = new LiveSocket(room, token);
  sock.on("welcome", (w) => {
    $("title").textContent = w.room.title;
    document.title = w.room.title;
    state.roomStatus = w.room.status;
    state.online = w.room.online;
    $("likes").textContent = w.room.likes ?? 0;
    showPinned(sock, w.pinned);
    onProgram(w.program);
    // the welcome carries every drop and packet still open: what changed while the socket was
    // down (a sale that ended, a packet that expired) must not linger from before
    state.drops.clear();
    state.packets.clear();
    for (const d of w.drops) onDropMessage(sock, d);
    renderAll(sock);
    notice(state.roomStatus === "ended" ? t("viewer.ended") : "");
  });
  sock.on("presence", (m) => {
    state.online = m.online;
    renderRoom();
  });
  sock.on("likes", (m) => ($("likes").textContent = m.total));
  sock.on("program", onProgram);
  sock.on("product_pinned", (m) => showPinned(sock, m));
  sock.on("flash_sale", (m) => onDropMessage(sock, m));
  sock.on("coupon", (m) => onDropMessage(sock, m));
  sock.on("red_packet", (m) => onDropMessage(sock, m));
  sock.on("room", (m) => {
    state.roomStatus = m.status;
    if (m.status === "ended") {
      notice(t("viewer.ended"));
      $("pinned").hidden = true;
    }
    renderAll(sock);
  });
  sock.on("danmaku", (m) => m.items.forEach(fly));
  sock.on("danmaku_deleted", (m) => document.querySelector(`.bullet[data-id="${m.id}"]`)?.remove());
  sock.on("error", (m) => notice(reason(m.code)));
  sock.on("status", (s) => {
    state.roomStatus = s.fatal ? "closed" : "reconnecting";
    renderRoom();
    if (s.fatal) notice(t("viewer.cannot", { reason: s.reason || s.code }));
  });
  sock.connect();

  $("pinned").addEventListener("click", () => funnel(sock, "click", $("pinned").dataset.productId));
  $("packet-open").addEventListener("click", () => claim(sock));
  $("packet-close").addEventListener("click", () => {
    const p = currentPacket();
    if (p) state.dismissed.add(p.packet_id);
    renderPacket(sock);
  });
  $("send-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = $("text").value.trim();
    if (!text) return;
    $("text").value = "";
    const ack = await sock.request({ type: "danmaku", text }).catch(() => ({ ok: false, reason: "unavailable" }));
    if (ack.type === "error") notice(t("notice.not_sent", { reason: reason(ack.code) }));
    else if (!ack.ok) notice(t("notice.not_sent", { reason: reason(ack.reason) }));
  });
  $("like").addEventListener("click", () => sock.send({ type: "like", count: 1 }));
  setInterval(() => renderAll(sock), 200);
}

main().catch((e) => notice(t("error.generic", { message: e.message })));
