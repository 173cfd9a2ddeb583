"""The console and the dashboard as a user sees them, on a phone (390 px wide) and on a desktop,
in a real headless Chromium (Selenium) against real gateways (MariaDB, and the SQLite demo with
two workers):

- no sideways scrolling of either page (wide result tables scroll inside their own box);
- a WCAG contrast of at least 4.5:1 for every visible text (secondary text and placeholders
  included, light and dark scheme), computed from the page's computed colours;
- focus back in the SQL box after Run (button and Ctrl+Enter);
- export of a result as CSV and JSON: the downloaded files hold every row, and the CSV is the
  gateway's own FORMAT csv answer, byte for byte;
- Cancel closes the request while it runs (the page says "cancelled", the gateway counts it
  out of flight, and the statement stops on the server);
- the row-number column and the header row stick when a table scrolls;
- SQL errors labelled by the backend's kind (BACKEND_KIND);
- the dashboard: "in flight" never counts its own polls, a backend that never changed shows
  "changes 0", and failed POST requests show their (redacted) SQL.

One browser for the module; the viewport is switched between the two sizes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

# (the same browser, found and skipped for as test_browser does it: imported from there)
from tests.integration.test_browser import (  # noqa: E402
    ARTIFACTS,
    CHROMEDRIVER,
    CHROMIUM,
    By,
    Keys,
    Select,
    Service,
    TimeoutException,
    WebDriverWait,
    webdriver,
)
from tests.servers import Gateway, MariaDB

#: The two viewports every check runs at: a phone held upright, and a desktop window.
SIZES = {
    "phone": {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
    "desktop": {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False},
}
#: WCAG 2 AA for normal text.
MIN_CONTRAST = 4.5
KIND_LABELS = {"mariadb": "MariaDB", "mysql": "MySQL", "sqlite": "SQLite"}

Driver = Any


# ---------------------------------------------------------------------- fixtures


class Browser:
    """The module's Chromium and the folder its downloads land in."""

    def __init__(self, driver: Driver, downloads: Path) -> None:
        self.driver = driver
        self.downloads = downloads


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium_ux')}",
        "--window-size=1280,800",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    yield Browser(driver, downloads)
    driver.quit()


@pytest.fixture(scope="module", params=list(SIZES))
def size(request: pytest.FixtureRequest, chromium: Browser) -> str:
    """The viewport of the tests that use it: each runs at both sizes."""
    chromium.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", SIZES[request.param])
    return str(request.param)


