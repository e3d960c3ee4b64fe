// The host dashboard: the `metrics` push (once a second), `alert` events and the danmaku feed
// from the host's WebSocket; pins, flash sales and red packets through the REST API.
/* global uPlot */
import { LiveSocket, api, askForToken, esc, money, obtainToken, pct, roomFromUrl, tokenClaims } from "./live.js";
import { reason, statusText, t, translatePage } from "./i18n.js";
import { publish } from "./webrtc.js";

const $ = (id) => document.getElementById(id);
const room = roomFromUrl();
let token = null;
let last = null;
const charts = {};
const alertLog = [];
const rendered = { products: "", options: "" }; // re-render only what changed: a click mid-render is lost

const MARKER_STYLE = {
  pin: { color: "#6b7280", label: (m) => `pin ${m.product_id}` },
  sale_start: { color: "#16a34a", label: (m) => `sale ${m.sale_id}` },
  coupon_start: { color: "#16a34a", label: (m) => `coupon ${m.coupon_id}` },
  sold_out: { color: "#dc2626", label: () => "sold out" },
  sale_end: { color: "#9ca3af", label: () => "sale end" },
  coupon_end: { color: "#9ca3af", label: () => "coupon end" },
  red_packet: { color: "#ea580c", label: (m) => `red packet ¥${money(m.total_cents)}` },
};

// -- video: this page's cameras (WHIP) and the room's program ------------------------------------

const video = { program: null, local: new Map() }; // local: camera id -> {seat, stream}

function renderVideo() {
  const p = video.program;
  const live = new Set(p?.live || []);
  const ids = [...new Set([...live, ...video.local.keys()])].sort();
  $("program-state").textContent = p?.main
    ? t("video.state", {
        main: p.main,
        inset: p.layout === "pip" ? t("video.state_inset", { inset: p.inset, corner: t(`corner.${p.inset_corner}`) }) : "",
        beauty: p.beauty ?? 0,
      })
    : t("video.none");
  const box = $("cams");
  for (const el of [...box.children]) if (!ids.includes(el.dataset.camera)) el.remove();
  for (const id of ids) {
    let el = box.querySelector(`[data-camera="${CSS.escape(id)}"]`);
    if (!el) {
      el = document.createElement("figure");
      el.className = "cam";
      el.dataset.camera = id;
      el.dataset.testid = `camera-${id}`;
      el.innerHTML = `<video muted playsinline autoplay></video><figcaption><b>${esc(id)}</b> <span class="badge"></span></figcaption>
        <div class="cam-actions"><button data-main="${esc(id)}" data-testid="main-${esc(id)}">${esc(t("video.main"))}</button>
        <button class="secondary" data-inset="${esc(id)}" data-testid="inset-${esc(id)}">${esc(t("video.inset"))}</button></div>`;
      box.append(el);
    }
    const local = video.local.get(id);
    const preview = el.querySelector("video");
    if (local && preview.srcObject !== local.stream) preview.srcObject = local.stream;
    preview.hidden = !local;
    const badge = el.querySelector(".badge");
    const role = p?.main === id ? "video.on_air" : p?.layout === "pip" && p?.inset === id ? "video.in_inset" : live.has(id) ? "video.live" : "";
    badge.textContent = role ? t(role) : "";
    badge.dataset.status = role ? "live" : "";
    el.classList.toggle("on-air", p?.main === id);
  }
  $("beauty").value = p?.beauty ?? 0;
  if (p?.inset_corner) $("pip-corner").value = p.inset_corner;
}

function renderVideoFigures(v) {
  if (!v) return;
  const kbps = Object.fromEntries((v.cameras || []).map((c) => [c.camera, c]));
  $("video-figures").textContent = t("video.figures", { whep: v.whep_viewers, hls: v.hls_viewers });
  for (const el of $("cams").children) {
    const c = kbps[el.dataset.camera];
    const info = el.querySelector(".cam-info") || el.querySelector("figcaption").appendChild(document.createElement("small"));
    info.className = "cam-info";
    info.textContent = c ? `${c.width ?? "–"}×${c.height ?? "–"} · ${c.fps} fps · ${c.kbps ?? "–"} kbps` : "";
  }
}

