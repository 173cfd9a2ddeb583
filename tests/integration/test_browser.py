"""The browser pages, driven by a real headless Chromium (Selenium, Debian's chromium and
chromium-driver) against a real gateway and MariaDB: the query console at ``/`` and the
dashboard that ``/stats`` serves to browsers.

Screenshots of both pages are saved under ``artifacts/`` (git-ignored); the same runs write
``docs/console.png`` and ``docs/dashboard.png``, the pictures the documentation shows.

Install the browser with ``./.ci/system-packages browser`` and Selenium with pip; without them
the module is skipped.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Gateway, MariaDB, Redis

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
)


def _binary(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/lib/chromium")


CHROMIUM = _binary("chromium")
CHROMEDRIVER = _binary("chromedriver")
if not CHROMIUM or not CHROMEDRIVER:
    pytest.skip(
        "chromium and chromedriver not found (./.ci/system-packages browser, or "
        "apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent
WIDTH, HEIGHT = 1200, 800

Driver = Any


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    """Headless Chromium with a fresh profile and a 1200x800 viewport."""
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
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
        f"--window-size={WIDTH},{HEIGHT}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    yield driver
    driver.quit()


@pytest.fixture
def gadgets(mariadb: MariaDB) -> str:
    """A table with NULLs, an exact DECIMAL and a VARBINARY column."""
    mariadb.sql(
        "CREATE OR REPLACE TABLE test.gadgets (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, "
        "colour VARCHAR(20) NULL, price DECIMAL(30,10) NULL, added DATETIME NOT NULL, "
        "thumb VARBINARY(32) NULL);"
        "INSERT INTO test.gadgets VALUES "
        "(1, 'sprocket', 'blue', 12345678901234567890.0123456789, '2026-01-05 09:30:00', 0x00FF10),"
        "(2, 'gear', NULL, 2.5, '2026-02-11 14:00:00', NULL),"
        "(3, 'flange', 'red', NULL, '2026-03-01 08:15:00', 'hello'),"
        "(4, 'widget', NULL, 19.99, '2026-03-17 17:45:00', 0x89504E470D0A1A0A0000000D49484452),"
        "(5, 'cog', 'green', 0.05, '2026-04-02 11:20:00', NULL);"
    )
    return "gadgets"


# ---------------------------------------------------------------------- helpers


def wait(driver: Driver, predicate: Callable[[Driver], Any], timeout: float = 10) -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(predicate)
    except TimeoutException:
        logs = [entry["message"] for entry in driver.get_log("browser")]
        raise AssertionError(f"timed out; browser console: {logs}") from None


def screenshot(driver: Driver, name: str, docs: bool = False) -> None:
    """Save a screenshot under artifacts/ (and docs/ for the documentation's pictures)."""
    ARTIFACTS.mkdir(exist_ok=True)
    png = driver.get_screenshot_as_png()
    (ARTIFACTS / name).write_bytes(png)
    if docs:
        DOCS.mkdir(exist_ok=True)
        (DOCS / name).write_bytes(png)


def open_console(driver: Driver, gw: Gateway) -> None:
    driver.get(gw.url + "/")
    driver.execute_script("localStorage.clear()")
    driver.get(gw.url + "/")
    wait(driver, lambda d: d.find_element(By.ID, "sql").is_displayed())


def runs(driver: Driver) -> int:
    return int(driver.find_element(By.ID, "results").get_attribute("data-runs") or 0)


def run_sql(driver: Driver, sql: str, fmt: str = "json", keyboard: bool = False) -> None:
    """Type SQL into the box, pick the format, run it, wait for the answer to be shown."""
    before = runs(driver)
    box = driver.find_element(By.ID, "sql")
    box.clear()
    box.send_keys(sql)
    Select(driver.find_element(By.ID, "format")).select_by_value(fmt)
    if keyboard:
        box.send_keys(Keys.CONTROL, Keys.ENTER)
    else:
        driver.find_element(By.ID, "run").click()
    wait(driver, lambda d: runs(d) > before)


def table(driver: Driver, index: int = 0) -> tuple[list[str], list[list[str]]]:
    """Column names and cell texts of the index-th result table."""
    return tuple(  # type: ignore[return-value]
        driver.execute_script(
            """
            const set = document.querySelectorAll('#results .result-set')[arguments[0]];
            const names = [...set.querySelectorAll('thead th:not(.rownum)')]
                .map(th => th.firstChild.textContent);
            const rows = [...set.querySelectorAll('tbody tr')]
                .map(tr => [...tr.querySelectorAll('td')].map(td => td.textContent));
            return [names, rows];
            """,
            index,
        )
    )


def text(driver: Driver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def history(driver: Driver) -> list[str]:
    return [el.text for el in driver.find_elements(By.CSS_SELECTOR, "#history .history-sql")]


def users(redis: Redis, *args: str) -> str:
    result = subprocess.run(
        [str(BIN / "dbslayer"), "users", *args, "--redis", redis.url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


# ---------------------------------------------------------------------- the console


SELECT = "SELECT id, name, colour, price, added, thumb FROM gadgets ORDER BY id"


def test_console_select_error_history(browser: Driver, gateway: Gateway, gadgets: str) -> None:
    """Rows in a table (NULL and binary marked, DECIMAL exact), an SQL error with its errno,
    the history of both (kept across a reload, and clickable), the text formats."""
    open_console(browser, gateway)
    assert browser.title == "dbslayer console"
    assert not browser.find_element(By.ID, "server-field").is_displayed()  # one backend

    run_sql(browser, SELECT)
    names, rows = table(browser)
    assert names == ["id", "name", "colour", "price", "added", "thumb"]
    assert rows[0][:5] == [
        "1",
        "sprocket",
        "blue",
        "12345678901234567890.0123456789",
        "2026-01-05 09:30:00",
    ]
    assert rows[1][:4] == ["2", "gear", "NULL", "2.5000000000"]
    assert len(rows) == 5
    nulls = browser.find_elements(By.CSS_SELECTOR, "#results td.is-null .null")
    assert [n.text for n in nulls] == ["NULL"] * 5  # colour x2, price x1, thumb x2
    binary = browser.find_elements(By.CSS_SELECTOR, "#results td.is-binary")
    assert len(binary) == 3
    assert binary[0].find_element(By.CSS_SELECTOR, ".badge.binary").text == "binary"
    assert binary[0].get_attribute("data-base64") == base64.b64encode(b"\x00\xff\x10").decode()
    assert binary[1].get_attribute("data-base64") == base64.b64encode(b"hello").decode()
    assert binary[2].text.startswith("binary") and binary[2].text.endswith("…")  # shortened
    assert text(browser, "#status") == "OK"
    assert text(browser, "#meta-server") == "db1"
    assert text(browser, "#meta-time").endswith("ms")

    run_sql(browser, "SELECT nope FROM gadgets", keyboard=True)  # Ctrl+Enter
    error = browser.find_element(By.CSS_SELECTOR, "#results .error-box.sql-error")
    assert error.find_element(By.CSS_SELECTOR, ".errno").text == "1054"
    kind = gateway.db({"SQL": "SELECT nope FROM gadgets"}).json().get("BACKEND_KIND")
    label = {"mariadb": "MariaDB", "mysql": "MySQL"}.get(kind, "SQL")  # (by the backend's kind)
    assert f"{label} error 1054" in error.text and "Unknown column 'nope'" in error.text
    assert text(browser, "#status") == "SQL error 1054"
    assert not browser.find_elements(By.CSS_SELECTOR, "#results table")

    assert history(browser) == ["SELECT nope FROM gadgets", SELECT]
    items = browser.find_elements(By.CSS_SELECTOR, "#history .history-item")
    assert "failed" in (items[0].get_attribute("class") or "")
    assert "error 1054" in items[0].text and "5 rows" in items[1].text

    browser.refresh()  # the history is kept in localStorage
    wait(browser, lambda d: len(history(d)) == 2)
    browser.find_elements(By.CSS_SELECTOR, "#history .history-item")[1].click()
    assert browser.find_element(By.ID, "sql").get_attribute("value") == SELECT

    # several statements, a write, an error in a later statement after results
    run_sql(browser, "INSERT INTO gadgets VALUES (9, 'spare', NULL, NULL, NOW(), NULL)")
    assert text(browser, "#results .affected") == "1"
    assert "1 row affected" in text(browser, "#results .update-result")
    run_sql(browser, "SELECT 18446744073709551615 AS big; SELECT nothing")
    assert text(browser, "#results .sql-error .errno") == "1054"
    assert "Statement 2 failed" in text(browser, "#results .sql-error")
    assert table(browser)[1] == [["18446744073709551615"]]

    # text formats are shown as text; CSV errors come back as JSON and are shown as errors
    run_sql(browser, "SELECT id, name FROM gadgets WHERE id < 3", fmt="xml")
    assert text(browser, "#text-output").startswith("<object><key>RESULT</key>")
    run_sql(browser, "SELECT id, name FROM gadgets WHERE id < 3", fmt="csv")
    assert text(browser, "#text-output").splitlines() == ["id,name", "1,sprocket", "2,gear"]
    run_sql(browser, "SELECT nope", fmt="csv")
    assert text(browser, "#results .sql-error .errno") == "1054"

    # the picture for the documentation: a result table and a history with an error in it
    browser.find_elements(By.CSS_SELECTOR, "#history .history-item")[-1].click()
    run_sql(browser, SELECT)
    screenshot(browser, "console.png", docs=True)


def test_console_untrusted_text(browser: Driver, gateway: Gateway) -> None:
    """Values that look like HTML are shown as text, never run as markup."""
    open_console(browser, gateway)
    html = '<img src=x onerror="window.pwned=1">'
    run_sql(browser, f"SELECT '{html}' AS `<b>h</b>`, '<script>window.pwned=2</script>' AS s")
    names, rows = table(browser)
    assert names == ["<b>h</b>"] + ["s"]
    assert rows == [[html, "<script>window.pwned=2</script>"]]
    assert not browser.find_elements(By.CSS_SELECTOR, "#results img, #results script, #results b")
    run_sql(browser, "SELECT 1 FROM `<i>nope</i>`")
    assert "<i>nope</i>" in text(browser, "#results .error-message")
    assert not browser.find_elements(By.CSS_SELECTOR, "#results i")
    assert browser.execute_script("return window.pwned") is None


def test_console_named_servers(browser: Driver, mariadb: MariaDB, gateway_factory: Any) -> None:
    """With named backends the page offers a picker; a request without SERVER gets the 400
    that lists the names, shown as a gateway error; a picked SERVER is sent and answers."""
    gw = gateway_factory(
        "--backend", mariadb.dsn(name="alpha"), "--backend", mariadb.dsn(name="beta"),
        "--mode", "named",
    )  # fmt: skip
    open_console(browser, gw)
    picker = wait(browser, lambda d: d.find_element(By.ID, "server-field").is_displayed())
    assert picker
    options = [
        o.get_attribute("value") for o in Select(browser.find_element(By.ID, "server")).options
    ]
    assert options == ["", "alpha", "beta"]

    run_sql(browser, "SELECT DATABASE() AS db")
    error = browser.find_element(By.CSS_SELECTOR, "#results .error-box.gateway-error")
    assert error.find_element(By.CSS_SELECTOR, ".errno").text == "400"
    assert "SERVER is required" in error.text and "alpha, beta" in error.text
    assert text(browser, "#status") == "HTTP 400"

    Select(browser.find_element(By.ID, "server")).select_by_value("beta")
    run_sql(browser, "SELECT DATABASE() AS db")
    assert table(browser) == (["db"], [["test"]])
    assert text(browser, "#meta-server") == "beta"
    assert "beta" in browser.find_elements(By.CSS_SELECTOR, "#history .history-item")[0].text


def test_console_and_dashboard_token(
    browser: Driver, mariadb: MariaDB, redis: Redis, gateway_factory: Any
) -> None:
    """With authentication on, a 401 is shown and points at the token field; the token is
    sent as Bearer, and kept in localStorage only when "remember" is ticked, where the
    dashboard finds it for the protected /stats."""
    token = users(redis, "add", "ops", "--role", "admin")
    gw = gateway_factory(
        "--backend",
        mariadb.dsn(),
        "--auth",
        "--redis",
        redis.url,
        "--protect-admin",
        "--read-on-shared-account",
    )
    open_console(browser, gw)
    run_sql(browser, "SELECT 1 AS one")
    assert text(browser, "#results .gateway-error .errno") == "401"
    field = browser.find_element(By.CSS_SELECTOR, ".token-field")
    assert "attention" in (field.get_attribute("class") or "")

    browser.find_element(By.ID, "token").send_keys(token)
    run_sql(browser, "SELECT 1 AS one")
    assert table(browser) == (["one"], [["1"]])
    assert browser.execute_script("return localStorage.getItem('dbslayer.token')") is None
    browser.find_element(By.ID, "remember-token").click()
    assert browser.execute_script("return localStorage.getItem('dbslayer.token')") == token

    browser.get(gw.url + "/stats")
    wait(browser, lambda d: d.find_element(By.ID, "last-updated").text != "never")
    assert not browser.find_element(By.ID, "fetch-error").is_displayed()
    assert text(browser, "#auth-ok") != "0"

    browser.execute_script("localStorage.removeItem('dbslayer.token')")
    browser.refresh()  # no token: the failed fetch is shown, and where to put the token
    banner = wait(
        browser,
        lambda d: (
            d.find_element(By.ID, "fetch-error").is_displayed()
            and d.find_element(By.ID, "fetch-error")
        ),
    )
    assert "401" in banner.text and "token" in banner.text
    assert browser.find_element(By.ID, "token").is_displayed()


# ---------------------------------------------------------------------- the dashboard


def traffic(gw: Gateway, seconds: float, stop: threading.Event) -> None:
    """Requests at a rate that rises and falls, so the chart has a shape."""
    started = time.monotonic()
    while not stop.is_set() and time.monotonic() - started < seconds:
        phase = (time.monotonic() - started) % 8
        rate = 8 + 6 * phase if phase < 4 else 8 + 6 * (8 - phase)
        gw.post("/db", json.dumps({"SQL": "SELECT id, name FROM gadgets WHERE id = 1"}).encode())
        time.sleep(1 / rate)


def test_dashboard(browser: Driver, mariadb: MariaDB, gadgets: str, gateway_factory: Any) -> None:
    """The dashboard draws /stats: totals, the qps chart growing as it samples, reference
    buckets, latency, backends and recent errors; a failed fetch is shown, the page stays."""
    gw = gateway_factory("--backend", mariadb.dsn(), "--stats-bucket-seconds", "2")
    gw.post("/db", b'{"SQL":"SELECT * FROM missing_table"}')
    gw.post("/db", b"[1]")
    browser.get(gw.url + "/stats")
    assert browser.title == "dbslayer dashboard"
    wait(browser, lambda d: d.find_element(By.ID, "last-updated").text != "never")
    assert text(browser, "#total-requests") == "2"
    assert text(browser, "#sql-errors") == "1"
    assert text(browser, "#gateway-errors") == "1"
    wait(
        browser,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, "#backends tr[data-backend='db1'] .badge").text == "up"
        ),
    )
    row = text(browser, "#backends tr[data-backend='db1']")
    assert "db1" in row and "mysql" in row
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#errors tbody tr")) == 2)
    errors = text(browser, "#errors tbody")
    assert "1146" in errors and "missing_table" in errors and "JSON object" in errors

    chart = browser.find_element(By.ID, "qps-chart")
    points = int(chart.get_attribute("data-points") or 0)
    stop = threading.Event()
    load = threading.Thread(target=traffic, args=(gw, 40, stop), daemon=True)
    load.start()
    try:
        wait(browser, lambda d: int(chart.get_attribute("data-points") or 0) >= points + 3)
        wait(browser, lambda d: float(d.find_element(By.ID, "qps-now").text) > 0)
        buckets = browser.find_element(By.ID, "buckets-chart")
        wait(browser, lambda d: int(buckets.get_attribute("data-buckets") or 0) >= 2)
        # some 16 s of samples under load, for the documentation's picture
        wait(browser, lambda d: int(chart.get_attribute("data-points") or 0) >= points + 8, 30)
        screenshot(browser, "dashboard.png", docs=True)
    finally:
        stop.set()
        load.join()
    line = browser.find_element(By.ID, "qps-line")
    assert len((line.get_attribute("points") or "").split()) >= points + 8
    total = gw.get("/stats", headers={"Accept": "application/json"}).json()["total_requests"]
    assert total > 50
    wait(browser, lambda d: d.find_element(By.ID, "total-requests").text == f"{total:,}")
    latency = text(browser, "#latency tr[data-endpoint='db']")
    assert latency.startswith("/db") and "ms" in latency

    before = browser.find_element(By.ID, "last-updated").text
    gw.stop()  # the gateway goes away: the page says so and keeps the last figures
    banner = wait(
        browser,
        lambda d: (
            d.find_element(By.ID, "fetch-error").is_displayed()
            and d.find_element(By.ID, "fetch-error")
        ),
    )
    assert "Could not fetch /stats" in banner.text and before in banner.text
    assert text(browser, "#total-requests") == f"{total:,}"
    assert "failed" in (browser.find_element(By.ID, "fetch-dot").get_attribute("class") or "")
    screenshot(browser, "dashboard-fetch-failed.png")
