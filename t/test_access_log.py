"""The access log line of a WebSocket: its close code, messages and bytes
each way, as request notes for LogFormat's %{...}n, on both engines (the
async engine writes the line when the WebSocket ends, the sync engine
when the handler returns); mod_status is not needed for them."""

import os
import re

import pytest

import harness
from wsraw import WSClient, OP_TEXT, wait_for

FORMAT = ('LogFormat "%r %>s code=%{websocket-close-code}n '
          'in=%{websocket-messages-in}n out=%{websocket-messages-out}n '
          'bytes_in=%{websocket-bytes-in}n bytes_out=%{websocket-bytes-out}n"'
          ' wsnotes\n')


def notes_conf(h):
    return (FORMAT + 'CustomLog "%s/logs/ws_log" wsnotes\n' % h.root
            + "<Location /echo>\n    SetHandler websocket-handler\n"
            '    WebSocketHandler "%s" echo_init\n</Location>\n' % h.echo_so
            + "<Location /probe>\n    SetHandler websocket-handler\n"
            '    WebSocketHandler "%s" probe_init\n</Location>\n'
            % harness.test_plugin_so("probe"))


def ws_log_line(h, request):
    """The log line of request (waits for it: the async engine writes it
    when the connection ends)."""
    path = os.path.join(h.root, "logs", "ws_log")
    line = wait_for(lambda: [l for l in h.read(path).splitlines()
                             if l.startswith(request + " ")],
                    "the access log line of %r" % request)
    assert len(line) == 1, line
    return dict(re.findall(r"(\w+)=(\S+)", line[0]))


@pytest.fixture(scope="module", params=["event", "prefork"])
def log_srv(request):
    from conftest import serve
    yield from serve(notes_conf, mpm=request.param)


def test_messages_and_bytes(log_srv):
    with WSClient(log_srv.port, "/echo?counted") as c:
        for text in ("hello", "x" * 200):
            c.send_text(text)
            assert c.recv_text() == text
        c.send_binary(b"b" * 70000)
        c.recv_message()
        c.close_handshake(1000)
    f = ws_log_line(log_srv, "GET /echo?counted HTTP/1.1 101")
    assert f["code"] == "1000"
    assert (f["in"], f["out"]) == ("3", "3"), f
    # Frames as they travel: header (+4 bytes of mask from the client),
    # payload; the Close (code 1000) both ways.
    frames_in = (2 + 4 + 5) + (4 + 4 + 200) + (10 + 4 + 70000) + (2 + 4 + 2)
    frames_out = (2 + 5) + (4 + 200) + (10 + 70000) + (2 + 2)
    assert int(f["bytes_in"]) == frames_in, f
    assert int(f["bytes_out"]) == frames_out, f


def test_close_codes(log_srv):
    h = log_srv
    with WSClient(h.port, "/probe?policy") as c:
        c.send_text("sendclose:03f0")         # the plugin closes with 1008
        c.expect_close(1008, reply=True)
    with WSClient(h.port, "/echo?bad") as c:
        c.send_frame(OP_TEXT, b"\xc3")         # invalid UTF-8: 1007
        c.expect_close(1007)
    c = WSClient(h.port, "/echo?vanished")
    c.send_text("x")
    c.recv_text()
    c.abort()
    with WSClient(h.port, "/echo?nocode") as c:
        c.send_close()                         # a Close without a code
        c.expect_close(empty=True)
    assert ws_log_line(h, "GET /probe?policy HTTP/1.1 101")["code"] == "1008"
    assert ws_log_line(h, "GET /echo?bad HTTP/1.1 101")["code"] == "1007"
    f = ws_log_line(h, "GET /echo?vanished HTTP/1.1 101")
    assert (f["code"], f["in"], f["out"]) == ("1006", "1", "1"), f
    assert ws_log_line(h, "GET /echo?nocode HTTP/1.1 101")["code"] == "1005"


def test_not_a_websocket_has_no_notes(log_srv):
    from wsraw import http_request, request_bytes
    r = http_request(log_srv.port, request_bytes(
        "/echo?plain", [("Host", "127.0.0.1")]))
    assert r.status == 426
    f = ws_log_line(log_srv, "GET /echo?plain HTTP/1.1 426")
    assert f["code"] == "-" and f["bytes_in"] == "-", f


@pytest.mark.parametrize("mpm", ["event", "worker", "prefork"])
def test_restart_is_1012_in_the_log(make_httpd, mpm):
    h = make_httpd(notes_conf, mpm=mpm)
    h.start()
    c = WSClient(h.port, "/echo?restart")
    try:
        c.send_text("x")
        assert c.recv_text() == "x"
        h.graceful()
        c.expect_close(1012, reply=True, timeout=5)
        f = ws_log_line(h, "GET /echo?restart HTTP/1.1 101")
        assert f["code"] == "1012", f
    finally:
        c.close()


def test_internal_redirect(make_httpd):
    """A WebSocket reached through an internal redirect (mod_rewrite in a
    directory context: the sync engine on event): %r is the request the
    client sent, the notes are those of the WebSocket it became."""
    def conf(h):
        return (notes_conf(h)
                + "LoadModule rewrite_module %s/mod_rewrite.so\n"
                % harness.MODDIR
                + '<Directory "%s">\n    RewriteEngine On\n'
                  "    RewriteRule ^wsecho$ /echo [L]\n</Directory>\n"
                % h.docroot)
    h = make_httpd(conf)
    h.start()
    with WSClient(h.port, "/wsecho") as c:
        c.send_text("redirected")
        assert c.recv_text() == "redirected"
        c.close_handshake(4000)
    f = ws_log_line(h, "GET /wsecho HTTP/1.1 101")
    assert (f["code"], f["in"], f["out"]) == ("4000", "1", "1"), f
