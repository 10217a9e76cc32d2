"""Render an HTML page in headless Chromium and report what a reader would see.

Drives the system's Chromium (Debian's ``chromium`` package) directly through the
DevTools protocol over a websocket (the ``websocket-client`` package, in the ``test``
extra): no browser is downloaded and nothing but the page's own file is opened. Used
by the report's browser test and by ``benchmarks/screenshot.py``, which takes the
README's screenshot the same way.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from ouroboros.errors import UserError
from ouroboros.io import atomic_path

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--remote-allow-origins=*")

# What the page holds once loaded: every <img> with its natural width, the visible text
# and the size of the whole document.
_INSPECT = """JSON.stringify({
  images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth})),
  text: document.body ? document.body.innerText : "",
  width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight})"""


@dataclasses.dataclass
class Rendered:
    images: list[dict]  # per <img>: alt, complete, naturalWidth
    console_errors: list[str]  # console.error calls, uncaught exceptions, failed loads
    text: str  # document.body.innerText
    width: int  # of the whole document, CSS pixels
    height: int

    @property
    def broken_images(self) -> list[str]:
        """The alt text of every image that did not load (natural width 0)."""
        return [i["alt"] for i in self.images if not i["complete"] or i["naturalWidth"] <= 0]


def find_chromium() -> str | None:
    """The system Chromium's path, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _DevTools:
    """A minimal DevTools-protocol client: numbered commands, events kept in order."""

    def __init__(self, url: str, timeout: float):
        import websocket

        self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for(self, method: str, deadline: float) -> None:
        if any(e["method"] == method for e in self.events):
            return
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if "method" in message:
                self.events.append(message)
                if message["method"] == method:
                    return
        raise TimeoutError(f"no {method} before the deadline")

    def close(self) -> None:
        self.ws.close()


def _console_errors(events: list[dict]) -> list[str]:
    errors = []
    for e in events:
        p = e.get("params", {})
        if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif e["method"] == "Runtime.exceptionThrown":
            details = p.get("exceptionDetails", {})
            errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            errors.append(f"{entry.get('text', '')} {entry.get('url', '')}".strip())
    return errors


def _start(chromium: str, profile: str, width: int, timeout: float) -> tuple[subprocess.Popen, int]:
    """Start Chromium on about:blank with a DevTools port of its choosing; returns (process, port)."""
    proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             f"--window-size={width},900", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = Path(profile) / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{chromium} exited with code {proc.returncode} before opening its DevTools port")
        lines = port_file.read_text().splitlines() if port_file.is_file() else []
        if lines and lines[0].strip().isdigit():
            return proc, int(lines[0])
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"{chromium} did not open its DevTools port within {timeout:.0f}s")


def render(page: Path, screenshot: Path | None = None, width: int = 1280, max_height: int | None = None,
           timeout: float = 60.0, chromium: str | None = None) -> Rendered:
    """Open `page` (a local HTML file) in headless Chromium, wait for its load event, and
    return what loaded; with `screenshot`, also write a PNG of the page, `width` CSS
    pixels wide and as tall as the document (at most `max_height`)."""
    page = Path(page).resolve()
    if not page.is_file():
        raise UserError(f"no page to render at {page}")
    chromium = chromium or find_chromium()
    if chromium is None:
        raise UserError("no Chromium found (install Debian's chromium package: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="ouroboros-chromium-") as profile:
        proc, port = _start(chromium, profile, width, timeout)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as response:
                targets = json.loads(response.read())
            url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
            tools = _DevTools(url, timeout)
            try:
                for domain in ("Runtime", "Log", "Page"):
                    tools.send(f"{domain}.enable")
                tools.send("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1,
                           mobile=False)
                tools.send("Page.navigate", url=page.as_uri())
                tools.wait_for("Page.loadEventFired", time.monotonic() + timeout)
                state = json.loads(tools.send("Runtime.evaluate", expression=_INSPECT,
                                              returnByValue=True)["result"]["value"])
                if screenshot is not None:
                    height = state["height"] if max_height is None else min(state["height"], max_height)
                    tools.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                               deviceScaleFactor=1, mobile=False)
                    shot = tools.send("Page.captureScreenshot", format="png")
                    with atomic_path(Path(screenshot)) as tmp:
                        tmp.write_bytes(base64.b64decode(shot["data"]))
                tools.send("Runtime.evaluate", expression="0")  # collect events still in flight
                errors = _console_errors(tools.events)
            finally:
                tools.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return Rendered(state["images"], errors, state["text"], state["width"], state["height"])
