"""Drive the web page (`sidrec/serving/static/index.html`) in a real headless Chromium
over the DevTools protocol: no chromedriver, no selenium, just the browser Debian
ships (`apt-get install chromium`) and a websocket.

The page test (tests/serve_apps/test_page.py) and the README screenshot
(bench/serve_page.py) use it to type, click and read the page as a user would:
clicks are mouse events at the element's centre, typing is text input, so the
page's own handlers run.

    with Browser() as page:
        page.goto("http://127.0.0.1:8000/")
        page.type("#q", "nail polish"); page.click("#search-btn")
        page.wait_for("document.querySelectorAll('#results li').length > 0")
        page.screenshot("page.png")
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from sidrec.artifacts import atomic_path

__all__ = ["Browser", "BrowserError", "find_chromium"]


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or the page did not do what was awaited."""


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise BrowserError(
        "headless Chromium is not installed: `apt-get install -y chromium` "
        "(.ci/run installs it in CI)"
    )


class Browser:
    """One headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, width: int = 1400, height: int = 900, timeout_s: float = 30.0):
        from websockets.sync.client import connect

        self.timeout_s = timeout_s
        self._profile = tempfile.mkdtemp(prefix="sidrec-chromium-")
        self._proc = subprocess.Popen(
            [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
             "--hide-scrollbars", "--no-first-run", "--remote-debugging-port=0",
             f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
             "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            port = self._devtools_port()
            target = self._page_target(port)
            self._ws = connect(target, max_size=64 * 2**20, open_timeout=timeout_s)
        except Exception:
            self.close()
            raise
        self._ids = itertools.count(1)
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=False,
        )  # fmt: skip

    def _devtools_port(self) -> int:
        deadline = time.monotonic() + self.timeout_s
        seen = []
        while time.monotonic() < deadline:
            line = self._proc.stderr.readline()
            if not line and self._proc.poll() is not None:
                break
            seen.append(line)
            if m := re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line):
                return int(m[1])
        raise BrowserError(f"chromium did not open its DevTools port: {''.join(seen)[-2000:]}")

    def _page_target(self, port: int) -> str:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.2)
        raise BrowserError("chromium opened no page target")

    # --- the protocol ------------------------------------------------------

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events in between are skipped)."""
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._ws.recv(timeout=self.timeout_s))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float | None = None) -> Any:
        """Poll until the expression is truthy; returns its value."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while time.monotonic() < deadline:
            if value := self.eval(expression):
                return value
            time.sleep(0.1)
        status = self.eval("(document.getElementById('status') || {}).textContent")
        raise BrowserError(f"timed out waiting for {expression!r} (page status: {status!r})")

    # --- what a user does --------------------------------------------------

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    def click(self, selector: str, index: int = 0) -> None:
        """A mouse click at the centre of the index-th element matching selector."""
        box = self.wait_for(
            f"(() => {{ const el = document.querySelectorAll({json.dumps(selector)})[{index}];"
            " if (!el) return null; el.scrollIntoView({block: 'center'});"
            " const r = el.getBoundingClientRect(); return {x: r.x + r.width / 2,"
            " y: r.y + r.height / 2}; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                type=kind, x=box["x"], y=box["y"], button="left", clickCount=1,
            )  # fmt: skip

    def type(self, selector: str, text: str) -> None:
        """Focus the field, clear it, and type text into it."""
        self.click(selector)
        self.eval(f"document.querySelector({json.dumps(selector)}).select()")
        self.call("Input.insertText", text=text)

    def screenshot(self, path: str | Path, full_page: bool = True) -> Path:
        """A PNG of the page (the whole page, not only the window, when full_page)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.eval(
                "({w: document.documentElement.scrollWidth,"
                " h: document.documentElement.scrollHeight})"
            )
            params.update(
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": size["w"], "height": size["h"], "scale": 1},
            )
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return Path(path)

    def close(self) -> None:
        ws = getattr(self, "_ws", None)
        if ws is not None:
            ws.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
