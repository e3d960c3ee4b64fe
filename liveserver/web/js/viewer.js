// The viewer's H5 page: danmaku overlay, pinned product, flash sale with a countdown on
// the server's clock, grab, red packets.  Everything goes through /ws and the public API.
import { LiveSocket, api, askForToken, esc, money, obtainToken, roomFromUrl } from "./live.js";

const $ = (id) => document.getElementById(id);
const room = roomFromUrl();
const REASONS = {
  sold_out: "Sold out", limit: "You already have the most you may buy", not_started: "Not started yet",
  ended: "This sale has ended", rate_limited: "Too fast, try again", too_soon: "Too early: wait for zero",
  blocked: "Not available to this account", not_found: "Not found", expired: "Expired",
  empty: "All gone", not_live: "Not open yet",
};

const state = {
  drops: new Map(), // sale_id / coupon_id -> latest flash_sale / coupon message
  packets: new Map(), // packet_id -> latest red_packet message
  exposed: new Set(),
  order: null,
  grabbing: false,
  claimed: new Map(), // packet_id -> claim_result
  dismissed: new Set(),
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
  if (kind === "exposure") {
    if (state.exposed.has(productId)) return;
    state.exposed.add(productId);
  }
  sock.send({ type: kind, product_id: productId });
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

// -- drops -----------------------------------------------------------------------------------

function currentDrop() {
  const open = [...state.drops.values()].filter((d) => d.status !== "ended");
  const rank = { live: 0, countdown: 1, sold_out: 2 };
  open.sort((a, b) => rank[a.status] - rank[b.status] || a.starts_at_ms - b.starts_at_ms);
  return open[0] || null;
}

function clockText(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function renderDrop(sock) {
  const d = currentDrop();
  $("drop").hidden = !d;
  if (!d) return;
  funnel(sock, "exposure", d.product_id);
  const now = sock.clock.now();
  const coupon = Boolean(d.coupon_id);
  $("drop-kind").textContent = coupon ? "Coupon" : "Flash sale";
  $("drop-price").textContent = coupon ? `${money(d.discount_cents)} off` : `¥${money(d.price_cents)}`;
  const startsIn = d.starts_at_ms - now;
  const started = startsIn <= 0;
  // stock_left comes with each announcement (start, sell-out, restock), not with every grab
  $("drop-stock").textContent = started ? (d.status === "sold_out" ? "0 left" : "Limited stock") : `${d.stock_left} in stock`;
  let countdown;
  if (d.status === "sold_out") countdown = "Sold out";
  else if (!started) countdown = `Starts in ${clockText(startsIn)}`;
  else countdown = `Ends in ${clockText(d.ends_at_ms - now)}`;
  $("drop-countdown").textContent = countdown;
  const grab = $("grab");
  grab.disabled = state.grabbing || !started || d.status === "sold_out" || now >= d.ends_at_ms;
  grab.textContent = started ? "Grab" : "Get ready";
}

async function grab(sock) {
  const d = currentDrop();
  if (!d || state.grabbing) return;
  state.grabbing = true;
  renderDrop(sock);
  funnel(sock, "click", d.product_id);
  const msg = { type: "grab", [d.coupon_id ? "coupon_id" : "sale_id"]: dropId(d) };
  try {
    const r = await sock.request(msg, 30_000, { resend: true });
    if (r.type === "error") {
      $("grab-result").textContent = r.message;
    } else if (r.ok) {
      $("grab-result").textContent = d.coupon_id ? "Coupon is yours!" : "Got it!";
      if (r.order_id) {
        state.order = { id: r.order_id, expires: r.expires_at_ms, status: "pending" };
        renderOrder(sock);
      }
    } else {
      $("grab-result").textContent = REASONS[r.reason] || r.reason;
    }
  } catch (e) {
    $("grab-result").textContent = `No answer: ${e.message}`;
  } finally {
    state.grabbing = false;
    renderDrop(sock);
  }
}

function renderOrder(sock) {
  const o = state.order;
  $("order").hidden = !o;
  if (!o) return;
  const left = o.expires - sock.clock.now();
  const text = {
    pending: left > 0 ? `Order ${o.id}: pay within ${clockText(left)}` : `Order ${o.id}: payment time is up`,
    paid: `Order ${o.id}: paid ✓`,
    cancelled: `Order ${o.id}: cancelled`,
  }[o.status] || `Order ${o.id}: ${o.status}`;
  $("order-text").textContent = text;
  $("order").dataset.status = o.status;
  $("pay").hidden = o.status !== "pending" || !state.payToken;
  $("cancel").hidden = o.status !== "pending";
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
  const p = currentPacket();
  $("packet").hidden = !p;
  if (!p) return;
  const startsIn = p.starts_at_ms - sock.clock.now();
  const claim = state.claimed.get(p.packet_id);
  $("packet-info").textContent = startsIn > 0 ? `Opens in ${clockText(startsIn)}` : claim ? "" : `${p.count} shares`;
  const open = $("packet-open");
  open.hidden = Boolean(claim);
  open.disabled = startsIn > 0 || p.status !== "live";
  $("packet-result").textContent = claim
    ? claim.ok ? `You got ¥${money(claim.amount_cents)}` : REASONS[claim.reason] || claim.reason
    : "";
}

async function claim(sock) {
  const p = currentPacket();
  if (!p) return;
  $("packet-open").disabled = true;
  try {
    const r = await sock.request({ type: "claim", packet_id: p.packet_id }, 30_000, { resend: true });
    state.claimed.set(p.packet_id, r.type === "error" ? { ok: false, reason: r.message } : r);
  } catch (e) {
    state.claimed.set(p.packet_id, { ok: false, reason: `no answer: ${e.message}` });
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
  else state.drops.set(dropId(msg), msg);
  renderDrop(sock);
  renderPacket(sock);
}

async function main() {
  const sub = viewerSub();
  const token = await obtainToken("viewer", sub, `Viewer ${sub.slice(-4)}`);
  if (!token) return askForToken($("token-box"), "viewer");
  // --dev only: a demo payment system pays orders (real ones are paid by the platform's backend)
  state.payToken = await obtainToken("admin", "demo-payments", "Demo payments", { fromUrl: false }).catch(() => null);
  const sock = new LiveSocket(room, token);
  sock.on("welcome", (w) => {
    $("title").textContent = w.room.title;
    document.title = w.room.title;
    $("status").textContent = w.room.status;
    $("status").dataset.status = w.room.status;
    $("online").textContent = w.room.online;
    $("likes").textContent = w.room.likes ?? 0;
    showPinned(sock, w.pinned);
    // the welcome carries every drop and packet still open: what changed while the socket was
    // down (a sale that ended, a packet that expired) must not linger from before
    state.drops.clear();
    state.packets.clear();
    for (const d of w.drops) onDropMessage(sock, d);
    renderDrop(sock);
    renderPacket(sock);
    notice("");
  });
  sock.on("presence", (m) => ($("online").textContent = m.online));
  sock.on("likes", (m) => ($("likes").textContent = m.total));
  sock.on("product_pinned", (m) => showPinned(sock, m));
  sock.on("flash_sale", (m) => onDropMessage(sock, m));
  sock.on("coupon", (m) => onDropMessage(sock, m));
  sock.on("red_packet", (m) => onDropMessage(sock, m));
  sock.on("room", (m) => {
    $("status").textContent = m.status;
    $("status").dataset.status = m.status;
    if (m.status === "ended") notice("The live has ended. Thanks for watching!");
  });
  sock.on("danmaku", (m) => m.items.forEach(fly));
  sock.on("danmaku_deleted", (m) => document.querySelector(`.bullet[data-id="${m.id}"]`)?.remove());
  sock.on("error", (m) => notice(m.message));
  sock.on("status", (s) => {
    $("status").textContent = s.fatal ? s.reason || "closed" : "reconnecting";
    if (s.fatal) notice(`Cannot watch: ${s.reason || s.code}`);
  });
  sock.connect();

  $("grab").addEventListener("click", () => grab(sock));
  $("pinned").addEventListener("click", () => funnel(sock, "click", $("pinned").dataset.productId));
  $("packet-open").addEventListener("click", () => claim(sock));
  $("packet-close").addEventListener("click", () => {
    const p = currentPacket();
    if (p) state.dismissed.add(p.packet_id);
    renderPacket(sock);
  });
  $("pay").addEventListener("click", async () => {
    try {
      const o = await api("POST", `/api/v1/orders/${encodeURIComponent(state.order.id)}/pay`, state.payToken);
      state.order.status = o.status;
    } catch (e) {
      notice(e.message);
    }
    renderOrder(sock);
  });
  $("cancel").addEventListener("click", async () => {
    try {
      const o = await api("POST", `/api/v1/orders/${encodeURIComponent(state.order.id)}/cancel`, token);
      state.order.status = o.status;
    } catch (e) {
      notice(e.message);
    }
    renderOrder(sock);
  });
  $("send-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = $("text").value.trim();
    if (!text) return;
    $("text").value = "";
    const ack = await sock.request({ type: "danmaku", text }).catch((e) => ({ ok: false, reason: e.message }));
    if (!ack.ok) notice(ack.reason === "slow_mode" ? "Slow mode: wait a moment" : `Not sent: ${ack.reason || ack.message}`);
  });
  $("like").addEventListener("click", () => sock.send({ type: "like", count: 1 }));
  setInterval(() => {
    renderDrop(sock);
    renderPacket(sock);
    renderOrder(sock);
  }, 200);
}

main().catch((e) => notice(`Something went wrong: ${e.message}`));