async function putProgram(change) {
  const p = video.program || {};
  const body = { layout: p.layout || "single", main: p.main, inset: p.inset || undefined,
                 inset_corner: $("pip-corner").value, beauty: Number($("beauty").value), ...change };
  if (body.layout !== "pip") delete body.inset;
  try {
    const program = await api("PUT", `/api/v1/rooms/${encodeURIComponent(room)}/program`, token, body);
    video.program = { ...program };
    $("video-note").textContent = "";
  } catch (e) {
    $("video-note").textContent = reason(e.code) || e.message;
  }
  renderVideo();
}

async function startCamera() {
  let n = 1;
  while (video.local.has(`cam${n}`) || (video.program?.live || []).includes(`cam${n}`)) n += 1;
  const id = `cam${n}`;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    const seat = await publish(room, id, token, stream);
    video.local.set(id, { seat, stream });
    $("video-note").textContent = "";
  } catch (e) {
    $("video-note").textContent = t("video.failed", { reason: e.message || e.name });
  }
  renderVideo();
}

function wireVideo() {
  $("publish-cam").addEventListener("click", startCamera);
  $("cams").addEventListener("click", (ev) => {
    const main = ev.target.dataset?.main;
    const inset = ev.target.dataset?.inset;
    if (main) putProgram(video.program?.inset === main ? { main, layout: "single" } : { main });
    if (inset && inset !== video.program?.main) putProgram({ layout: "pip", inset });
  });
  $("pip-off").addEventListener("click", () => putProgram({ layout: "single" }));
  $("pip-corner").addEventListener("change", () => video.program?.layout === "pip" && putProgram({}));
  $("beauty").addEventListener("change", () => video.program?.main && putProgram({}));
  window.addEventListener("pagehide", () => video.local.forEach(({ seat }) => seat.stop()));
}

function notice(text) {
  $("notice").textContent = text;
}

function setStatus(status) {
  $("status").textContent = statusText(status);
  $("status").dataset.status = status;
}

function change(rate) {
  if (rate === null || rate === undefined) return "";
  const sign = rate > 0 ? "▲" : rate < 0 ? "▼" : "";
  return t("change.vs", { sign, n: Math.abs(rate * 100).toFixed(0) });
}

/** "¥12.34" typed by the host, in integer cents; null when it is not an amount of yuan. */
export function yuanToCents(text) {
  const m = /^\s*(\d{1,9})(?:[.,](\d{1,2}))?\s*$/.exec(String(text));
  if (!m) return null;
  return Number(m[1]) * 100 + Number((m[2] || "").padEnd(2, "0"));
}

function clockText(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const mm = String(Math.floor(s / 60)).padStart(2, "0");
  return `${mm}:${String(s % 60).padStart(2, "0")}`;
}

// -- charts (uPlot, vendored) ----------------------------------------------------------------

/** Draws the event markers as dashed vertical lines with a label at the top. */
function markersPlugin() {
  return {
    hooks: {
      draw: [
        (u) => {
          const marks = (last && last.markers) || [];
          const { ctx } = u;
          const top = u.bbox.top;
          const height = u.bbox.height;
          ctx.save();
          ctx.font = `${10 * devicePixelRatio}px system-ui, sans-serif`;
          ctx.textBaseline = "alphabetic";
          let row = 0;
          for (const m of marks) {
            const style = MARKER_STYLE[m.kind] || { color: "#6b7280", label: () => m.kind };
            const x = Math.round(u.valToPos(m.minute * 60, "x", true)); // the series are per minute
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            ctx.strokeStyle = style.color;
            ctx.fillStyle = style.color;
            ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
            const nearRight = x > u.bbox.left + u.bbox.width - 120 * devicePixelRatio;
            ctx.textAlign = nearRight ? "right" : "left";
            const dx = (nearRight ? -3 : 3) * devicePixelRatio;
            ctx.fillText(style.label(m), x + dx, top + (12 + 12 * (row++ % 3)) * devicePixelRatio);
          }
          ctx.restore();
        },
      ],
    },
  };
}

function makeChart(el, label, color, fmt) {
  const opts = {
    width: el.clientWidth || 600,
    height: 180,
    plugins: [markersPlugin()],
    scales: { x: { time: true } },
    axes: [{}, { size: 80, values: (u, vals) => vals.map(fmt) }],
    series: [{}, { label, stroke: color, fill: color + "22", width: 2, value: (u, v) => (v == null ? "–" : fmt(v)) }],
    legend: { show: false },
  };
  const chart = new uPlot(opts, [[], []], el);
  new ResizeObserver(() => chart.setSize({ width: el.clientWidth, height: 180 })).observe(el);
  return chart;
}

