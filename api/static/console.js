/* dbslayer query console: POST /db with a JSON body, show the answer.
 *
 * json answers are parsed with Slayer.parseExact (numbers kept as the server's digits) and
 * drawn as one table per result set; the other formats are shown as text. All data goes into
 * the page as text nodes.
 */
"use strict";

(function () {
  const { el, fill, Num, parseExact, stringify } = window.Slayer;

  const HISTORY_KEY = "dbslayer.history";
  const DRAFT_KEY = "dbslayer.draft";
  const HISTORY_MAX = 50;
  const ROWS_SHOWN = 1000;

  const form = document.getElementById("query-form");
  const sqlBox = document.getElementById("sql");
  const runButton = document.getElementById("run");
  const cancelButton = document.getElementById("cancel");
  const formatPicker = document.getElementById("format");
  const serverField = document.getElementById("server-field");
  const serverPicker = document.getElementById("server");
  const busy = document.getElementById("busy");
  const meta = document.getElementById("meta");
  const results = document.getElementById("results");
  const historyList = document.getElementById("history");
  const historyEmpty = document.getElementById("history-empty");

  const tokenField = window.Slayer.tokenField();
  document.getElementById("token-slot").appendChild(tokenField.node);

  let running = false;
  let runs = 0;
  /** The AbortController of the request running, while one runs (Cancel aborts it). */
  let controller = null;
  /** Where the answer asked the user to go next (the token field, the server picker):
   *  focus goes there after Run instead of back to the SQL box. */
  let focusNext = null;

  /** The names of the backends' kinds (BACKEND_KIND of an SQL error answer). */
  const KIND_NAMES = { mariadb: "MariaDB", mysql: "MySQL", sqlite: "SQLite" };

  /* ------------------------------------------------------------------ storage */

  function store() {
    try {
      return window.localStorage;
    } catch (e) {
      return null;
    }
  }

  function loadHistory() {
    const s = store();
    if (!s) return [];
    try {
      const items = JSON.parse(s.getItem(HISTORY_KEY) || "[]");
      return Array.isArray(items) ? items.filter((h) => h && typeof h.sql === "string") : [];
    } catch (e) {
      return [];
    }
  }

  function saveHistory(items) {
    const s = store();
    if (!s) return;
    try {
      s.setItem(HISTORY_KEY, JSON.stringify(items.slice(0, HISTORY_MAX)));
    } catch (e) {
      /* full or disabled: the history stays in the page only */
    }
  }

  /* ------------------------------------------------------------------ backends */

  let namedMode = false;

  /** Offer a server picker: options "" (the gateway chooses) plus each backend name. */
  function offerServers(names, required) {
    const current = serverPicker.value;
    namedMode = namedMode || required;
    const options = [
      el("option", { value: "" }, namedMode ? "— pick a server —" : "any (gateway chooses)"),
      ...names.map((name) => el("option", { value: name }, name)),
    ];
    fill(serverPicker, options);
    if (names.includes(current)) serverPicker.value = current;
    serverField.hidden = false;
  }

  /** Learn the backend names from /stats; a picker only where there is a choice. */
  async function learnBackends() {
    try {
      const reply = await window.Slayer.request("/stats", { headers: { Accept: "application/json" } });
      if (!reply.ok) return;
      const stats = await reply.json();
      const names = Object.keys((stats && stats.backends) || {});
      if (names.length > 1) offerServers(names, false);
    } catch (e) {
      /* /stats protected or unreachable: the picker appears if a 400 asks for SERVER */
    }
  }

  /* ------------------------------------------------------------------ running */

  async function run() {
    const sql = sqlBox.value;
    if (running || !sql.trim()) return;
    const format = formatPicker.value;
    const server = serverField.hidden ? "" : serverPicker.value;
    const body = { SQL: sql };
    if (format !== "json") body.FORMAT = format;
    if (server) body.SERVER = server;

    running = true;
    controller = new AbortController();
    runButton.disabled = true;
    cancelButton.hidden = false;
    busy.hidden = false;
    const started = performance.now();
    let reply = null;
    let text = "";
    let failure = null;
    try {
      reply = await window.Slayer.request("/db", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json, text/plain, */*" },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      text = await reply.text();
    } catch (e) {
      failure = e;
    }
    const elapsed = performance.now() - started;
    const cancelled = controller.signal.aborted;
    running = false;
    controller = null;
    runButton.disabled = false;
    cancelButton.hidden = true;
    busy.hidden = true;

    focusNext = null;
    let outcome;
    if (cancelled) outcome = showCancelled(elapsed);
    else if (failure) outcome = showNetworkError(failure, elapsed);
    else outcome = showReply(reply, text, format, elapsed);
    remember({ sql, format, server, at: Date.now(), ms: Math.round(elapsed * 10) / 10, ...outcome });
    runs += 1;
    results.setAttribute("data-runs", String(runs)); // answers shown so far (tests wait on it)
    // back to the SQL box for the next statement (without scrolling the answer away), unless
    // the answer asked for something else first (a token, a server)
    (focusNext || sqlBox).focus({ preventScroll: true });
  }

  /** Cancel: abort the fetch. The browser closes the request's connection, and the gateway,
   *  seeing its client gone, stops the statement on the server. */
  function cancel() {
    if (controller) controller.abort();
  }

  /* ------------------------------------------------------------------ answers */

  function metaLine(pill, pillClass, parts) {
    fill(
      meta,
      el("span", { class: "status-pill " + pillClass, id: "status" }, pill),
      parts.map(([label, value, id]) => el("span", null, label + " ", el("b", { id }, value)))
    );
    meta.hidden = false;
  }

  function showCancelled(elapsed) {
    metaLine("cancelled", "cancelled", [["time", fmtElapsed(elapsed), "meta-time"]]);
    fill(
      results,
      el(
        "div",
        { class: "cancelled-box", role: "status" },
        el("span", { class: "cancelled-title" }, "Cancelled"),
        ` after ${fmtElapsed(elapsed)}: the request was closed, so the gateway stops the statement. `,
        "A write may or may not have been applied."
      )
    );
    return { ok: false, label: "cancelled" };
  }

  function showNetworkError(error, elapsed) {
    metaLine("no answer", "network", [["time", fmtElapsed(elapsed), "meta-time"]]);
    fill(
      results,
      errorBox("network-error", ["Network error"], String(error && error.message ? error.message : error), [
        "The gateway did not answer: is it running, and is this page served by it?",
      ])
    );
    return { ok: false, label: "no answer" };
  }

  function showReply(reply, text, format, elapsed) {
    const status = reply.status;
    const type = (reply.headers.get("Content-Type") || "").toLowerCase();
    const cache = reply.headers.get("X-Cache");
    let answer = null;
    // (text/plain: JSON as a gateway under --compat original labels it, as the original did)
    if (type.includes("json") || type.startsWith("text/plain")) {
      try {
        answer = parseExact(text);
      } catch (e) {
        answer = null;
      }
    }
    const parts = [];
    const addMeta = (server) => {
      parts.push(["server", server || "—", "meta-server"]);
      parts.push(["time", fmtElapsed(elapsed), "meta-time"]);
      parts.push(["HTTP", `${status} ${reply.statusText || ""}`.trim(), "meta-http"]);
      if (cache) parts.push(["cache", cache, "meta-cache"]);
      parts.push(["size", fmtBytes(text.length), "meta-size"]);
    };

    // gateway errors: {"ERROR": ...} with a 4xx/5xx status, in every format
    if (answer && typeof answer === "object" && !Array.isArray(answer) && "ERROR" in answer) {
      addMeta(answer.SERVER !== undefined ? String(answer.SERVER) : "");
      metaLine(`HTTP ${status}`, "gateway", parts);
      const extra = [];
      if (answer.MYSQL_ERRNO !== undefined) extra.push(`MYSQL_ERRNO ${answer.MYSQL_ERRNO}`);
      if (answer.SERVER !== undefined) extra.push(`SERVER ${answer.SERVER}`);
      const retry = reply.headers.get("Retry-After");
      if (retry) extra.push(`Retry-After ${retry} s`);
      if (status === 401) {
        extra.push("This gateway wants credentials: enter a token at the top right.");
        tokenField.focus();
        focusNext = tokenField.input;
      } else if (status === 403) {
        extra.push("The token's user may not run this (role, allowed servers, or disabled).");
      }
      const wanted = /SERVER is required[^;]*; one of: (.+)$/.exec(String(answer.ERROR));
      if (wanted) {
        offerServers(wanted[1].split(",").map((s) => s.trim()).filter(Boolean), true);
        extra.push("Pick a server in the Server menu, then run again.");
        focusNext = serverPicker;
      }
      fill(
        results,
        errorBox("gateway-error", ["Gateway error · HTTP ", status, reply.statusText ? " " + reply.statusText : ""], String(answer.ERROR), extra)
      );
      return { ok: false, label: `HTTP ${status}` };
    }

    // DBSlayer answers (json, or a csv request answered with a JSON error)
    if (answer && typeof answer === "object" && !Array.isArray(answer)) {
      addMeta(answer.SERVER !== undefined ? String(answer.SERVER) : "");
      const sets = answer.RESULT === undefined ? [] : Array.isArray(answer.RESULT) ? answer.RESULT : [answer.RESULT];
      const nodes = [];
      let outcome;
      if (answer.MYSQL_ERRNO !== undefined) {
        metaLine(`SQL error ${answer.MYSQL_ERRNO}`, "sql", parts);
        const extra = [];
        if (sets.length) {
          extra.push(`Statement ${sets.length + 1} failed; the results of the ${sets.length} before it are shown below.`);
        }
        if (answer.ROLLBACK_ON_ERROR_SUCCESS !== undefined) {
          extra.push(`ROLLBACK_ON_ERROR_SUCCESS: ${answer.ROLLBACK_ON_ERROR_SUCCESS}`);
        }
        if (answer.ERROR_CLASS !== undefined) extra.push(`ERROR_CLASS ${answer.ERROR_CLASS}`);
        nodes.push(errorBox("sql-error", [sqlErrorLabel(answer) + " error ", answer.MYSQL_ERRNO], String(answer.MYSQL_ERROR), extra));
        outcome = { ok: false, label: `error ${answer.MYSQL_ERRNO}` };
      } else {
        metaLine(status === 200 ? "OK" : `HTTP ${status}`, status === 200 ? "ok" : "gateway", parts);
        outcome = { ok: status < 400, label: summary(sets) };
      }
      if (format !== "json") {
        nodes.push(el("p", { class: "note" }, `The ${format} answer came back as JSON (errors are never hidden in ${format}).`));
      }
      sets.forEach((set, index) => nodes.push(resultNode(set, index, sets.length)));
      const others = Object.keys(answer).filter(
        (k) =>
          !["RESULT", "SERVER", "MYSQL_ERRNO", "MYSQL_ERROR", "ROLLBACK_ON_ERROR_SUCCESS", "BACKEND_KIND", "ERROR_CLASS"].includes(k)
      );
      if (others.length) nodes.push(keyValues(answer, others));
      if (!nodes.length) nodes.push(el("p", { class: "muted" }, "The answer holds no result."));
      fill(results, nodes);
      return outcome;
    }

    // xml, php, python, csv: text
    const server = /SERVER/.test(text) ? "(in the text)" : "";
    addMeta(server);
    const ok = status < 400;
    const sqlError = /MYSQL_ERRNO/.test(text);
    metaLine(ok ? (sqlError ? "SQL error" : "OK") : `HTTP ${status}`, ok ? (sqlError ? "sql" : "ok") : "gateway", parts);
    fill(results, el("pre", { class: "text-output", id: "text-output" }, text));
    return { ok: ok && !sqlError, label: ok ? (sqlError ? "SQL error" : format) : `HTTP ${status}` };
  }

  /** "MariaDB", "MySQL" or "SQLite" from the answer's BACKEND_KIND; "SQL" without one. */
  function sqlErrorLabel(answer) {
    const kind = typeof answer.BACKEND_KIND === "string" ? answer.BACKEND_KIND.toLowerCase() : "";
    return Object.prototype.hasOwnProperty.call(KIND_NAMES, kind) ? KIND_NAMES[kind] : "SQL";
  }

  function summary(sets) {
    if (!sets.length) return "done";
    const last = sets[sets.length - 1];
    if (last && Array.isArray(last.ROWS)) return plural(last.ROWS.length, "row");
    if (last && last.AFFECTED_ROWS !== undefined) return plural(Number(last.AFFECTED_ROWS), "row") + " affected";
    return "done";
  }

  /** An error: title is [prefix, code, suffix], the code (errno or HTTP status) in .errno. */
  function errorBox(kind, title, message, extra) {
    const [prefix, code, suffix] = title;
    return el(
      "div",
      { class: "error-box " + kind, role: "alert" },
      el(
        "span",
        { class: "error-title" },
        prefix,
        code !== undefined ? el("span", { class: "errno" }, String(code)) : null,
        suffix || null
      ),
      el("div", { class: "error-message" }, message),
      (extra || []).map((line) => el("div", { class: "error-extra" }, line))
    );
  }

  function resultNode(set, index, count) {
    const caption = count > 1 ? `Result ${index + 1} of ${count}` : "Result";
    if (set && Array.isArray(set.HEADER)) {
      const rows = Array.isArray(set.ROWS) ? set.ROWS : [];
      return el(
        "div",
        { class: "result-set", "data-index": index },
        el(
          "div",
          { class: "result-head" },
          el("p", { class: "result-caption" }, `${caption} · ${plural(rows.length, "row")}`),
          el(
            "span",
            { class: "export" },
            "Export ",
            exportButton(set, index, "csv", "CSV"),
            exportButton(set, index, "json", "JSON")
          )
        ),
        tableNode(set, rows)
      );
    }
    if (set && set.AFFECTED_ROWS !== undefined) {
      return el(
        "div",
        { class: "result-set update-result", "data-index": index },
        el("p", { class: "result-caption" }, caption),
        el("b", { class: "affected" }, String(set.AFFECTED_ROWS)),
        Number(set.AFFECTED_ROWS) === 1 ? " row affected" : " rows affected",
        " · insert id ",
        el("b", { class: "insert-id" }, String(set.INSERT_ID))
      );
    }
    return el("pre", { class: "text-output" }, stringify(set));
  }

  /* ------------------------------------------------------------------ export */

  function exportButton(set, index, format, label) {
    return el(
      "button",
      {
        type: "button",
        class: "link export-" + format,
        title: `download every row of this result as ${label}`,
        onclick: () => download(`dbslayer-result-${index + 1}.${format}`, format === "csv" ? csvOf(set) : jsonOf(set), format),
      },
      label
    );
  }

  /** Save text as a file: a Blob URL behind a download link, clicked, then given back. */
  function download(name, text, format) {
    const type = format === "csv" ? "text/csv;charset=utf-8" : "application/json;charset=utf-8";
    const url = URL.createObjectURL(new Blob([text], { type }));
    const link = el("a", { href: url, download: name, class: "download-link" });
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  const CSV_QUOTE = /[,"\r\n]|^[ \t]|[ \t]$/;

  /** One CSV field as the gateway's FORMAT csv writes it: NULL empty, strings quoted when
   *  needed (and empty strings, so they differ from NULL), numbers as the server's digits. */
  function csvField(value) {
    if (value === null || value === undefined) return "";
    if (value instanceof Num) return value.text;
    if (typeof value === "boolean") return value ? "true" : "false";
    const text = typeof value === "object" ? stringify(value).replace(/\n\s*/g, "") : String(value);
    return !text || CSV_QUOTE.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  /** RFC 4180 text of a result set (every row, not only the rows shown): the header line,
   *  then the rows, each line ending in CRLF; binary values as their base64 text. */
  function csvOf(set) {
    const line = (values) => values.map(csvField).join(",") + "\r\n";
    const rows = Array.isArray(set.ROWS) ? set.ROWS : [];
    return line(set.HEADER) + rows.map((row) => line(Array.isArray(row) ? row : [row])).join("");
  }

  /** JSON text of a result set: an array of row objects keyed by column name (a repeated
   *  name gets a suffix, _2, _3...), numbers exact as the server sent them, binary values as
   *  base64 text, NULL as null. */
  function jsonOf(set) {
    const used = new Set();
    const names = set.HEADER.map((header) => {
      const name = String(header);
      let unique = name;
      for (let n = 2; used.has(unique); n++) unique = `${name}_${n}`;
      used.add(unique);
      return unique;
    });
    const rows = Array.isArray(set.ROWS) ? set.ROWS : [];
    const compact = (value) => stringify(value === undefined ? null : value).replace(/\n\s*/g, " ");
    const objects = rows.map((row) => {
      const values = Array.isArray(row) ? row : [row];
      return "  {" + names.map((name, i) => `${JSON.stringify(name)}: ${compact(values[i])}`).join(", ") + "}";
    });
    return objects.length ? "[\n" + objects.join(",\n") + "\n]\n" : "[]\n";
  }

  function tableNode(set, rows) {
    const header = set.HEADER.map(String);
    const types = Array.isArray(set.TYPES) ? set.TYPES.map(String) : [];
    const binary = new Set((Array.isArray(set.BASE64) ? set.BASE64 : []).map(Number));
    const head = el(
      "tr",
      null,
      el("th", { class: "rownum" }, "#"),
      header.map((name, i) =>
        el(
          "th",
          { title: types[i] || null, class: binary.has(i) ? "binary-column" : null },
          name,
          types[i] ? el("span", { class: "type" }, types[i].replace(/^MYSQL_TYPE_/, "").toLowerCase()) : null
        )
      )
    );
    const body = el("tbody");
    const shown = Math.min(rows.length, ROWS_SHOWN);
    appendRows(body, rows, 0, shown, binary);
    const wrap = el("div", { class: "table-wrap" }, el("table", { class: "grid rows" }, el("thead", null, head), body));
    if (shown >= rows.length) return wrap;
    const more = el("div", { class: "more-rows" }, `Showing the first ${shown} of ${rows.length} rows. `);
    more.appendChild(
      el(
        "button",
        {
          type: "button",
          class: "link",
          onclick: () => {
            appendRows(body, rows, shown, rows.length, binary);
            more.remove();
          },
        },
        "show all"
      )
    );
    return el("div", null, wrap, more);
  }

  function appendRows(body, rows, from, to, binary) {
    const fragment = document.createDocumentFragment();
    for (let r = from; r < to; r++) {
      const row = Array.isArray(rows[r]) ? rows[r] : [rows[r]];
      const tr = el("tr", null, el("th", { class: "rownum", scope: "row" }, String(r + 1)));
      row.forEach((value, c) => tr.appendChild(cellNode(value, binary.has(c))));
      fragment.appendChild(tr);
    }
    body.appendChild(fragment);
  }

  function cellNode(value, isBinary) {
    if (value === null || value === undefined) {
      return el("td", { class: "is-null" }, el("span", { class: "null" }, "NULL"));
    }
    if (isBinary && typeof value === "string") {
      const bytes = base64Bytes(value);
      const short = value.length > 16 ? value.slice(0, 12) + "…" : value;
      return el(
        "td",
        { class: "is-binary", title: `${bytes} bytes, base64: ${value}`, "data-base64": value },
        el("span", { class: "badge binary" }, "binary"),
        el("span", { class: "b64" }, short)
      );
    }
    if (value instanceof Num) return el("td", { class: "num" }, value.text);
    const text = typeof value === "object" ? stringify(value) : String(value);
    return el("td", { class: text.length > 48 || text.includes("\n") ? "long" : null }, text);
  }

  function keyValues(answer, keys) {
    return el(
      "div",
      { class: "result-set" },
      el("p", { class: "result-caption" }, "Information"),
      el(
        "table",
        { class: "grid kv" },
        el(
          "tbody",
          null,
          keys.map((k) => {
            const v = answer[k];
            const text = v !== null && typeof v === "object" && !(v instanceof Num) ? stringify(v) : String(v);
            return el("tr", null, el("th", null, k), el("td", { class: "mono" }, text));
          })
        )
      )
    );
  }

  /* ------------------------------------------------------------------ history */

  let history = loadHistory();

  function remember(entry) {
    history = history.filter((h) => !(h.sql === entry.sql && h.format === entry.format && (h.server || "") === (entry.server || "")));
    history.unshift(entry);
    history = history.slice(0, HISTORY_MAX);
    saveHistory(history);
    drawHistory();
  }

  function drawHistory() {
    fill(
      historyList,
      history.map((h, i) => {
        const when = new Date(h.at || 0);
        const info = [window.Slayer.fmtClock(when), h.format || "json"];
        if (h.server) info.push(h.server);
        if (h.ms !== undefined) info.push(fmtElapsed(h.ms));
        return el(
          "li",
          null,
          el(
            "button",
            {
              type: "button",
              class: "history-item" + (h.ok ? "" : " failed"),
              "data-index": i,
              title: h.sql,
              onclick: () => load(h),
            },
            el("div", { class: "history-sql" }, h.sql.trim()),
            el("div", { class: "history-info" }, info.join(" · ") + " · ", el("span", { class: h.ok ? null : "bad" }, h.label || ""))
          )
        );
      })
    );
    historyEmpty.hidden = history.length > 0;
  }

  function load(h) {
    sqlBox.value = h.sql;
    saveDraft();
    if ([...formatPicker.options].some((o) => o.value === h.format)) formatPicker.value = h.format;
    if (h.server && [...serverPicker.options].some((o) => o.value === h.server)) serverPicker.value = h.server;
    sqlBox.focus();
  }

  /* ------------------------------------------------------------------ small things */

  function plural(n, word) {
    return `${window.Slayer.fmtInt(n)} ${word}${n === 1 ? "" : "s"}`;
  }

  function fmtElapsed(ms) {
    return ms >= 1000 ? (ms / 1000).toFixed(2) + " s" : ms.toFixed(1) + " ms";
  }

  function fmtBytes(n) {
    return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : n >= 1024 ? (n / 1024).toFixed(1) + " KB" : n + " B";
  }

  function base64Bytes(text) {
    const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
    return Math.floor((text.length * 3) / 4) - padding;
  }

  function saveDraft() {
    const s = store();
    if (s) {
      try {
        s.setItem(DRAFT_KEY, sqlBox.value);
      } catch (e) {
        /* ignore */
      }
    }
  }

  /* ------------------------------------------------------------------ wiring */

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      event.preventDefault();
      run();
    } else if (event.key === "Escape" && running) {
      event.preventDefault();
      cancel();
    }
  });
  cancelButton.addEventListener("click", cancel);
  sqlBox.addEventListener("input", saveDraft);
  document.getElementById("clear-history").addEventListener("click", () => {
    history = [];
    saveHistory(history);
    drawHistory();
  });

  const s = store();
  const draft = s && s.getItem(DRAFT_KEY);
  if (draft) sqlBox.value = draft;
  drawHistory();
  learnBackends();
  sqlBox.focus();
})();
