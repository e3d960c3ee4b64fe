// The host dashboard: the `metrics` push (once a second), `alert` events and the danmaku feed
// from the host's WebSocket; pins, flash sales and red packets through the REST API.
/* global uPlot */
import { LiveSocket, api, askForToken, esc, money, obtainToken, pct, roomFromUrl, tokenClaims } from "./live.js";

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

function notice(text) {
  $("notice").textContent = text;
}

function change(rate) {
  if (rate === null || rate === undefined) return "";
  const sign = rate > 0 ? "▲" : rate < 0 ? "▼" : "";
  return `${sign} ${Math.abs(rate * 100).toFixed(0)}% vs previous 5 min`;
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
  $("c-peak").textContent = `peak ${m.peak_online}`;
  $("c-paid").textContent = m.paid_count;
  $("c-buyers").textContent = `${m.buyer_uv} buyers`;
  $("c-orders").textContent = m.order_count;
  $("d-orders").textContent = change(m.windows?.change.order_count);
  $("c-uv").textContent = m.uv;
  $("c-pv").textContent = `${m.pv} views`;
  $("c-watch").textContent = m.avg_watch_s.toFixed(0);
  $("c-gpm").textContent = `¥${money(m.gpm_cents)}`;
  $("c-uvv").textContent = `¥${money(m.uv_value_cents)}`;
  $("c-conv").textContent = pct(m.conversion_rate);
  $("c-likes").textContent = `${m.likes} · ${m.danmaku}`;
  $("d-danmaku").textContent = change(m.windows?.change.danmaku);
}

function renderFunnel(m) {
  const steps = [
    ["Saw a product", m.exposure_uv, null],
    ["Clicked", m.click_uv, m.ctr],
    ["Ordered", m.order_uv, m.click_uv ? m.order_uv / m.click_uv : 0],
    ["Paid", m.buyer_uv, m.order_uv ? m.buyer_uv / m.order_uv : 0],
  ];
  const top = Math.max(1, m.exposure_uv);
  $("funnel").innerHTML = steps
    .map(([name, n, rate], i) => `<div class="step" data-step="${i}">
        <span class="name">${name}</span>
        <span class="bar" style="width:${Math.max(2, (100 * n) / top)}%"></span>
        <span class="n" data-testid="funnel-${i}">${n}</span>
        <span class="rate">${rate === null ? "" : pct(rate)}</span></div>`)
    .join("") + `<p class="muted">Click → pay ${pct(m.click_to_pay_rate)} · viewers → buyers ${pct(m.conversion_rate)}</p>`;
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
      <td><button class="small" data-pin="${esc(p.product_id)}">Pin</button></td></tr>`)
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

function renderDrops(m) {
  $("drops").innerHTML = m.drops
    .slice(-8)
    .reverse()
    .map((d) => `<tr data-status="${d.status}"><td>${esc(d.sale_id || d.coupon_id)}<br>
      <small class="muted">${esc(d.product_id)}</small></td><td><span class="badge" data-status="${d.status}">${d.status}</span></td>
      <td>${d.stock_left}/${d.stock}</td><td>${d.pending ?? "–"}</td><td>${d.paid ?? d.claimed ?? "–"}</td></tr>`)
    .join("") || `<tr><td colspan="5" class="muted">No drops yet</td></tr>`;
}

function renderAlerts(firing) {
  $("alerts").innerHTML = firing.length
    ? firing.map((a) => `<li class="alert ${a.severity}" data-alert="${esc(a.alert_id)}">
        <b>${esc(a.kind.replace(/_/g, " "))}</b> ${esc(a.message)}
        <small>${a.since_ms ? `since ${new Date(a.since_ms).toLocaleTimeString()}` : "now"}</small></li>`).join("")
    : `<li class="muted">All clear</li>`;
  $("alert-log").innerHTML = alertLog
    .slice(-10)
    .reverse()
    .map((a) => `<li data-status="${a.status}">${new Date(a.ts_ms).toLocaleTimeString()} · ${esc(a.kind.replace(/_/g, " "))}
      <b>${a.status}</b></li>`)
    .join("");
}

function render(m) {
  last = m;
  renderCards(m);
  renderFunnel(m);
  renderProducts(m);
  renderDrops(m);
  renderAlerts(m.alerts || []);
  renderCharts(m);
  $("updated").textContent = `updated ${new Date(m.ts_ms).toLocaleTimeString()}`;
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
    await fn();
    notice("");
  } catch (e) {
    notice(e.message);
  }
}

function formBody(form) {
  const body = {};
  for (const [k, v] of new FormData(form)) if (v !== "") body[k] = k === "product_id" ? v : Number(v);
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
  $("viewer-link").href = `viewer.html?room=${encodeURIComponent(room)}`;
  token = await hostToken();
  if (!token) return askForToken($("token-box"), "host");
  render(await api("GET", `/api/v1/rooms/${encodeURIComponent(room)}/metrics`, token));
  const sock = new LiveSocket(room, token);
  sock.on("welcome", (w) => {
    notice("");
    $("title").textContent = w.room.title;
    document.title = `${w.room.title} · dashboard`;
    $("status").textContent = w.room.status;
    $("status").dataset.status = w.room.status;
  });
  sock.on("metrics", render);
  sock.on("alert", (a) => {
    alertLog.push(a);
    if (last) renderAlerts(last.alerts || []);
  });
  sock.on("room", (m) => {
    $("status").textContent = m.status;
    $("status").dataset.status = m.status;
  });
  sock.on("danmaku", (m) => m.items.forEach(addDanmaku));
  sock.on("danmaku_deleted", (m) => document.querySelector(`#feed li[data-id="${m.id}"]`)?.remove());
  sock.on("status", (s) => notice(s.fatal ? `Closed: ${s.reason || s.code}` : "Reconnecting…"));
  sock.connect();

  const base = `/api/v1/rooms/${encodeURIComponent(room)}`;
  $("products").addEventListener("click", (ev) => {
    const pid = ev.target.dataset?.pin;
    if (pid) act(() => api("POST", `${base}/products/${encodeURIComponent(pid)}/pin`, token));
  });
  $("sale-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(() => api("POST", `${base}/flash-sales`, token, formBody(ev.target)));
  });
  $("packet-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(() => api("POST", `${base}/red-packets`, token, formBody(ev.target)));
  });
}

main().catch((e) => notice(`Something went wrong: ${e.message}`));