function renderCharts(m) {
  if (typeof uPlot === "undefined") return;
  charts.online ||= makeChart($("chart-online"), "online", "#2563eb", (v) => String(Math.round(v)));
  charts.gmv ||= makeChart($("chart-gmv"), "GMV", "#db2777", (v) => `¥${money(v)}`);
  const xs = m.series.online.map((_, i) => (m.series_start_minute + i) * 60);
  // at least the last ten minutes, so that a new room's first points do not span years
  const end = xs[xs.length - 1] + 30;
  const x = { min: Math.min(xs[0], end - 630), max: end };
  charts.online.setData([xs, m.series.online]);
  charts.online.setScale("x", x);
  charts.gmv.setData([xs, m.series.gmv_cents]);
  charts.gmv.setScale("x", x);
}

// -- panels ----------------------------------------------------------------------------------

function renderCards(m) {
  $("c-gmv").textContent = `¥${money(m.gmv_cents)}`;
  $("d-gmv").textContent = change(m.windows?.change.gmv_cents);
  $("c-online").textContent = m.online;
  $("c-peak").textContent = t("card.peak", { n: m.peak_online });
  $("c-paid").textContent = m.paid_count;
  $("c-buyers").textContent = t("card.buyers", { n: m.buyer_uv });
  $("c-orders").textContent = m.order_count;
  $("d-orders").textContent = change(m.windows?.change.order_count);
  $("c-uv").textContent = m.uv;
  $("c-pv").textContent = t("card.pv", { n: m.pv });
  $("c-watch").textContent = m.avg_watch_s.toFixed(0);
  $("c-gpm").textContent = `¥${money(m.gpm_cents)}`;
  $("c-uvv").textContent = `¥${money(m.uv_value_cents)}`;
  $("c-conv").textContent = pct(m.conversion_rate);
  $("c-likes").textContent = `${m.likes} · ${m.danmaku}`;
  $("d-danmaku").textContent = change(m.windows?.change.danmaku);
}

function renderFunnel(m) {
  const steps = [
    [t("funnel.saw"), m.exposure_uv, null],
    [t("funnel.clicked"), m.click_uv, m.ctr],
    [t("funnel.ordered"), m.order_uv, m.click_uv ? m.order_uv / m.click_uv : 0],
    [t("funnel.paid"), m.buyer_uv, m.order_uv ? m.buyer_uv / m.order_uv : 0],
  ];
  const top = Math.max(1, m.exposure_uv);
  $("funnel").innerHTML = steps
    .map(([name, n, rate], i) => `<div class="step" data-step="${i}">
        <span class="name">${name}</span>
        <span class="bar" style="width:${Math.max(2, (100 * n) / top)}%"></span>
        <span class="n" data-testid="funnel-${i}">${n}</span>
        <span class="rate">${rate === null ? "" : pct(rate)}</span></div>`)
    .join("") + `<p class="muted">${esc(t("funnel.summary", { a: pct(m.click_to_pay_rate), b: pct(m.conversion_rate) }))}</p>`;
}

function renderProducts(m) {
  const rows = m.products
    .map((p) => `<tr data-product="${esc(p.product_id)}">
      <td><b>${esc(p.title ?? p.product_id)}</b><br><small class="muted">${esc(p.product_id)}</small></td>
      <td>${p.price_cents == null ? "–" : "¥" + money(p.price_cents)}</td>
      <td>${p.exposure_uv}</td><td>${p.click_uv}</td>
      <td>${p.exposure_uv ? pct(p.click_uv / p.exposure_uv) : "–"}</td>
      <td>${p.order_count}</td><td>${p.paid_count}</td><td>¥${money(p.gmv_cents)}</td>
      <td>${p.stock_left ?? "–"}</td>
      <td><button class="small" data-pin="${esc(p.product_id)}">${esc(t("pin"))}</button></td></tr>`)
    .join("");
  if (rows !== rendered.products) $("products").innerHTML = rendered.products = rows;
  const options = m.products
    .filter((p) => p.title)
    .map((p) => `<option value="${esc(p.product_id)}">${esc(p.title)}</option>`)
    .join("");
  if (options !== rendered.options) {
    const select = $("sale-product");
    const chosen = select.value;
    select.innerHTML = rendered.options = options;
    if (chosen) select.value = chosen;
  }
}

