"""The demo configuration in a real browser: headless Chromium (Debian's)
loads a page that talks to /echo and /dumb-increment as the demo page
does, with the permessage-deflate Chromium offers, and reports what it
saw to the server (GET /result?...), read back from the access log."""
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse

import pytest

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.browser


def chromium_args(profile, url):
    # No background traffic: this machine reaches nothing but loopback.
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--remote-debugging-port=0",
            "--user-data-dir=" + profile, url]


def browser_report(h, timeout=30.0):
    """Runs Chromium on check.html until the page reports; returns the
    reported query string."""
    profile = tempfile.mkdtemp(prefix="ws-chromium-")
    proc = subprocess.Popen(chromium_args(profile, h.url("/check.html")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in h.access_log().splitlines():
                if "GET /result?" in line:
                    return line.split("GET /result?", 1)[1].split(" ", 1)[0]
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail("the page reported nothing (chromium exit %r)" % proc.poll())
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def demo_and_small_window_conf(h):
    """The demo, and an echo whose compression window is 512 bytes."""
    return harness.demo_conf(h) + """
<Location /echo-w9>
    SetHandler websocket-handler
    WebSocketHandler "{echo}" echo_init
    WebSocketCompressionServerWindowBits 9
</Location>
""".format(echo=h.echo_so)


def test_demo_endpoints_in_chromium(make_httpd):
    assert os.access(CHROMIUM, os.X_OK), "chromium is not installed"
    h = make_httpd(demo_and_small_window_conf)
    shutil.copy(os.path.join(HERE, "browser", "check.html"), h.docroot)
    h.start()
    fields = dict(urllib.parse.parse_qsl(browser_report(h)))
    assert "error" not in fields, fields
    # Chromium always offers permessage-deflate: the server took it.
    assert fields["ext"].startswith("permessage-deflate"), fields
    assert fields["text"] == "true"
    assert fields["medium"] == "true"
    assert fields["big"] == "true"
    assert fields["binary"] == "true"
    assert fields["close"] == "1000"
    # every form of block the server's own encoder writes (ws_deflate_fast.c)
    assert fields["encoder"] == "true"
    assert fields["encoder9"] == "true"
    assert fields["increment"] == "true"
    assert '"GET /echo HTTP/1.1" 101' in h.access_log()
