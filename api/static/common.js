/* dbslayer: helpers shared by the console and the dashboard (no library, no build step).
 *
 * Every piece of text from the server goes into the page through text nodes (el() below):
 * SQL results are untrusted data, and nothing here uses innerHTML.
 */
"use strict";

(function () {
  const TOKEN_KEY = "dbslayer.token";

  /* ------------------------------------------------------------------ DOM */

  /** el("td", {class: "num", title: "x"}, "text", childNode, ...): an element; strings become
   *  text nodes, null/undefined/false children are skipped, arrays are flattened. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [name, value] of Object.entries(attrs)) {
        if (value === null || value === undefined || value === false) continue;
        if (name === "class") node.className = value;
        else if (name === "text") node.textContent = value;
        else if (name.startsWith("on") && typeof value === "function") {
          node.addEventListener(name.slice(2), value);
        } else node.setAttribute(name, value === true ? "" : String(value));
      }
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) append(node, child);
      else if (child instanceof Node) node.appendChild(child);
      else node.appendChild(document.createTextNode(String(child)));
    }
  }

  /** Replace the children of node with the given children. */
  function fill(node, ...children) {
    node.replaceChildren();
    append(node, children);
    return node;
  }

  /* ------------------------------------------------------------------ exact JSON */

  /** A JSON number kept as the digits the server sent, so BIGINT UNSIGNED and DECIMAL values
   *  are shown exactly (JSON.parse would round them to a double). */
  class Num {
    constructor(text) {
      this.text = text;
    }
    toString() {
      return this.text;
    }
    valueOf() {
      return Number(this.text);
    }
  }

  const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

  /** JSON.parse, except that numbers become Num objects. */
  function parseExact(text) {
    let i = 0;
    const n = text.length;

    function fail(what) {
      throw new SyntaxError(`bad JSON: ${what} at position ${i}`);
    }
    function ws() {
      while (i < n) {
        const c = text.charCodeAt(i);
        if (c === 32 || c === 9 || c === 10 || c === 13) i++;
        else break;
      }
    }
    function string() {
      let j = i + 1;
      while (j < n) {
        const c = text.charCodeAt(j);
        if (c === 34) break;
        j += c === 92 ? 2 : 1;
      }
      if (j >= n) fail("unterminated string");
      const s = JSON.parse(text.slice(i, j + 1));
      i = j + 1;
      return s;
    }
    function value() {
      ws();
      const c = text[i];
      if (c === "{") {
        i++;
        const obj = {};
        ws();
        if (text[i] === "}") {
          i++;
          return obj;
        }
        for (;;) {
          ws();
          if (text[i] !== '"') fail("expected a key");
          const key = string();
          ws();
          if (text[i++] !== ":") fail("expected ':'");
          const v = value();
          Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true });
          ws();
          const d = text[i++];
          if (d === "}") return obj;
          if (d !== ",") fail("expected ',' or '}'");
        }
      }
      if (c === "[") {
        i++;
        const arr = [];
        ws();
        if (text[i] === "]") {
          i++;
          return arr;
        }
        for (;;) {
          arr.push(value());
          ws();
          const d = text[i++];
          if (d === "]") return arr;
          if (d !== ",") fail("expected ',' or ']'");
        }
      }
      if (c === '"') return string();
      if (text.startsWith("true", i)) {
        i += 4;
        return true;
      }
      if (text.startsWith("false", i)) {
        i += 5;
        return false;
      }
      if (text.startsWith("null", i)) {
        i += 4;
        return null;
      }
      NUMBER.lastIndex = i;
      const m = NUMBER.exec(text);
      if (m) {
        i += m[0].length;
        return new Num(m[0]);
      }
      fail("unexpected character");
    }

    const result = value();
    ws();
    if (i !== n) fail("trailing text");
    return result;
  }

  /** JSON text of a value from parseExact (Num written as its digits), indented. */
  function stringify(value, indent = "") {
    if (value instanceof Num) return value.text;
    if (value === null || typeof value !== "object") return JSON.stringify(value);
    const inner = indent + "  ";
    if (Array.isArray(value)) {
      if (!value.length) return "[]";
      const flat = value.every((v) => v === null || typeof v !== "object" || v instanceof Num);
      if (flat) return "[" + value.map((v) => stringify(v)).join(", ") + "]";
      return "[\n" + value.map((v) => inner + stringify(v, inner)).join(",\n") + "\n" + indent + "]";
    }
    const keys = Object.keys(value);
    if (!keys.length) return "{}";
    return (
      "{\n" +
      keys.map((k) => inner + JSON.stringify(k) + ": " + stringify(value[k], inner)).join(",\n") +
      "\n" + indent + "}"
    );
  }

  /* ------------------------------------------------------------------ token */

  let memoryToken = null;

  function storage() {
    try {
      return window.localStorage;
    } catch (e) {
      return null;
    }
  }

  const token = {
    /** The Bearer token: the one typed in this page, else the remembered one. */
    get() {
      if (memoryToken !== null) return memoryToken;
      const s = storage();
      return (s && s.getItem(TOKEN_KEY)) || "";
    },
    remembered() {
      const s = storage();
      return Boolean(s && s.getItem(TOKEN_KEY));
    },
    /** Use this token; keep it in localStorage only when remember is true. */
    set(value, remember) {
      memoryToken = value;
      const s = storage();
      if (!s) return;
      if (remember && value) s.setItem(TOKEN_KEY, value);
      else s.removeItem(TOKEN_KEY);
    },
  };

  /** The token field and its "remember" box; returns {node, input, remember, focus()}. */
  function tokenField(onChange) {
    const input = el("input", {
      type: "password",
      id: "token",
      placeholder: "Bearer token (when auth is on)",
      autocomplete: "off",
      spellcheck: "false",
      size: "26",
    });
    const remember = el("input", { type: "checkbox", id: "remember-token" });
    input.value = token.get();
    remember.checked = token.remembered();
    const update = () => {
      token.set(input.value.trim(), remember.checked);
      if (onChange) onChange();
    };
    input.addEventListener("input", update);
    remember.addEventListener("change", update);
    const node = el(
      "form",
      { class: "token-field", onsubmit: (event) => event.preventDefault() },
      el("label", { for: "token" }, "Token"),
      input,
      el("label", { class: "remember", title: "keep the token in this browser's localStorage" }, remember, "remember")
    );
    return {
      node,
      input,
      remember,
      focus() {
        node.classList.add("attention");
        input.focus();
      },
    };
  }

  /** fetch with the Bearer token (when there is one). */
  function request(url, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    const t = token.get();
    if (t) headers["Authorization"] = "Bearer " + t;
    return fetch(url, Object.assign({}, options, { headers, cache: "no-store" }));
  }

  /* ------------------------------------------------------------------ formatting */

  const intFormat = new Intl.NumberFormat("en-US");

  function fmtInt(v) {
    if (v === null || v === undefined || Number.isNaN(Number(v))) return "–";
    return intFormat.format(Number(v));
  }

  function fmtNum(v, digits = 1) {
    if (v === null || v === undefined || Number.isNaN(Number(v))) return "–";
    return Number(v).toFixed(digits);
  }

  function fmtMs(v) {
    if (v === null || v === undefined) return "–";
    const x = Number(v);
    if (x >= 1000) return (x / 1000).toFixed(2) + " s";
    if (x >= 100) return x.toFixed(0) + " ms";
    if (x >= 10) return x.toFixed(1) + " ms";
    return x.toFixed(2) + " ms";
  }

  function fmtDuration(seconds) {
    let s = Math.max(0, Math.floor(Number(seconds) || 0));
    const d = Math.floor(s / 86400);
    s -= d * 86400;
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    if (d) return `${d}d ${h}h ${m}m`;
    if (h) return `${h}h ${m}m ${s}s`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function fmtClock(date) {
    return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  }

  function fmtEpoch(seconds) {
    const d = new Date(Number(seconds) * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtClock(d)}`;
  }

  window.Slayer = {
    el,
    fill,
    Num,
    parseExact,
    stringify,
    token,
    tokenField,
    request,
    fmtInt,
    fmtNum,
    fmtMs,
    fmtDuration,
    fmtClock,
    fmtEpoch,
  };
})();