function dropNote(d, now) {
  if (d.status === "countdown") return t("drops.starts_in", { t: clockText(d.starts_at_ms - now) });
  if (d.status === "live") return t("drops.ends_in", { t: clockText(d.ends_at_ms - now) });
  return "";
}

function renderDrops(m) {
  const now = m.ts_ms;
  const sales = m.drops.slice(-8).map((d) => ({ at: d.starts_at_ms, html: `<tr data-drop="${esc(d.sale_id || d.coupon_id)}"
      data-status="${d.status}"><td>${esc(d.title || d.product_id)}<br><small class="muted">${esc(d.sale_id || d.coupon_id)}</small></td>
      <td><span class="badge" data-status="${d.status}">${esc(statusText(d.status))}</span></td>
      <td>${d.stock_left}/${d.stock}</td><td>${d.pending ?? "–"}</td><td>${d.paid ?? d.claimed ?? "–"}</td>
      <td data-testid="drop-note">${esc(dropNote(d, now))}</td></tr>` }));
  const packets = (m.red_packets || []).slice(-8).map((p) => {
    const notes = [];
    if (p.status === "countdown") notes.push(t("drops.starts_in", { t: clockText(p.starts_at_ms - now) }));
    if (p.refunded_cents) notes.push(t("drops.refunded", { amount: money(p.refunded_cents) }));
    if (p.luckiest) notes.push(t("drops.luckiest", { user: p.luckiest.user, amount: money(p.luckiest.amount_cents) }));
    return { at: p.starts_at_ms, html: `<tr data-packet="${esc(p.packet_id)}" data-status="${p.status}">
      <td>${esc(t("drops.packet", { total: money(p.total_cents) }))}<br><small class="muted">${esc(p.packet_id)}</small></td>
      <td><span class="badge" data-status="${p.status}">${esc(statusText(p.status))}</span></td>
      <td>${esc(t("drops.packet_left", { amount: money(p.left_cents) }))}</td><td>–</td>
      <td>${p.claimed_count}/${p.count} · ¥${money(p.claimed_cents)}</td><td data-testid="packet-note">${esc(notes.join(" · "))}</td></tr>` };
  });
  const rows = [...sales, ...packets].sort((a, b) => b.at - a.at).map((r) => r.html);
  $("drops").innerHTML = rows.join("") || `<tr><td colspan="6" class="muted">${esc(t("drops.none"))}</td></tr>`;
}

function renderAlerts(firing) {
  $("alerts").innerHTML = firing.length
    ? firing.map((a) => `<li class="alert ${a.severity}" data-alert="${esc(a.alert_id)}">
        <b>${esc(a.kind.replace(/_/g, " "))}</b> ${esc(a.message)}
        <small>${a.since_ms ? esc(t("alerts.since", { t: new Date(a.since_ms).toLocaleTimeString() })) : esc(t("alerts.now"))}</small></li>`).join("")
    : `<li class="muted">${esc(t("alerts.clear"))}</li>`;
  $("alert-log").innerHTML = alertLog
    .slice(-10)
    .reverse()
    .map((a) => `<li data-status="${a.status}">${new Date(a.ts_ms).toLocaleTimeString()} · ${esc(a.kind.replace(/_/g, " "))}
      <b>${esc(t(`alert.${a.status}`))}</b></li>`)
    .join("");
}

function render(m) {
  last = m;
  renderCards(m);
  renderFunnel(m);
  renderProducts(m);
  renderDrops(m);
  renderVideoFigures(m.video);
  renderAlerts(m.alerts || []);
  renderCharts(m);
  $("updated").textContent = t("dash.updated", { t: new Date(m.ts_ms).toLocaleTimeString() });
}

function addDanmaku(item) {
  const li = document.createElement("li");
  li.dataset.id = item.id;
  li.innerHTML = `<b>${esc(item.name || item.user)}</b> ${esc(item.text)}`;
  const feed = $("feed");
  feed.prepend(li);
  while (feed.childElementCount > 100) feed.lastElementChild.remove();
}

