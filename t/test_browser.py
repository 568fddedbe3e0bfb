"""The demo configuration in a real browser: headless Chromium (Debian's)
loads a page that talks to /echo and /dumb-increment as the demo page
does, with the permessage-deflate Chromium offers, and reports what it
saw to the server (GET /result?...), read back from the access log; and
the demo page itself, driven through the DevTools protocol (t/cdp.py) in
two browser contexts: chat between them, the live feed fed by POSTs.
Over https with HTTP/2 (ALPN h2, H2WebSockets on), Chromium opens the
page's wss:// WebSockets as extended CONNECTs on the page's HTTP/2
connection (RFC 8441)."""
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse

import pytest

import cdp
import harness
import topics

HERE = os.path.dirname(os.path.abspath(__file__))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.browser


def chromium_args(profile, url, extra=()):
    # No background traffic: this machine reaches nothing but loopback.
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--remote-debugging-port=0",
            "--user-data-dir=" + profile] + list(extra) + [url]


def browser_report(h, timeout=30.0, url=None, extra=()):
    """Runs Chromium on check.html until the page reports; returns the
    reported query string."""
    profile = tempfile.mkdtemp(prefix="ws-chromium-")
    proc = subprocess.Popen(chromium_args(profile,
                                          url or h.url("/check.html"), extra),
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
    assert "error" not in fields, fields.get("error")
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


def test_demo_endpoints_in_chromium_over_http2(make_httpd):
    """wss:// from a page served over HTTP/2: Chromium sends each
    WebSocket as an extended CONNECT on the page's connection, which
    advertised SETTINGS_ENABLE_CONNECT_PROTOCOL (H2WebSockets on).  The
    self-signed certificate is accepted with --ignore-certificate-errors,
    which does not keep Chromium from pooling the connection."""
    assert os.access(CHROMIUM, os.X_OK), "chromium is not installed"
    h = make_httpd(lambda h: demo_and_small_window_conf(h) + (
        "LoadModule http2_module %s/mod_http2.so\n"
        "Protocols h2 http/1.1\nH2WebSockets on\n" % harness.MODDIR),
        tls=True)
    shutil.copy(os.path.join(HERE, "browser", "check.html"), h.docroot)
    h.start()
    url = "https://127.0.0.1:%d/check.html" % h.tls_port
    fields = dict(urllib.parse.parse_qsl(browser_report(
        h, url=url, extra=["--ignore-certificate-errors"])))
    assert "error" not in fields, fields.get("error")
    assert fields["ext"].startswith("permessage-deflate"), fields
    for k in ("text", "medium", "big", "binary", "increment"):
        assert fields[k] == "true", (k, fields)
    assert fields["close"] == "1000"
    log = h.access_log()
    assert '"GET /check.html HTTP/2.0" 200' in log, log
    assert '"GET /echo HTTP/2.0" 101' in log, log
    assert '"GET /dumb-increment HTTP/2.0" 101' in log, log


def demo_server(make_httpd):
    """The demo configuration (make run's) serving demo/index.html."""
    h = make_httpd(harness.demo_conf)
    shutil.copy(os.path.join(harness.REPO, "demo", "index.html"), h.docroot)
    h.start()
    return h


def lines(page, log):
    return page.eval("Array.from(document.querySelectorAll('#%s .msg'))"
                     ".map(e => e.textContent)" % log)


def test_demo_chat_and_feed_in_two_browser_contexts(make_httpd):
    """Two people (browser contexts) on the demo page: a line typed by one
    appears at the other's; a POST to /pub/feed appears at both."""
    assert os.access(cdp.CHROMIUM, os.X_OK), "chromium is not installed"
    h = demo_server(make_httpd)
    with cdp.Chromium() as browser:
        alice = browser.new_context().open(h.url("/"))
        bob = browser.new_context().open(h.url("/"))
        for page in (alice, bob):
            page.wait("document.getElementById('chat-state').textContent"
                      " === 'open: lobby' && document.getElementById("
                      "'feed-state').textContent === 'open'",
                      "chat and feed open")
        alice.type_into("#chat-input", "hello from alice \u00e9")
        bob.wait("!!document.querySelector('#chat-log .theirs')",
                 "alice's line at bob's")
        assert lines(bob, "chat-log") == ["\u2190 hello from alice \u00e9"]
        assert lines(alice, "chat-log") == ["\u2192 hello from alice \u00e9"]
        bob.type_into("#chat-input", "hi alice")
        alice.wait("!!document.querySelector('#chat-log .theirs')",
                   "bob's line at alice's")
        # Each line once at each end: the chat plugin never echoes.
        assert lines(alice, "chat-log") == ["\u2192 hello from alice \u00e9",
                                            "\u2190 hi alice"]
        assert lines(bob, "chat-log") == ["\u2190 hello from alice \u00e9",
                                          "\u2192 hi alice"]
        # curl -d: a form body, which the publisher sends as binary.
        a = topics.request(h, "POST", "/pub/feed", "breaking news",
                           "application/x-www-form-urlencoded")
        assert a.status == 202 and a.json["subscribers"] == 2, a
        topics.publish(h, "feed", "more news")
        for page in (alice, bob):
            page.wait("document.querySelectorAll('#feed-log .msg').length"
                      " === 2", "two feed lines")
            assert lines(page, "feed-log") == ["breaking news", "more news"]
    # Written when the WebSockets end (the browser is gone).
    h.expect_log('"GET /chat/lobby HTTP/1.1" 101', which="access", count=2)


def test_feed_catches_up_after_the_server_restarts(make_httpd):
    """The page's client keeps the last id and resumes: a line published
    while it cannot come back (offline, after the 1012 of a graceful
    restart) shows once it can, from the topic's history."""
    h = demo_server(make_httpd)
    with cdp.Chromium() as browser:
        page = browser.new_context().open(h.url("/"))
        page.wait("document.getElementById('feed-state').textContent"
                  " === 'open'", "feed open")
        first = topics.publish(h, "feed", "one")["id"]
        page.wait("document.querySelectorAll('#feed-log .msg').length === 1")
        page.offline(True)
        h.graceful()
        page.wait("document.getElementById('feed-state').textContent"
                  ".startsWith('closed')", "the feed saw the restart")
        topics.publish(h, "feed", "two")
        page.offline(False)
        page.wait("document.querySelectorAll('#feed-log .msg').length === 2",
                  "the line published while it was away", timeout=30)
        assert lines(page, "feed-log") == ["one", "two"]
    # Written when that WebSocket ends (the browser is gone).
    h.expect_log('"GET /sub/feed?last_id=%s HTTP/1.1" 101' % first,
                 which="access")
