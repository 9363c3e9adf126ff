"""The checkpoint page (services/gateway/static/checkpoint/) in headless Chromium, in front of the real services.

Each test starts its own Chromium whose fake camera plays a Y4M video of one QR code (tests/gateway/camera.py):
the page reads it with zxing-wasm, asks the gateway's POST /v1/verify and shows the verdict. Debian's chromium
and chromium-driver are required (`apt-get install -y chromium chromium-driver`; .ci/run installs them): without
them these tests fail, they never skip. Selenium is blocking, so the browser work runs in a thread and the
in-process services keep answering; every wait polls with a deadline (WebDriverWait), none sleeps.

UPDATE_SCREENSHOT=1 rewrites docs/checkpoint-page.png from the VALID verdict of the first test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from yarl import URL

from tests.gateway.camera import write_y4m
from tests.verify_svc.conftest import amend_to_positive, released_certificate

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PHONE = (360, 740)  # CSS pixels
WAIT_S = 20
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "checkpoint-page.png"
GARBAGE_QR = "HC1:NOT-BASE45!!"
# The holder tests.result_svc.helpers.person() registers.
NAME, NAME_LATIN, BIRTH_DATE = "Nguyễn Văn An", "NGUYEN VAN AN", "14/03/1985"
CREDENTIAL_KEY, LANGUAGE_KEY = "checkpoint.credential", "checkpoint.language"
# Runs before the page's own scripts in every document (CDP scripts are not subject to the page's CSP).
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.effectiveDirective + " " + e.blockedURI);
});
"""


def require_chromium() -> None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(
            f"the checkpoint page's browser tests need Chromium and chromedriver; missing: {', '.join(missing)}."
            " Install them with `apt-get install -y chromium chromium-driver` (.ci/run does).",
            pytrace=False,
        )


class Browser:
    """One Chromium showing the page, its camera fixed to one video."""

    def __init__(self, driver: WebDriver, base_url: str, shots: Path) -> None:
        self.driver, self.base_url, self.shots = driver, base_url, shots

    def wait(self, condition: Callable[[WebDriver], Any], what: str, timeout: float = WAIT_S) -> Any:
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(condition, f"waited for {what}")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def text(self, element_id: str) -> str:
        return self.js("return document.getElementById(arguments[0]).textContent", element_id).strip()

    def shown(self, element_id: str) -> bool:
        return self.driver.find_element(By.ID, element_id).is_displayed()

    def click(self, element_id: str) -> None:
        self.driver.find_element(By.ID, element_id).click()

    def open(self, path: str = "/") -> None:
        self.driver.get(self.base_url + path)

    def sign_in(self, token: str) -> None:
        self.wait(lambda d: self.shown("signin-screen"), "the sign-in screen")
        self.driver.find_element(By.ID, "token-input").send_keys(token)
        self.click("signin-button")
        self.wait(lambda d: self.shown("scan-screen"), "the scanning screen")

    def verdict(self, expected: str | None = None) -> str:
        """Wait for a verdict on screen (`expected`, when given) and return its data-verdict."""

        def on_screen(driver: WebDriver) -> str | bool:
            value = self.js("const v = document.getElementById('verdict'); return v.hidden ? '' : v.dataset.verdict;")
            return value if value and (expected is None or value == expected) else False

        try:
            return self.wait(on_screen, "the verdict")
        except TimeoutException:
            seen = {
                "verdict": self.js("return document.getElementById('verdict').dataset.verdict"),
                "status": self.text("scan-status"),
                "problem": self.text("problem-message"),
                "csp violations": self.js("return window.__cspViolations"),
            }
            raise AssertionError(f"no verdict {expected or ''} on screen within {WAIT_S} s: {seen}") from None

    def page_text(self) -> str:
        """Everything in the DOM a person or a script could read: the markup and every text node."""
        return self.js("return document.documentElement.outerHTML + '\\n' + document.documentElement.textContent")

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