// -- host actions ----------------------------------------------------------------------------

async function act(fn) {
  try {
    const done = await fn();
    notice("");
    return done;
  } catch (e) {
    notice(e.code === "invalid" || e.code === "conflict" ? e.message : reason(e.code));
    return null;
  }
}

/** The form's fields: money (`price`, `total`, typed in yuan) as integer cents, ids as text,
 *  the rest as integers.  Throws on an amount that is not yuan with at most two decimals. */
function formBody(form) {
  const body = {};
  for (const [k, v] of new FormData(form)) {
    if (v === "") continue;
    if (k === "product_id") body[k] = v;
    else if (k === "price" || k === "total") {
      const cents = yuanToCents(v);
      if (cents === null) throw Object.assign(new Error(t("form.bad_money")), { code: "invalid" });
      body[`${k === "price" ? "price" : "total"}_cents`] = cents;
    } else body[k] = Number(v);
  }
  return body;
}

async function hostToken() {
  const given = await obtainToken("viewer", "dashboard-lookup", "Dashboard");
  if (!given) return null;
  const claims = tokenClaims(given);
  if (!claims) return null; // not a JWT: ask for another
  if (claims.role !== "viewer") return given; // a host or admin token came in the URL
  const info = await api("GET", `/api/v1/rooms/${encodeURIComponent(room)}`, given);
  return obtainToken("host", info.host, "Host"); // --dev: the room's own host
}

async function main() {
  translatePage();
  document.title = t("dash.title");
  const lang = new URLSearchParams(location.search).get("lang");
  $("viewer-link").href = `viewer.html?room=${encodeURIComponent(room)}${lang ? `&lang=${lang}` : ""}`;
  token = await hostToken();
  if (!token) return askForToken($("token-box"), "host");
  try {
    render(await api("GET", `/api/v1/rooms/${encodeURIComponent(room)}/metrics`, token));
  } catch (e) {
    if (e.status === 403) return notice(`${t("dash.need_host")} (${e.message})`);
    throw e;
  }
  const sock = new LiveSocket(room, token);
  sock.on("welcome", (w) => {
    notice("");
    $("title").textContent = w.room.title;
    document.title = `${w.room.title} · ${t("dash.title")}`;
    setStatus(w.room.status);
    video.program = w.program || null;
    renderVideo();
  });
  sock.on("program", (p) => {
    video.program = p;
    renderVideo();
  });
  sock.on("metrics", render);
  sock.on("alert", (a) => {
    alertLog.push(a);
    if (last) renderAlerts(last.alerts || []);
  });
  sock.on("room", (m) => setStatus(m.status));
  sock.on("danmaku", (m) => m.items.forEach(addDanmaku));
  sock.on("danmaku_deleted", (m) => document.querySelector(`#feed li[data-id="${m.id}"]`)?.remove());
  sock.on("status", (s) => {
    setStatus(s.fatal ? "closed" : "reconnecting");
    notice(s.fatal ? t("dash.closed", { reason: s.reason || s.code }) : t("dash.reconnecting"));
  });
  sock.connect();
  wireVideo();
  renderVideo();

  const base = `/api/v1/rooms/${encodeURIComponent(room)}`;
  $("products").addEventListener("click", (ev) => {
    const pid = ev.target.dataset?.pin;
    if (pid) act(() => api("POST", `${base}/products/${encodeURIComponent(pid)}/pin`, token));
  });
  const confirm = (form, text) => {
    form.querySelector(".done").textContent = text;
  };
  $("sale-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    confirm(form, "");
    const sale = await act(() => api("POST", `${base}/flash-sales`, token, formBody(form)));
    if (sale) confirm(form, t("form.sale_done", { id: sale.sale_id, t: clockText(sale.starts_at_ms - Date.now()) }));
  });
  $("packet-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    confirm(form, "");
    const body = await act(async () => formBody(form));
    if (!body) return;
    const packet = await act(() => api("POST", `${base}/red-packets`, token, body));
    if (packet) {
      confirm(form, t("form.packet_done", { total: money(body.total_cents), n: body.count,
        t: clockText(packet.starts_at_ms - Date.now()) }));
    }
  });
}

main().catch((e) => notice(t("error.generic", { message: e.message })));
