/* dbslayer dashboard: polls /stats and /stats/errors (JSON) every 2 s and draws them.
 *
 * The queries-per-second chart is a rolling series of the qps["1s"] values sampled here, drawn
 * as SVG; the reference hits/slices buckets are drawn as bars. A failed fetch is shown in a
 * banner and the last figures stay on the page. Text goes in through text nodes only.
 */
"use strict";

(function () {
  const S = window.Slayer;
  const { el, fill } = S;

  const INTERVAL_MS = 2000;
  const TIMEOUT_MS = 5000;
  const MAX_SAMPLES = 150; // 5 minutes at 2 s
  const MAX_BUCKETS = 60;
  const MIN_SPAN_MS = 30000; // the qps chart shows at least 30 s
  const SVG_NS = "http://www.w3.org/2000/svg";

  const samples = []; // {t: ms since epoch, q1: qps 1 s, q10: qps 10 s}
  let lastStats = null;
  let paused = false;
  let timer = null;
  let fetches = 0;

  const $ = (id) => document.getElementById(id);

  const tokenSlot = $("token-slot");
  const tokenField = S.tokenField(() => poll());
  tokenSlot.appendChild(tokenField.node);
  if (S.token.get()) tokenSlot.hidden = false;

  /* ------------------------------------------------------------------ fetching */

  async function getJSON(url) {
    const controller = new AbortController();
    const timeout = setTimeout(() => controller.abort(), TIMEOUT_MS);
    try {
      const reply = await S.request(url, { headers: { Accept: "application/json" }, signal: controller.signal });
      const text = await reply.text();
      if (!reply.ok) {
        let message = text.slice(0, 300);
        try {
          const body = JSON.parse(text);
          if (body && body.ERROR) message = body.ERROR;
        } catch (e) {
          /* not JSON */
        }
        const error = new Error(`HTTP ${reply.status}: ${message}`);
        error.status = reply.status;
        throw error;
      }
      return JSON.parse(text);
    } catch (e) {
      if (e.name === "AbortError") throw new Error(`no answer within ${TIMEOUT_MS / 1000} s`);
      if (e instanceof TypeError) throw new Error(`the gateway did not answer (${e.message})`);
      throw e;
    } finally {
      clearTimeout(timeout);
    }
  }

  let polling = false;
  let pollAgain = false;

  /** One round of fetches, then the next in INTERVAL_MS; never two rounds at once. */
  async function poll() {
    clearTimeout(timer);
    timer = null;
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    try {
      await pollOnce();
    } finally {
      polling = false;
    }
    if (pollAgain) {
      pollAgain = false;
      poll();
    } else if (!paused) timer = setTimeout(poll, INTERVAL_MS);
  }

  async function pollOnce() {
    const [stats, errors] = await Promise.allSettled([getJSON("/stats"), getJSON("/stats/errors")]);
    if (stats.status === "fulfilled") {
      fetches += 1;
      lastStats = stats.value;
      sample(stats.value);
      try {
        draw(stats.value);
        showFetchOK();
      } catch (e) {
        showFetchError(new Error("could not draw /stats: " + e.message));
      }
    } else {
      showFetchError(stats.reason);
    }
    if (errors.status === "fulfilled") drawErrors(errors.value);
    else fill($("errors-note"), `could not fetch /stats/errors: ${errors.reason && errors.reason.message}`);
  }

  function showFetchOK() {
    const now = new Date();
    const stamp = $("last-updated");
    stamp.textContent = S.fmtClock(now);
    stamp.setAttribute("data-fetches", String(fetches));
    stamp.setAttribute("datetime", now.toISOString());
    $("fetch-dot").className = "dot " + (paused ? "paused" : "ok");
    $("fetch-error").hidden = true;
  }

  function showFetchError(error) {
    const message = (error && error.message) || String(error);
    const box = $("fetch-error");
    const since = lastStats ? ` The figures below are from ${$("last-updated").textContent}.` : "";
    const extra = [];
    if (error && (error.status === 401 || error.status === 403)) {
      tokenSlot.hidden = false;
      extra.push("Monitoring is protected: enter an admin token at the top right.");
    }
    fill(
      box,
      el("span", { class: "error-title" }, "Could not fetch /stats"),
      el("div", { class: "error-message" }, message),
      el("div", { class: "error-extra" }, `Retrying every ${INTERVAL_MS / 1000} s.${since}`),
      extra.map((line) => el("div", { class: "error-extra" }, line))
    );
    box.hidden = false;
    $("fetch-dot").className = "dot failed";
  }

  function sample(stats) {
    const qps = stats.qps || {};
    samples.push({ t: Date.now(), q1: Number(qps["1s"]) || 0, q10: Number(qps["10s"]) || 0 });
    while (samples.length > MAX_SAMPLES) samples.shift();
  }

  /* ------------------------------------------------------------------ figures */

  function draw(stats) {
    drawTotals(stats);
    drawQps();
    drawBuckets(stats);
    drawLatency(stats);
    drawStatuses(stats);
    drawBackends(stats);
  }

  function setText(id, text, cls) {
    const node = $(id);
    node.textContent = text;
    if (cls !== undefined) node.className = "value" + (cls ? " " + cls : "");
  }

  function drawTotals(stats) {
    const qps = stats.qps || {};
    setText("total-requests", S.fmtInt(stats.total_requests));
    setText("total-sub", `since ${S.fmtClock(new Date(stats.start_time * 1000))}`);
    $("total-sub").title = `/db and /dbform requests since ${S.fmtEpoch(stats.start_time)}`;
    setText("qps-now", S.fmtNum(qps["1s"], 1));
    setText("qps-sub", `10 s ${S.fmtNum(qps["10s"], 1)} · 60 s ${S.fmtNum(qps["60s"], 1)}`);
    setText("in-flight", S.fmtInt(stats.in_flight));
    setText("uptime", `uptime ${S.fmtDuration(stats.uptime_seconds)}`);
    setText("sql-errors", S.fmtInt(stats.sql_errors), stats.sql_errors ? "bad" : "");
    const st = stats.statements || {};
    setText("statements", `${S.fmtInt(st.read || 0)} reads · ${S.fmtInt(st.write || 0)} writes`);
    const gw = stats.gateway_errors || {};
    const gwTotal = Object.values(gw).reduce((a, b) => a + Number(b || 0), 0);
    setText("gateway-errors", S.fmtInt(gwTotal), gwTotal ? "gw" : "");
    const byStatus = Object.keys(gw)
      .sort()
      .map((k) => `${k}: ${S.fmtInt(gw[k])}`)
      .join(" · ");
    setText("gateway-sub", byStatus || "none");
    const cache = stats.cache || {};
    const hit = Number(cache.hit || 0);
    const miss = Number(cache.miss || 0);
    const bypass = Number(cache.bypass || 0);
    setText("cache-rate", hit + miss ? `${Math.round((100 * hit) / (hit + miss))}%` : "–");
    setText("cache-sub", `${S.fmtInt(hit)} hit · ${S.fmtInt(miss)} miss · ${S.fmtInt(bypass)} bypass`);
    const auth = stats.auth || {};
    setText("auth-ok", S.fmtInt(auth.success || 0));
    const redisErrors = stats.redis && stats.redis.errors ? ` · redis errors ${S.fmtInt(stats.redis.errors)}` : "";
    setText("auth-sub", `ok · ${S.fmtInt(auth.failure || 0)} refused${redisErrors}`);
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** A y scale for values up to max: {top, step}, with at most 4 steps of 1, 2, 2.5 or 5 x 10^k. */
  function scale(max) {
    const target = Math.max(max, 4) / 4;
    const power = Math.pow(10, Math.floor(Math.log10(target)));
    let step = 10 * power;
    for (const m of [1, 2, 2.5, 5, 10]) {
      if (m * power >= target) {
        step = m * power;
        break;
      }
    }
    return { step, top: step * Math.max(1, Math.ceil(Math.max(max, 4) / step - 1e-9)) };
  }

  function fmtAxis(v) {
    if (v >= 10000) return (v / 1000).toFixed(0) + "k";
    if (v >= 1000) return (v / 1000).toFixed(1) + "k";
    return Number.isInteger(v) ? String(v) : String(Number(v.toFixed(2)));
  }

  function yGrid(nodes, pad, w, y, top, step) {
    for (let i = 0; i * step <= top + 1e-9; i++) {
      const v = i * step;
      nodes.push(svg("line", { class: i ? "grid-line" : "axis", x1: pad.left, x2: pad.left + w, y1: y(v), y2: y(v) }));
      nodes.push(svg("text", { x: pad.left - 6, y: y(v) + 4, "text-anchor": "end" }, fmtAxis(v)));
    }
  }

  function chartSize(box) {
    return { width: Math.max(240, box.clientWidth), height: Math.max(120, box.clientHeight) };
  }

  function drawQps() {
    const box = $("qps-box");
    const chart = $("qps-chart");
    const { width, height } = chartSize(box);
    const pad = { left: 40, right: 56, top: 10, bottom: 22 };
    const w = width - pad.left - pad.right;
    const h = height - pad.top - pad.bottom;
    chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
    chart.setAttribute("data-points", String(samples.length));
    const nodes = [];
    const last = samples[samples.length - 1];
    const first = samples[0];
    const span = last ? Math.min(Math.max(last.t - first.t, MIN_SPAN_MS), MAX_SAMPLES * INTERVAL_MS) : MIN_SPAN_MS;
    const right = last ? last.t : Date.now();
    const left = right - span;
    const { top, step } = scale(Math.max(0, ...samples.map((s) => Math.max(s.q1, s.q10))));
    const x = (t) => pad.left + ((t - left) / span) * w;
    const y = (v) => pad.top + h - (v / top) * h;
    yGrid(nodes, pad, w, y, top, step);
    const tickEvery = span > 120000 ? 60000 : span > 60000 ? 30000 : 10000;
    for (let ago = 0; ago <= span; ago += tickEvery) {
      const label = ago === 0 ? "now" : ago >= 60000 ? `-${ago / 60000}m` : `-${ago / 1000}s`;
      nodes.push(svg("text", { x: x(right - ago), y: height - 6, "text-anchor": "middle" }, label));
    }
    const visible = samples.filter((s) => s.t >= left);
    if (visible.length) {
      const points = visible.map((s) => `${x(s.t).toFixed(1)},${y(s.q1).toFixed(1)}`).join(" ");
      const points10 = visible.map((s) => `${x(s.t).toFixed(1)},${y(s.q10).toFixed(1)}`).join(" ");
      const base = y(0).toFixed(1);
      const area = `${x(visible[0].t).toFixed(1)},${base} ${points} ${x(last.t).toFixed(1)},${base}`;
      nodes.push(svg("polygon", { class: "series-area", points: area }));
      nodes.push(svg("polyline", { class: "series10", points: points10 }));
      nodes.push(svg("polyline", { class: "series", id: "qps-line", points, "data-points": visible.length }));
      nodes.push(svg("circle", { class: "now-dot", cx: x(last.t), cy: y(last.q1), r: 3.5 }));
      nodes.push(svg("text", { class: "now-label", x: x(last.t) + 8, y: y(last.q1) + 4 }, S.fmtNum(last.q1, 1)));
    }
    chart.replaceChildren(...nodes);
  }

  function drawBuckets(stats) {
    const box = $("buckets-box");
    const chart = $("buckets-chart");
    const { width, height } = chartSize(box);
    const pad = { left: 40, right: 10, top: 10, bottom: 22 };
    const w = width - pad.left - pad.right;
    const h = height - pad.top - pad.bottom;
    chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const hits = (stats.hits || []).slice(-MAX_BUCKETS).map(Number);
    const slices = (stats.slices || []).slice(-MAX_BUCKETS).map(Number);
    chart.setAttribute("data-buckets", String(hits.length));
    const all = stats.slices || [];
    const seconds = all.length > 1 ? all[all.length - 1] - all[all.length - 2] : null;
    fill($("buckets-legend"), el("code", null, "hits"), " / ", el("code", null, "slices"), seconds ? ` · ${seconds} s each` : "");
    const nodes = [];
    const { top, step } = scale(Math.max(0, ...hits));
    const y = (v) => pad.top + h - (v / top) * h;
    yGrid(nodes, pad, w, y, top, step);
    if (!hits.length) {
      nodes.push(
        svg("text", { class: "empty-label", x: pad.left + w / 2, y: pad.top + h / 2, "text-anchor": "middle" }, "no complete bucket yet")
      );
    } else {
      const slot = w / Math.max(hits.length, 12);
      hits.forEach((v, i) => {
        const when = slices[i] ? S.fmtEpoch(slices[i]) : "";
        const bar = svg("rect", {
          class: "bar",
          x: (pad.left + w - (hits.length - i) * slot + slot * 0.15).toFixed(1),
          y: y(v).toFixed(1),
          width: Math.max(1, slot * 0.7).toFixed(1),
          height: Math.max(0, y(0) - y(v)).toFixed(1),
        });
        bar.appendChild(svg("title", null, `${when}: ${v} requests`));
        nodes.push(bar);
      });
      if (slices.length) {
        const clock = (t) => S.fmtClock(new Date(t * 1000));
        const center = (i) => pad.left + w - (hits.length - i) * slot + slot / 2;
        const xLast = Math.min(center(hits.length - 1), pad.left + w - 24);
        nodes.push(svg("text", { x: xLast, y: height - 6, "text-anchor": "middle" }, clock(slices[slices.length - 1])));
        const xFirst = Math.max(center(0), pad.left + 24);
        if (xLast - xFirst > 90) {
          nodes.push(svg("text", { x: xFirst, y: height - 6, "text-anchor": "middle" }, clock(slices[0])));
        }
      }
    }
    chart.replaceChildren(...nodes);
  }

  function numCell(text) {
    return el("td", { class: "num" }, text);
  }

  function noneRow(columns, text) {
    return el("tr", null, el("td", { class: "none", colspan: columns }, text));
  }

  function drawLatency(stats) {
    const latency = stats.latency_ms || {};
    const names = Object.keys(latency).sort();
    fill(
      $("latency").tBodies[0],
      names.length
        ? names.map((name) => {
            const l = latency[name] || {};
            return el(
              "tr",
              { "data-endpoint": name },
              el("td", { class: "mono" }, "/" + name),
              numCell(S.fmtInt(l.count)),
              numCell(S.fmtMs(l.p50)),
              numCell(S.fmtMs(l.p90)),
              numCell(S.fmtMs(l.p99)),
              numCell(S.fmtMs(l.max))
            );
          })
        : noneRow(6, "no requests yet")
    );
  }

  function drawStatuses(stats) {
    const byStatus = stats.requests_by_status || {};
    const codes = Object.keys(byStatus).sort();
    const total = codes.reduce((a, k) => a + Number(byStatus[k] || 0), 0);
    fill(
      $("statuses").tBodies[0],
      codes.length
        ? codes.map((code) => {
            const n = Number(byStatus[code] || 0);
            const share = total ? n / total : 0;
            return el(
              "tr",
              null,
              el("td", { class: "mono" }, code),
              numCell(S.fmtInt(n)),
              el(
                "td",
                null,
                el("span", { class: "share" + (Number(code) >= 400 ? " error" : ""), style: `width:${Math.max(2, Math.round(share * 120))}px` }),
                ` ${(share * 100).toFixed(1)}%`
              )
            );
          })
        : noneRow(3, "no requests yet")
    );
  }

  /** Galera mode (backends carry "writer"): the writer mark and the node's wsrep state. */
  function galeraRole(b) {
    if (!("writer" in b)) return "—";
    const w = b.wsrep;
    const state = w
      ? `${w.local_state_comment || "state " + w.local_state}, ${w.cluster_status || "?"}, index ${w.local_index ?? "?"} of ${w.cluster_size}`
      : "wsrep unknown";
    return (b.writer ? "writer · " : "") + state;
  }

  function drawBackends(stats) {
    const backends = stats.backends || {};
    const names = Object.keys(backends);
    fill(
      $("backends").tBodies[0],
      names.length
        ? names.map((name) => {
            const b = backends[name] || {};
            const state = ["up", "down"].includes(b.state) ? b.state : "unknown";
            const pool = b.pool || {};
            const inUse = Number(pool.in_use || 0);
            const max = Number(pool.max || 0);
            const fraction = max ? Math.min(1, inUse / max) : 0;
            const lat = b.latency_ms || {};
            return el(
              "tr",
              { "data-backend": name },
              el("td", { class: "name" }, name, b.driver ? el("span", { class: "driver" }, String(b.driver)) : null),
              el("td", null, el("span", { class: "badge " + state }, String(b.state || "unknown")), b.read_only ? " read-only" : ""),
              el("td", null, b.role ? String(b.role) : galeraRole(b)),
              numCell(S.fmtInt(b.weight)),
              numCell(S.fmtInt(b.in_flight)),
              el(
                "td",
                { class: "pool" },
                el("span", { class: "meter" + (fraction >= 1 ? " full" : "") }, el("span", { style: `width:${Math.round(fraction * 100)}%` })),
                `${S.fmtInt(inUse)} / ${S.fmtInt(max)}`,
                el("span", { class: "muted small" }, ` (${S.fmtInt(pool.idle || 0)} idle)`)
              ),
              numCell(S.fmtInt(b.queries)),
              numCell(S.fmtInt(b.errors)),
              numCell(S.fmtInt(b.sql_errors)),
              numCell(S.fmtMs(lat.p50)),
              numCell(S.fmtMs(lat.p99)),
              numCell(b.lag === null || b.lag === undefined ? "—" : `${b.lag} s`),
              numCell(S.fmtInt(b.state_changes)),
              el("td", { class: "last-error" }, b.last_error ? String(b.last_error) : "")
            );
          })
        : noneRow(14, "no backends")
    );
  }

  function drawErrors(entries) {
    const list = Array.isArray(entries) ? entries.slice().reverse() : [];
    fill($("errors-note"), "from ", el("code", null, "/stats/errors"), `, newest first · ${list.length} kept`);
    fill(
      $("errors").tBodies[0],
      list.length
        ? list.map((e) =>
            el(
              "tr",
              null,
              el("td", { class: "when" }, e.request_time ? S.fmtEpoch(e.request_time) : "—"),
              el("td", { class: "mono" }, String(e.client_ip || "")),
              el("td", { class: "err" }, String(e.error || "")),
              el(
                "td",
                { class: "req" },
                String(e.request || ""),
                // a POST's SQL (redacted by the gateway): its request line shows none
                typeof e.sql === "string" ? el("div", { class: "req-sql" }, "SQL: " + e.sql) : null
              )
            )
          )
        : noneRow(4, "no errors")
    );
  }

  /* ------------------------------------------------------------------ wiring */

  $("pause").addEventListener("click", () => {
    paused = !paused;
    $("pause").textContent = paused ? "resume" : "pause";
    if (paused) {
      clearTimeout(timer);
      timer = null;
      $("fetch-dot").className = "dot paused";
    } else poll();
  });

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (lastStats) {
        drawQps();
        drawBuckets(lastStats);
      }
    }, 100);
  });

  poll();
})();