@contextlib.contextmanager
def chromium(base_url: str, video: Path, shots: Path) -> Iterator[Browser]:
    """A headless phone-sized Chromium whose camera shows `video`; no download, no sandbox (runs as root)."""
    require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
        f"--window-size={PHONE[0]},{PHONE[1]}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--metrics-recording-only",
        "--password-store=basic",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_CSP_VIOLATIONS})
        # A phone's viewport exactly (a headless window is at least 500 px wide), at a phone's pixel density.
        metrics = {"width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 2, "mobile": True}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True})
        yield Browser(driver, base_url, shots)
    finally:
        driver.quit()


async def in_browser(stack, video: Path, shots: Path, scenario: Callable[[Browser], Any]) -> Any:
    """Run `scenario` in a fresh browser, in a thread: the services in this process keep answering meanwhile."""

    def run() -> Any:
        with chromium(stack.gateway_url, video, shots) as browser:
            try:
                return scenario(browser)
            except Exception:
                browser.screenshot("failure")
                raise

    return await asyncio.to_thread(run)


async def verify_over_http(stack, qr: str, language: str = "vi") -> dict:
    async with stack.http.post(
        stack.gateway_url + "/v1/verify", json={"qr": qr}, headers=stack.headers(**{"accept-language": language})
    ) as response:
        assert response.status == 200, await response.text()
        return await response.json()


@pytest.fixture(scope="module", autouse=True)
def chromium_is_installed() -> None:
    require_chromium()


# --- 1. a valid certificate -------------------------------------------------------------------------------


async def test_a_valid_certificate_shown_to_the_camera_is_valid_with_name_and_birth_date(stack, tmp_path):
    event = await released_certificate(stack.platform, 901)
    video = write_y4m(tmp_path / "valid.y4m", event.certificate.qr)

    def scenario(browser: Browser) -> None:
        browser.open("/")  # redirects to /checkpoint/
        assert browser.driver.current_url == stack.gateway_url + "/checkpoint/"
        browser.sign_in(stack.device_token)
        assert browser.verdict() == "VERDICT_VALID"
        verdict = browser.driver.find_element(By.ID, "verdict")
        assert verdict.get_attribute("data-tone") == "valid"
        assert browser.text("verdict-word") == "HỢP LỆ"
        assert browser.text("verdict-action") == "CHO QUA"
        assert browser.text("holder-name") == NAME
        assert browser.text("holder-name-latin") == NAME_LATIN
        assert browser.text("holder-dob") == BIRTH_DATE
        assert browser.text("test-type") == "Xét nghiệm PCR (NAAT)"
        assert browser.text("certificate-id") == event.certificate.certificate_id
        for field in ("sample-time", "valid-until"):
            assert re.fullmatch(r".*\d{2}:\d{2}.*\d{2}/\d{2}/\d{4}.*", browser.text(field)), browser.text(field)
        assert browser.text("verdict-reason") == ""
        # the verdict fills the phone's screen below the top bar, its "Scan next" button within reach
        width, height = browser.js("return [window.innerWidth, window.innerHeight]")
        box = verdict.rect
        assert (box["x"], box["width"], box["y"] + box["height"]) == (0, width, height) and box["y"] <= 64
        assert browser.shown("scan-next")
        assert browser.driver.find_element(By.ID, "scan-next").rect["y"] + 60 <= height
        shot = browser.screenshot("valid")
        if os.environ.get("UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(shot, SCREENSHOT)

    await in_browser(stack, video, tmp_path, scenario)


# --- 2. revoked -----------------------------------------------------------------------------------------


async def test_the_same_certificate_after_the_lab_amends_it_to_positive_is_revoked(stack, tmp_path):
    event = await released_certificate(stack.platform, 902)
    await amend_to_positive(stack.platform, event)
    deadline = time.monotonic() + 10
    while (answer := await verify_over_http(stack, event.certificate.qr))["verdict"] != "VERDICT_REVOKED":
        assert time.monotonic() < deadline, f"never revoked: {answer}"
        await asyncio.sleep(0.05)
    video = write_y4m(tmp_path / "revoked.y4m", event.certificate.qr)

    def scenario(browser: Browser) -> None:
        browser.open("/checkpoint/")
        browser.sign_in(stack.device_token)
        assert browser.verdict() == "VERDICT_REVOKED"
        assert browser.driver.find_element(By.ID, "verdict").get_attribute("data-tone") == "invalid"
        assert browser.text("verdict-word") == "ĐÃ BỊ THU HỒI"
        assert browser.text("verdict-action") == "KHÔNG CHO QUA"
        assert browser.text("verdict-reason") == answer["reason"] != ""
        assert browser.text("holder-name") == NAME  # genuine, so the officer still sees whose it is
        browser.screenshot("revoked")

    await in_browser(stack, video, tmp_path, scenario)


# --- 3. garbage -----------------------------------------------------------------------------------------


async def test_a_qr_that_is_no_certificate_is_malformed_and_shows_no_holder(stack, tmp_path):
    expected = await verify_over_http(stack, GARBAGE_QR)
    assert expected["verdict"] == "VERDICT_MALFORMED"
    video = write_y4m(tmp_path / "garbage.y4m", GARBAGE_QR)

    def scenario(browser: Browser) -> None:
        browser.open("/checkpoint/")
        browser.sign_in(stack.device_token)
        assert browser.verdict() == "VERDICT_MALFORMED"
        assert browser.driver.find_element(By.ID, "verdict").get_attribute("data-tone") == "invalid"
        assert browser.text("verdict-word") == "MÃ KHÔNG HỢP LỆ"
        assert browser.text("verdict-reason") == expected["reason"] != ""
        for field in ("holder-name", "holder-dob", "certificate-id", "valid-until"):
            assert browser.text(field) == "" and not browser.shown(field), field
        assert not browser.shown("facts") and not browser.shown("compare-hint")
        browser.screenshot("malformed")

    await in_browser(stack, video, tmp_path, scenario)


# --- 4. manual entry, then the next scan ----------------------------------------------------------------


async def test_manual_entry_gives_the_verdict_and_the_next_scan_leaves_no_trace_of_the_previous_person(stack, tmp_path):
    event = await released_certificate(stack.platform, 904)
    qr, certificate_id = event.certificate.qr, event.certificate.certificate_id
    video = write_y4m(tmp_path / "garbage.y4m", GARBAGE_QR)  # the camera shows someone else's broken code
    traces = (NAME, "Nguyễn", NAME_LATIN, "NGUYEN", BIRTH_DATE, "1985", certificate_id, qr[:40])

    def scenario(browser: Browser) -> None:
        browser.open("/checkpoint/")
        browser.sign_in(stack.device_token)
        assert browser.verdict() == "VERDICT_MALFORMED"  # the camera's code
        browser.click("scan-next")
        browser.wait(lambda d: browser.shown("scan-screen") and not browser.shown("verdict"), "scanning again")
        # the code still in front of the camera is not verified again: the officer can type meanwhile
        browser.wait(lambda d: "vừa được kiểm tra" in browser.text("scan-status"), "'this code was just checked'")
        browser.screenshot("scanning")
        browser.driver.find_element(By.CSS_SELECTOR, "#manual summary").click()
        browser.driver.find_element(By.ID, "manual-input").send_keys(qr)
        browser.click("manual-submit")
        assert browser.verdict() == "VERDICT_VALID"
        assert browser.text("holder-name") == NAME and browser.text("holder-dob") == BIRTH_DATE
        assert browser.text("certificate-id") == certificate_id
        assert browser.js("return document.getElementById('manual-input').value") == ""
        browser.screenshot("manual-valid")

        browser.click("scan-next")
        left = [trace for trace in traces if trace in browser.page_text()]
        assert left == [], f"the previous person is still in the DOM after 'Scan next': {left}"
        assert browser.verdict("VERDICT_MALFORMED")  # the next scan: the camera's code again
        left = [trace for trace in traces if trace in browser.page_text()]
        assert left == [], f"the previous person is still in the DOM after the next scan: {left}"
        browser.screenshot("next-scan")

    await in_browser(stack, video, tmp_path, scenario)


# --- 5. storage -----------------------------------------------------------------------------------------

STORAGE = """
const done = arguments[arguments.length - 1];
const session = Object.fromEntries(Object.keys(sessionStorage).map((k) => [k, sessionStorage.getItem(k)]));
Promise.all([indexedDB.databases(), caches.keys()]).then(([databases, cacheNames]) => done({
  local: Object.keys(localStorage), session, cookie: document.cookie,
  databases: databases.map((d) => d.name), caches: cacheNames,
}));
"""


async def test_the_page_stores_nothing_but_the_credential_and_the_language(stack, tmp_path):
    event = await released_certificate(stack.platform, 905)
    video = write_y4m(tmp_path / "valid.y4m", event.certificate.qr)

    def scenario(browser: Browser) -> None:
        browser.open("/checkpoint/")
        browser.sign_in(stack.device_token)
        assert browser.verdict() == "VERDICT_VALID"
        browser.click("lang-toggle")  # the language is the one other thing kept
        browser.wait(lambda d: browser.text("scan-next") == "Scan next", "English")
        stored = browser.driver.execute_async_script(STORAGE)
        assert stored == {
            "local": [],
            "session": {CREDENTIAL_KEY: stack.device_token, LANGUAGE_KEY: "en"},
            "cookie": "",
            "databases": [],
            "caches": [],
        }
        browser.click("sign-out")
        browser.wait(lambda d: browser.shown("signin-screen"), "the sign-in screen")
        stored = browser.driver.execute_async_script(STORAGE)
        assert stored["session"] == {LANGUAGE_KEY: "en"} and stored["local"] == []
        assert NAME not in browser.page_text() and not browser.shown("verdict")

    await in_browser(stack, video, tmp_path, scenario)


# --- 6. headers, same origin, no CSP violation -----------------------------------------------------------


class _InlineFinder(HTMLParser):
    """Collects what a strict CSP would block in index.html: inline scripts, styles and event handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style" or "style" in names or any(name.startswith("on") for name in names):
            self.found.append(f"<{tag} {sorted(names)}>")
        if tag == "script":
            self._in_script = True
            if "src" not in names:
                self.found.append("<script> without src")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append(f"inline script {data.strip()[:40]!r}")


def csp_directives(header: str) -> dict[str, str]:
    directives = (part.strip().split(None, 1) for part in header.split(";") if part.strip())
    return {parts[0]: parts[1] if len(parts) > 1 else "" for parts in directives}


async def test_the_page_is_served_with_a_strict_csp_and_loads_nothing_from_elsewhere(stack, tmp_path):
    files = {
        "/checkpoint/": "text/html",
        "/checkpoint/index.html": "text/html",
        "/checkpoint/app.js": "text/javascript",
        "/checkpoint/app.css": "text/css",
        "/checkpoint/vendor/zxing/reader.js": "text/javascript",
        "/checkpoint/vendor/zxing/zxing_reader.wasm": "application/wasm",
    }
    for path, content_type in files.items():
        async with stack.http.get(stack.gateway_url + path) as response:
            body = await response.read()
            assert response.status == 200, path
            assert response.content_type == content_type, path
            csp = csp_directives(response.headers["Content-Security-Policy"])
            assert csp["default-src"] == "'none'"
            assert csp["script-src"] == "'self' 'wasm-unsafe-eval'"
            assert csp["style-src"] == "'self'" and csp["connect-src"] == "'self'"
            assert csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'" and csp["form-action"] == "'none'"
            assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
            assert "'unsafe-eval'" not in response.headers["Content-Security-Policy"]
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Referrer-Policy"] == "no-referrer"
            assert "camera=(self)" in response.headers["Permissions-Policy"]
            if content_type == "text/html":
                assert response.headers["Cache-Control"] == "no-store"
                finder = _InlineFinder()
                finder.feed(body.decode())
                assert finder.found == [], path
    assert body[:4] == b"\0asm"  # the last one: the reader's WebAssembly
    async with stack.http.get(stack.gateway_url + "/", allow_redirects=False) as response:
        assert response.status == 302 and response.headers["Location"] == "/checkpoint/"
        assert "Content-Security-Policy" in response.headers
    # only the listed files: no other file, no directory listing, no way out of the directory
    for path in (
        "/checkpoint/page.py",
        "/checkpoint/vendor/",
        "/checkpoint/vendor/zxing/",
        "/checkpoint/vendor/zxing/index.js",
        "/checkpoint/%2e%2e/page.py",
        "/checkpoint/..%2fpage.py",
        "/checkpoint/static/checkpoint/app.js",
        "/checkpoint/vendor/zxing/..%2f..%2freader/zxing_reader.wasm",
    ):
        async with stack.http.get(URL(stack.gateway_url + path, encoded=True)) as response:
            assert response.status == 404, path

    event = await released_certificate(stack.platform, 906)
    video = write_y4m(tmp_path / "valid.y4m", event.certificate.qr)

    def scenario(browser: Browser) -> None:
        browser.open("/checkpoint/")
        browser.sign_in(stack.device_token)
        assert browser.verdict() == "VERDICT_VALID"
        resources = browser.js("return performance.getEntriesByType('resource').map((e) => e.name)")
        assert [r for r in resources if not r.startswith(stack.gateway_url + "/")] == []
        assert stack.gateway_url + "/checkpoint/vendor/zxing/zxing_reader.wasm" in resources  # not from a CDN
        # one verification: the code in front of the camera is not verified again while its verdict shows
        assert [r for r in resources if r.endswith("/v1/verify")] == [stack.gateway_url + "/v1/verify"]
        assert browser.js("return window.__cspViolations") == []
        console = browser.driver.get_log("browser")
        assert [e for e in console if e["level"] == "SEVERE" or "Content Security Policy" in e["message"]] == []
        # the detector itself works: a blocked image (another origin, never contacted) is seen at once
        browser.js("document.body.appendChild(document.createElement('img')).src = 'http://127.0.0.2:9/x.png'")
        browser.wait(lambda d: browser.js("return window.__cspViolations.length") > 0, "the canary violation")
        assert browser.js("return window.__cspViolations") == ["img-src http://127.0.0.2:9/x.png"]

    await in_browser(stack, video, tmp_path, scenario)


# --- 7. English -----------------------------------------------------------------------------------------


async def test_the_english_switch_changes_the_labels_and_the_reason(stack, tmp_path):
    reasons = {language: (await verify_over_http(stack, GARBAGE_QR, language))["reason"] for language in ("vi", "en")}
    assert reasons["vi"] != reasons["en"]
    video = write_y4m(tmp_path / "garbage.y4m", GARBAGE_QR)

    def scenario(browser: Browser) -> None:
        browser.open("/checkpoint/")
        browser.wait(lambda d: browser.shown("signin-screen"), "the sign-in screen")
        assert browser.js("return document.documentElement.lang") == "vi"  # Vietnamese first
        assert browser.text("signin-button") == "Đăng nhập" and browser.text("lang-toggle") == "EN"
        browser.screenshot("sign-in")
        browser.sign_in(stack.device_token)
        assert browser.verdict() == "VERDICT_MALFORMED"
        assert browser.text("verdict-reason") == reasons["vi"]
        assert browser.text("scan-next") == "Quét tiếp"

        browser.click("lang-toggle")
        browser.wait(lambda d: browser.text("verdict-reason") == reasons["en"], "the reason in English")
        assert browser.js("return document.documentElement.lang") == "en"
        assert browser.text("verdict-word") == "INVALID CODE"
        assert browser.text("verdict-action") == "REFUSE"
        assert browser.text("scan-next") == "Scan next"
        assert browser.text("lang-toggle") == "VI"
        assert browser.driver.find_element(By.ID, "lang-toggle").get_attribute("aria-label") == "Tiếng Việt"
        browser.screenshot("english")

    await in_browser(stack, video, tmp_path, scenario)


# --- 8. credentials ---------------------------------------------------------------------------------------


async def test_a_rejected_credential_is_refused_at_sign_in_and_a_401_later_returns_to_sign_in(stack, tmp_path):
    video = write_y4m(tmp_path / "garbage.y4m", GARBAGE_QR)
    bogus = "ctk_" + "0" * 40

    def scenario(browser: Browser) -> None:
        browser.open("/checkpoint/")
        browser.wait(lambda d: browser.shown("signin-screen"), "the sign-in screen")
        browser.driver.find_element(By.ID, "token-input").send_keys(bogus)
        browser.click("signin-button")
        refused = browser.wait(
            lambda d: (t := browser.text("signin-error")) not in ("", "Đang kiểm tra mã thiết bị…") and t,
            "the refusal",
        )
        assert "xác thực" in refused  # the server's LocalizedMessage, in Vietnamese
        assert browser.shown("signin-screen") and not browser.shown("scan-screen")
        assert browser.js("return sessionStorage.getItem(arguments[0])", CREDENTIAL_KEY) is None

        # a credential that stops working while the page is open (here: one never valid, kept from before)
        browser.js("sessionStorage.setItem(arguments[0], arguments[1])", CREDENTIAL_KEY, bogus)
        browser.driver.refresh()
        browser.wait(lambda d: browser.shown("signin-screen") and browser.text("signin-error") != "", "sign-in again")
        assert "Hãy đăng nhập lại." in browser.text("signin-error")
        assert browser.js("return sessionStorage.getItem(arguments[0])", CREDENTIAL_KEY) is None
        assert not browser.shown("verdict") and browser.text("verdict-word") == ""

    await in_browser(stack, video, tmp_path, scenario)