@pytest.fixture
def browser(chromium: Browser, size: str) -> Iterator[Driver]:
    """The driver at this test's size, light scheme."""
    scheme(chromium.driver, "light")
    yield chromium.driver
    scheme(chromium.driver, "light")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The demo (no backend configured: SQLite) served by two workers, as ``make run`` does."""
    gw = Gateway(tmp_path_factory.mktemp("demo"), workers=2).start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def gadgets(mariadb: MariaDB) -> str:
    """A table with NULLs, an exact DECIMAL, text that CSV must quote and a VARBINARY."""
    mariadb.sql(
        "CREATE OR REPLACE TABLE test.ux_gadgets (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, "
        "note VARCHAR(60) NULL, price DECIMAL(30,10) NULL, added DATETIME NOT NULL, "
        "thumb VARBINARY(32) NULL);"
        "INSERT INTO test.ux_gadgets VALUES "
        "(1, 'sprocket', 'blue, \"large\"', 12345678901234567890.0123456789, "
        "'2026-01-05 09:30:00', 0x00FF10),"
        "(2, 'gear', NULL, 2.5, '2026-02-11 14:00:00', NULL),"
        "(3, 'flange', '', NULL, '2026-03-01 08:15:00', 'hello'),"
        "(4, 'widget', 'two\\nlines', 19.99, '2026-03-17 17:45:00', NULL),"
        "(5, 'cog', ' padded ', 0.05, '2026-04-02 11:20:00', NULL);"
    )
    return "ux_gadgets"


# ---------------------------------------------------------------------- helpers


def wait(driver: Driver, predicate: Callable[[Driver], Any], timeout: float = 15) -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(predicate)
    except TimeoutException:
        logs = [entry["message"] for entry in driver.get_log("browser")]
        raise AssertionError(f"timed out; browser console: {logs}") from None


def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` (outside the browser) until it is true, within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def scheme(driver: Driver, name: str) -> None:
    """Emulate prefers-color-scheme: light or dark."""
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": name}]},
    )


def screenshot(driver: Driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_bytes(driver.get_screenshot_as_png())


def open_console(driver: Driver, gw: Gateway) -> None:
    driver.get(gw.url + "/")
    driver.execute_script("localStorage.clear()")
    driver.get(gw.url + "/")
    wait(driver, lambda d: d.find_element(By.ID, "sql").is_displayed())


def runs(driver: Driver) -> int:
    return int(driver.find_element(By.ID, "results").get_attribute("data-runs") or 0)


def type_sql(driver: Driver, sql: str) -> None:
    driver.execute_script(
        "const box = document.getElementById('sql'); box.value = arguments[0];"
        "box.dispatchEvent(new Event('input'));",
        sql,
    )


def run_sql(driver: Driver, sql: str, keyboard: bool = False, fmt: str = "json") -> None:
    """Put SQL in the box, run it (Run button or Ctrl+Enter), wait for the answer shown."""
    before = runs(driver)
    type_sql(driver, sql)
    Select(driver.find_element(By.ID, "format")).select_by_value(fmt)
    if keyboard:
        driver.find_element(By.ID, "sql").send_keys(Keys.CONTROL, Keys.ENTER)
    else:
        driver.find_element(By.ID, "run").click()
    wait(driver, lambda d: runs(d) > before)


def text(driver: Driver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def active_id(driver: Driver) -> str:
    return str(driver.execute_script("return document.activeElement && document.activeElement.id"))


def stats(gw: Gateway, path: str = "/stats") -> Any:
    return gw.get(path, headers={"Accept": "application/json"}).json()


def post(gw: Gateway, obj: dict[str, Any]) -> Any:
    return gw.post("/db", json.dumps(obj).encode())


#: Every visible text of the page with its colour and effective background, and the WCAG
#: contrast between them. The background is the element's and its ancestors' background
#: colours composited (alpha included) over the canvas; the text colour is ``color`` (``fill``
#: for SVG text) with the element's and its ancestors' opacity. Empty text fields are judged by
#: their placeholder; a select by its own colours.
CONTRAST_JS = r"""
const dark = matchMedia("(prefers-color-scheme: dark)").matches;
const canvas = dark ? [18, 18, 18, 1] : [255, 255, 255, 1];
function rgba(text) {
  const m = /rgba?\(([^)]*)\)/.exec(text || "");
  if (!m) return null;
  const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
}
function over(top, bottom) {
  const a = top[3];
  return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]);
}
function opacity(el) {
  let o = 1;
  for (let n = el; n && n.nodeType === 1; n = n.parentElement) o *= Number(getComputedStyle(n).opacity);
  return o;
}
function background(el) {
  const layers = [];
  for (let n = el; n && n.nodeType === 1; n = n.parentElement) {
    const bg = rgba(getComputedStyle(n).backgroundColor);
    if (bg && bg[3] > 0) {
      bg[3] *= opacity(n);  // (a faded element's background lets what is under it through)
      layers.push(bg);
      if (bg[3] >= 1) break;
    }
  }
  let color = canvas;
  for (let i = layers.length - 1; i >= 0; i--) color = over(layers[i], color);
  return color;
}
function luminance(c) {
  const [r, g, b] = c.slice(0, 3).map((v) => {
    const s = v / 255;
    return s <= 0.04045 ? s / 12.92 : Math.pow((s + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function ratio(a, b) {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}
function describe(el) {
  let s = el.tagName.toLowerCase();
  if (el.id) s += "#" + el.id;
  if (typeof el.className === "string" && el.className) s += "." + el.className.trim().split(/\s+/).join(".");
  const p = el.parentElement;
  return p && p !== document.body ? describe(p).split(" > ").slice(-2).join(" > ") + " > " + s : s;
}
function visible(el) {
  if (!el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) return false;
  const r = el.getBoundingClientRect();
  return r.width > 0 && r.height > 0;
}
const seen = new Map();
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const node = walker.currentNode;
  if (!node.textContent.trim()) continue;
  let el = node.parentElement;
  if (!el || el.closest("script, style, template")) continue;
  if (el.closest("option, optgroup")) el = el.closest("select");
  if (el && !seen.has(el)) seen.set(el, { text: node.textContent.trim(), pseudo: null });
}
for (const el of document.querySelectorAll("textarea, input[type=text], input[type=password], input:not([type])")) {
  if (el.value) seen.set(el, { text: el.type === "password" ? "(password)" : el.value, pseudo: null });
  else if (el.placeholder) seen.set(el, { text: el.placeholder, pseudo: "::placeholder" });
}
const checked = [];
for (const [el, what] of seen) {
  if (!visible(el)) continue;
  const style = getComputedStyle(el, what.pseudo);
  const svg = el instanceof SVGElement;
  const fg = rgba(svg ? style.fill : style.color);
  if (!fg) continue;
  const bg = background(el);
  fg[3] *= opacity(el);
  const shown = over(fg, bg);
  checked.push({
    where: describe(el) + (what.pseudo || ""),
    text: what.text.slice(0, 40),
    fg: shown.slice(0, 3).map(Math.round),
    bg: bg.slice(0, 3).map(Math.round),
    ratio: Math.round(ratio(shown, bg) * 100) / 100,
  });
}
return checked;
"""

#: The page's width against its viewport, and the elements that stick out (when one does)
#: that are not inside a box that scrolls or clips sideways.
OVERFLOW_JS = r"""
const root = document.documentElement;
const width = root.clientWidth;
function clipped(el) {
  for (let n = el.parentElement; n && n !== document.body; n = n.parentElement) {
    const x = getComputedStyle(n).overflowX;
    if (x !== "visible") return true;
  }
  return false;
}
const out = [];
if (root.scrollWidth > width) {
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width && r.right > width + 0.5 && !clipped(el)) {
      out.push(`${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}.${el.className || ""} right ${Math.round(r.right)}`);
    }
  }
}
return { scrollWidth: root.scrollWidth, clientWidth: width, culprits: out.slice(0, 12) };
"""


def assert_fits(driver: Driver, page: str) -> None:
    """No sideways scrolling: the page is no wider than its viewport."""
    fit = driver.execute_script(OVERFLOW_JS)
    assert fit["scrollWidth"] <= fit["clientWidth"], f"{page} scrolls sideways: {fit}"


def assert_contrast(driver: Driver, page: str) -> int:
    """Every visible text has a contrast of at least 4.5:1; returns how many were checked."""
    checked = driver.execute_script(CONTRAST_JS)
    low = [c for c in checked if c["ratio"] < MIN_CONTRAST]
    assert not low, f"{page}: {len(low)} of {len(checked)} texts under {MIN_CONTRAST}:1: " + (
        "\n".join(f"{c['ratio']}:1 {c['where']} {c['text']!r} {c['fg']} on {c['bg']}" for c in low)
    )
    return len(checked)


def assert_contrast_both_schemes(driver: Driver, page: str) -> None:
    counts = []
    for name in ("light", "dark"):
        scheme(driver, name)
        counts.append(assert_contrast(driver, f"{page} ({name})"))
    scheme(driver, "light")
    assert min(counts) > 20, counts  # (the check saw the page's texts)


# ---------------------------------------------------------------------- the console


def wide_query(columns: int, rows: int) -> str:
    parts = ", ".join(f"CONCAT('cell {c} of row ', seq) AS column_{c}" for c in range(columns))
    return f"SELECT seq AS n, NULL AS nothing, {parts} FROM seq_1_to_{rows}"


def test_console_fits_phone_and_desktop_with_readable_text(
    browser: Driver, size: str, gateway: Gateway
) -> None:
    """An error, then a wide result: the page never scrolls sideways (the table scrolls in its
    box), and every text, history and placeholders included, reads at 4.5:1 or more in both
    colour schemes."""
    open_console(browser, gateway)
    assert_fits(browser, "the empty console")
    assert_contrast_both_schemes(browser, "the empty console")
    run_sql(browser, "SELECT nope FROM nowhere_at_all")
    assert browser.find_element(By.CSS_SELECTOR, "#results .sql-error").is_displayed()
    assert_fits(browser, "the console with an error")
    assert_contrast_both_schemes(browser, "the console with an error")

    run_sql(browser, wide_query(12, 30))
    wrap = browser.find_element(By.CSS_SELECTOR, "#results .table-wrap")
    inner = browser.execute_script(
        "const w = arguments[0]; return [w.scrollWidth, w.clientWidth];", wrap
    )
    assert inner[0] > inner[1], "the result table should be wider than its box"
    assert_fits(browser, "the console with a wide table")
    assert_contrast_both_schemes(browser, "the console with a wide table")
    screenshot(browser, f"console-{size}.png")


def test_focus_back_in_the_editor_after_run(browser: Driver, size: str, gateway: Gateway) -> None:
    """After Run (the button, or Ctrl+Enter from elsewhere on the page) the SQL box has the
    focus again, for success and error alike."""
    open_console(browser, gateway)
    run_sql(browser, "SELECT 1 AS one")
    assert active_id(browser) == "sql"
    run_sql(browser, "SELECT nope")
    assert active_id(browser) == "sql"

    before = runs(browser)
    type_sql(browser, "SELECT 2 AS two")
    browser.find_element(By.ID, "format").send_keys(Keys.CONTROL, Keys.ENTER)  # focus elsewhere
    wait(browser, lambda d: runs(d) > before)
    assert text(browser, "#results td") == "2"
    assert active_id(browser) == "sql"


def downloaded(chromium: Browser, name: str) -> bytes:
    """The bytes of a finished download."""
    path = chromium.downloads / name
    until(
        lambda: path.exists() and not list(chromium.downloads.glob("*.crdownload")),
        15,
        f"download {name}",
    )
    return path.read_bytes()


def clear_downloads(chromium: Browser) -> None:
    for path in chromium.downloads.iterdir():
        path.unlink()


def exact(body: bytes) -> Any:
    return json.loads(body, parse_float=Decimal)


def test_export_csv_and_json(
    browser: Driver, size: str, chromium: Browser, gateway: Gateway, gadgets: str
) -> None:
    """Export CSV gives the gateway's own FORMAT csv answer for the same SQL, byte for byte
    (quoting, NULL, DECIMAL digits, base64); export JSON gives the rows as objects with exact
    numbers; both hold every row, also of a result the page shows only the start of."""
    sql = f"SELECT id, name, note, price, added, thumb FROM {gadgets} ORDER BY id"
    open_console(browser, gateway)
    run_sql(browser, sql)
    clear_downloads(chromium)
    browser.find_element(By.CSS_SELECTOR, "#results .result-set .export-csv").click()
    csv = downloaded(chromium, "dbslayer-result-1.csv")
    server_csv = post(gateway, {"SQL": sql, "FORMAT": "csv"})
    assert server_csv.status == 200, server_csv
    assert csv == server_csv.body
    assert b'"blue, ""large"""' in csv and b"\r\n2,gear,,2.5000000000," in csv
    assert active_id(browser) != "run"  # (nothing else moved)

    browser.find_element(By.CSS_SELECTOR, "#results .result-set .export-json").click()
    rows = exact(downloaded(chromium, "dbslayer-result-1.json"))
    result = exact(post(gateway, {"SQL": sql}).body)["RESULT"]
    assert rows == [dict(zip(result["HEADER"], row)) for row in result["ROWS"]]
    assert rows[0]["price"] == Decimal("12345678901234567890.0123456789")
    assert rows[1]["note"] is None and rows[2]["note"] == ""

    # a result of 1,500 rows: 1,000 shown, all exported; two result sets, two files
    run_sql(browser, "SELECT seq AS n FROM seq_1_to_1500; SELECT 'x' AS a, 'y' AS a")
    assert "Showing the first 1000 of 1500 rows" in text(browser, "#results .more-rows")
    clear_downloads(chromium)
    sets = browser.find_elements(By.CSS_SELECTOR, "#results .result-set")
    sets[0].find_element(By.CSS_SELECTOR, ".export-csv").click()
    lines = downloaded(chromium, "dbslayer-result-1.csv").split(b"\r\n")
    assert lines[0] == b"n" and lines[1500] == b"1500" and lines[-1] == b"" and len(lines) == 1502
    sets[1].find_element(By.CSS_SELECTOR, ".export-json").click()
    assert exact(downloaded(chromium, "dbslayer-result-2.json")) == [{"a": "x", "a_2": "y"}]
    assert_fits(browser, "the console with export buttons")


def processlist_count(mariadb: MariaDB, marker: str) -> int:
    out = mariadb.sql(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
        f"WHERE INFO LIKE '%{marker}%' AND INFO NOT LIKE '%PROCESSLIST%'"
    )
    return int(out.split()[-1])


def cancel_a_running_statement(
    browser: Driver, size: str, gateway: Gateway, mariadb: MariaDB, marker: str
) -> None:
    """Run a long statement, check the page while it runs, press Cancel, check the page."""
    open_console(browser, gateway)
    before = runs(browser)
    type_sql(browser, f"SELECT SLEEP(20) AS {marker}")
    browser.find_element(By.ID, "run").click()
    cancel = wait(
        browser,
        lambda d: (
            d.find_element(By.ID, "cancel").is_displayed() and d.find_element(By.ID, "cancel")
        ),
    )
    assert browser.find_element(By.ID, "busy").is_displayed()
    until(lambda: processlist_count(mariadb, marker) == 1, 10, "the statement running")
    assert stats(gateway)["in_flight"] == 1
    assert_contrast(browser, "the console while a statement runs")
    assert_fits(browser, "the console while a statement runs")
    started = time.monotonic()
    cancel.click()
    wait(browser, lambda d: runs(d) > before, 5)
    assert time.monotonic() - started < 5
    assert text(browser, "#status") == "cancelled"
    assert "Cancelled" in text(browser, "#results")
    assert not browser.find_element(By.ID, "cancel").is_displayed()
    assert browser.find_element(By.ID, "run").is_enabled()
    assert active_id(browser) == "sql"
    assert "cancelled" in text(browser, "#history .history-item")
    assert_contrast(browser, "the console after a cancel")


def test_cancel_closes_the_request(
    browser: Driver, size: str, gateway: Gateway, mariadb: MariaDB
) -> None:
    """While a statement runs, Cancel (readable, like everything shown while it runs) aborts
    the fetch: the page shows "cancelled", Run is back, the focus is in the SQL box, the
    history says so; the gateway sees the request closed (it leaves "in flight") and stops
    the statement: it is gone from the server's process list within seconds."""
    marker = f"ux_cancel_{size}"
    cancel_a_running_statement(browser, size, gateway, mariadb, marker)
    until(lambda: stats(gateway)["in_flight"] == 0, 10, "the cancelled request out of flight")
    until(lambda: processlist_count(mariadb, marker) == 0, 5, "the statement stopped")


def test_row_numbers_and_header_stick(browser: Driver, size: str, gateway: Gateway) -> None:
    """Scrolled sideways, the row-number column stays at the box's left edge (data cells move
    under it); scrolled down, the header row stays at its top; the corner cell stays put."""
    open_console(browser, gateway)
    run_sql(browser, wide_query(20, 80))
    geometry = r"""
    const wrap = document.querySelector('#results .table-wrap');
    const box = wrap.getBoundingClientRect();
    const rownum = wrap.querySelector('tbody tr:nth-child(3) th.rownum').getBoundingClientRect();
    const corner = wrap.querySelector('thead th.rownum').getBoundingClientRect();
    const head = wrap.querySelector('thead th:nth-child(3)').getBoundingClientRect();
    const cell = wrap.querySelector('tbody tr:nth-child(3) td:nth-of-type(3)').getBoundingClientRect();
    const top = (r) => Math.round(r.top - box.top - wrap.clientTop);
    const left = (r) => Math.round(r.left - box.left - wrap.clientLeft);
    return {rownum: [left(rownum), top(rownum)], corner: [left(corner), top(corner)],
            head: [left(head), top(head)], cell: [left(cell), top(cell)],
            room: [wrap.scrollWidth - wrap.clientWidth, wrap.scrollHeight - wrap.clientHeight]};
    """
    start = browser.execute_script(geometry)
    assert start["room"][0] > 300 and start["room"][1] > 300, start
    assert start["corner"] == [0, 0]
    position = browser.execute_script(
        "return [...document.querySelectorAll('#results .table-wrap th.rownum')].slice(0, 2)"
        ".map((th) => getComputedStyle(th).position)"
    )
    assert position == ["sticky", "sticky"]

    browser.execute_script("document.querySelector('#results .table-wrap').scrollLeft = 300")
    moved = browser.execute_script(geometry)
    assert moved["rownum"] == [0, start["rownum"][1]], (start, moved)
    assert moved["cell"][0] == start["cell"][0] - 300
    assert moved["corner"] == [0, 0]

    browser.execute_script("document.querySelector('#results .table-wrap').scrollTop = 300")
    down = browser.execute_script(geometry)
    assert down["head"] == [moved["head"][0], 0], (moved, down)
    assert down["rownum"] == [0, start["rownum"][1] - 300]
    assert down["corner"] == [0, 0]
    # the sticky cells are opaque: the scrolled cells do not show through them
    backgrounds = browser.execute_script(
        "return [...document.querySelectorAll('#results .table-wrap th.rownum')].slice(0, 2)"
        ".map((th) => getComputedStyle(th).backgroundColor)"
    )
    assert all(bg.startswith("rgb(") for bg in backgrounds), backgrounds


def error_title(driver: Driver) -> str:
    return text(driver, "#results .sql-error .error-title")


def test_sql_errors_labelled_by_backend_kind(
    browser: Driver, size: str, gateway: Gateway, demo: Gateway
) -> None:
    """An SQL error is labelled by the answer's BACKEND_KIND (MariaDB, MySQL, SQLite), "SQL
    error" without one; never "MySQL error" for the SQLite demo."""
    for gw, sql, errno in ((gateway, "SELECT nope", 1054), (demo, "SELECT nope FROM users", 1)):
        answer = post(gw, {"SQL": sql}).json()
        assert answer["MYSQL_ERRNO"] == errno
        label = KIND_LABELS.get(str(answer.get("BACKEND_KIND", "")), "SQL")
        open_console(browser, gw)
        run_sql(browser, sql)
        assert error_title(browser) == f"{label} error {errno}"
    assert label != "MySQL"  # (the demo's label)

    # each kind as an answer would carry it (the page's fetch answered in the page)
    canned = r"""
    const [answer] = arguments;
    window.fetch = async () => new Response(JSON.stringify(answer),
      {status: 200, headers: {"Content-Type": "application/json"}});
    """
    for kind, expected in (
        ("mariadb", "MariaDB error 1064"),
        ("mysql", "MySQL error 1064"),
        ("sqlite", "SQLite error 1064"),
        ("oracle", "SQL error 1064"),
        (None, "SQL error 1064"),
    ):
        canned_answer: dict[str, Any] = {
            "MYSQL_ERRNO": 1064,
            "MYSQL_ERROR": "syntax",
            "SERVER": "x",
        }
        if kind is not None:
            canned_answer["BACKEND_KIND"] = kind
        browser.execute_script(canned, canned_answer)
        run_sql(browser, "SELECT 1")
        assert error_title(browser) == expected
        assert "BACKEND_KIND" not in text(browser, "#results")  # (no "Information" table)


# ---------------------------------------------------------------------- the dashboard


WATCH_IN_FLIGHT = r"""
window.inFlightSeen = [];
const node = document.getElementById('in-flight');
new MutationObserver(() => window.inFlightSeen.push(node.textContent))
  .observe(node, {childList: true, characterData: true, subtree: true});
"""


def fetches(driver: Driver) -> int:
    return int(driver.find_element(By.ID, "last-updated").get_attribute("data-fetches") or 0)


def open_dashboard(driver: Driver, gw: Gateway) -> None:
    driver.get(gw.url + "/stats")
    wait(driver, lambda d: fetches(d) >= 1)
    wait(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#backends tbody .badge.up"),
    )


def in_flight_over_polls(driver: Driver, polls: int) -> list[str]:
    """The "In flight" figures the dashboard showed over its next ``polls`` polls."""
    driver.execute_script(WATCH_IN_FLIGHT)
    start = fetches(driver)
    wait(driver, lambda d: fetches(d) >= start + polls, 4 * polls + 10)
    return list(driver.execute_script("return window.inFlightSeen"))


def test_dashboard_fits_phone_and_desktop_with_readable_text(
    browser: Driver, size: str, gateway: Gateway
) -> None:
    """With errors, backends and latency to show: no sideways scrolling, every text (the
    charts' labels included) at 4.5:1 or more in both colour schemes."""
    post(gateway, {"SQL": "SELECT * FROM ux_missing_table_with_a_long_name_" + "x" * 40})
    open_dashboard(browser, gateway)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#errors tbody td.err"))
    wait(browser, lambda d: fetches(d) >= 2)  # (the qps chart has a line)
    assert_fits(browser, "the dashboard")
    assert_contrast_both_schemes(browser, "the dashboard")
    assert browser.find_elements(By.CSS_SELECTOR, "#qps-chart text"), "chart labels checked"
    screenshot(browser, f"dashboard-{size}.png")


def test_dashboard_in_flight_changes_and_post_errors(
    browser: Driver, size: str, gateway: Gateway, mariadb: MariaDB
) -> None:
    """In flight: 0 over several polls while the dashboard itself polls (/stats and
    /stats/errors at once), 1 while a request runs; a backend that never changed shows
    changes 0; failed POSTs show their SQL, a password in it redacted."""
    secret = f"pw-ux-{size}"
    missing = f"ux_missing_{size}"
    assert post(gateway, {"SQL": f"SELECT * FROM {missing}"}).json()["MYSQL_ERRNO"] == 1146
    create = f"CREATE USER 'ux_{size}'@'localhost' IDENTIFIED BY '{secret}' AND garbage"
    assert post(gateway, {"SQL": create}).json()["MYSQL_ERRNO"] == 1064
    journal = gateway.get("/stats/error", headers={"Accept": "application/json"})
    assert secret.encode() not in journal.body
    shown = [e.get("sql") for e in journal.json()[-2:]]
    assert shown == [f"SELECT * FROM {missing}", "CREATE USER … [redacted]"]

    open_dashboard(browser, gateway)
    seen = in_flight_over_polls(browser, 3)
    assert seen and set(seen) == {"0"}, seen
    assert text(browser, "#in-flight") == "0"
    changes = browser.find_elements(By.CSS_SELECTOR, "#backends tr[data-backend='db1'] td")[-2]
    assert changes.text == "0"
    errors = text(browser, "#errors tbody")
    assert f"SELECT * FROM {missing}" in errors and "CREATE USER … [redacted]" in errors
    assert secret not in browser.page_source

    running = threading.Thread(
        target=post, args=(gateway, {"SQL": f"SELECT SLEEP(4) AS ux_busy_{size}"}), daemon=True
    )
    browser.execute_script(WATCH_IN_FLIGHT)
    running.start()
    try:
        wait(browser, lambda d: d.find_element(By.ID, "in-flight").text == "1", 10)
        running.join(30)
        wait(browser, lambda d: d.find_element(By.ID, "in-flight").text == "0", 10)
    finally:
        running.join(30)
    assert set(browser.execute_script("return window.inFlightSeen")) <= {"0", "1"}


def test_dashboard_two_workers_demo(browser: Driver, size: str, demo: Gateway) -> None:
    """The demo as ``make run`` serves it (two workers, each checking the backend once):
    changes 0 (it showed 2) and in flight 0 (it showed 1 or 2) over several polls."""
    assert post(demo, {"SQL": "SELECT COUNT(*) FROM users"}).status == 200
    open_dashboard(browser, demo)
    seen = in_flight_over_polls(browser, 3)
    assert seen and set(seen) == {"0"}, seen
    changes = browser.find_elements(By.CSS_SELECTOR, "#backends tr[data-backend='demo'] td")[-2]
    assert changes.text == "0"
    assert stats(demo)["backends"]["demo"]["state_changes"] == 0
    assert_fits(browser, "the demo's dashboard")
