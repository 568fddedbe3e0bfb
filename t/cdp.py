"""Headless Chromium (Debian's) driven through the DevTools protocol, over
t/wsraw.py's WebSocket client: browser contexts (separate profiles, like
two people), pages, script evaluation and real key input.

    with Chromium() as browser:
        page = browser.new_context().open(url)
        page.wait("document.readyState === 'complete'")
        page.type_into("#input", "hello")       # Input.insertText + Enter
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

from wsraw import WSClient

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class CDPError(AssertionError):
    pass


class Chromium:
    def __init__(self, timeout=30.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="ws-chromium-")
        # No background traffic: this machine reaches nothing but loopback.
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-default-apps",
             "--remote-debugging-port=0", "--user-data-dir=" + self.profile,
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ws = None
        self.next_id = 0
        try:
            port, path = self._devtools_address()
            self.ws = WSClient(port, path, timeout=timeout)
        except BaseException:
            self.close()
            raise

    def _devtools_address(self):
        """Chromium writes its port and browser path into the profile."""
        f = os.path.join(self.profile, "DevToolsActivePort")
        end = time.monotonic() + self.timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise CDPError("chromium exited with %s" % self.proc.returncode)
            try:
                with open(f) as fh:
                    lines = fh.read().split()
                if len(lines) >= 2:
                    return int(lines[0]), lines[1]
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        raise CDPError("chromium wrote no DevToolsActivePort in %ss"
                       % self.timeout)

    def call(self, method, session=None, **params):
        """One command; its result (events meanwhile are skipped)."""
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send_text(json.dumps(msg))
        while True:
            _, data = self.ws.recv_message(self.timeout)
            reply = json.loads(data)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise CDPError("%s: %s" % (method, reply["error"]))
                return reply.get("result", {})

    def new_context(self):
        """A browser context: its own cookies and storage, like another
        person's browser."""
        ctx = self.call("Target.createBrowserContext")["browserContextId"]
        return Context(self, ctx)

    def close(self):
        if self.ws is not None:
            self.ws.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Context:
    def __init__(self, browser, context_id):
        self.browser = browser
        self.id = context_id

    def open(self, url):
        target = self.browser.call("Target.createTarget", url=url,
                                   browserContextId=self.id)["targetId"]
        session = self.browser.call("Target.attachToTarget", targetId=target,
                                    flatten=True)["sessionId"]
        return Page(self.browser, session)


class Page:
    def __init__(self, browser, session):
        self.browser = browser
        self.session = session

    def call(self, method, **params):
        return self.browser.call(method, self.session, **params)

    def eval(self, expression):
        r = self.call("Runtime.evaluate", expression=expression,
                      returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise CDPError("%s: %s" % (expression, r["exceptionDetails"]))
        return r["result"].get("value")

    def wait(self, expression, what=None, timeout=20.0):
        """Polls a JavaScript expression until it is truthy; returns it.
        An exception (the page is still loading) counts as false."""
        end = time.monotonic() + timeout
        while True:
            try:
                v, err = self.eval(expression), None
            except CDPError as e:
                v, err = None, e
            if v:
                return v
            if time.monotonic() > end:
                raise CDPError("not within %ss: %s%s" % (
                    timeout, what or expression,
                    " (last: %s)" % err if err else ""))
            time.sleep(0.05)

    def offline(self, flag):
        """Network emulation: offline pages open no new connection (their
        WebSockets' reconnections fail) until online again."""
        self.call("Network.enable")
        self.call("Network.emulateNetworkConditions", offline=bool(flag),
                  latency=0, downloadThroughput=-1, uploadThroughput=-1)

    def type_into(self, selector, text):
        """Focuses the element, types text as keyboard input, then Enter."""
        self.eval("document.querySelector(%s).focus()" % json.dumps(selector))
        self.call("Input.insertText", text=text)
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key="Enter",
                      code="Enter", windowsVirtualKeyCode=13,
                      nativeVirtualKeyCode=13,
                      **({"text": "\r"} if kind == "keyDown" else {}))
