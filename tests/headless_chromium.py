"""Headless Chromium for tests: open a local page, wait for an async expression, return it.

Driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: we write commands to
Chromium's fd 3 and read replies from its fd 4, JSON messages ended by NUL), so a test waits
for what it waits for (audio metadata, image decoding) instead of guessing a delay:
``--dump-dom --virtual-time-budget`` does not wait for media loads, and under load it dumped
the page before they finished. Chromium comes from Debian's ``chromium`` package; without it
:func:`find_browser` skips the test, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL = "apt-get install -y chromium"


def find_browser() -> str:
    """The Chromium or Chrome executable; skips (fails under ``CI=true``) without one."""
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    message = f"no Chromium to test the report in a browser: install it ({INSTALL})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


class Chromium:
    """One headless browser, closed on exit: ``with Chromium(profile) as c: c.evaluate(...)``."""

    def __init__(self, profile: Path, timeout: float = 90.0):
        self.timeout, self.next_id, self.buffer = timeout, 0, b""
        to_child, self.write_fd = os.pipe()
        self.read_fd, from_child = os.pipe()
        # Chromium reads fd 3 and writes fd 4. bash moves the pipe ends there (no preexec_fn:
        # unsafe in a process with threads, as JAX's); they are put above 9 first, so the
        # moves cannot clobber one another (and dash takes no fd above 9: bash it is).
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child, from_child)]
        os.close(to_child), os.close(from_child)
        profile.mkdir(parents=True, exist_ok=True)
        self.log = profile / "chromium.log"
        a, b = ends
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        args = [find_browser(), "--headless=new", "--no-sandbox", "--disable-gpu",
                "--mute-audio", "--no-first-run", f"--user-data-dir={profile}",
                "--remote-debugging-pipe", "about:blank"]
        with open(self.log, "wb") as log:  # a file, not a pipe: its chatter never blocks it
            self.proc = subprocess.Popen(
                ["bash", "-c", f'exec "$@" 3<&{a} 4>&{b} {a}<&- {b}>&-', "bash", *args],
                pass_fds=ends, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        for fd in ends:
            os.close(fd)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.write_fd), os.close(self.read_fd)

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer within {self.timeout:g} s")
            chunk = os.read(self.read_fd, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium exited: {self.log.read_text()[-2000:]}")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, session: str | None = None, **params) -> dict:
        """One DevTools command; returns its result (events in between are dropped)."""
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while (reply := self._message(deadline)).get("id") != self.next_id:
            pass
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def evaluate(self, url: str, expression: str):
        """Open ``url`` in a new tab, wait for its load event, then for ``expression`` (a
        promise is awaited); returns its value (JSON-serialisable)."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Page.navigate", session, url=url)
        loaded = f"document.readyState === 'complete' && location.href === {json.dumps(url)}"
        deadline = time.monotonic() + self.timeout
        while not self.send("Runtime.evaluate", session, expression=loaded,
                            returnByValue=True)["result"].get("value"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load within {self.timeout:g} s")
            time.sleep(0.05)
        result = self.send("Runtime.evaluate", session, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")
