"""Idle WebSockets detached from Apache's pools (ws_detach.c): the access
log line and what request() gives a plugin are those of a connection that
stayed attached; graceful restarts and stops still close them (1012 and 1001).

The lateprobe plugin (t/plugins/lateprobe.c) asks for the request_rec in
on_connect only when the handshake says "X-Mode: attach": such a
connection stays attached, and is the reference; "X-Mode: detach" (same
length, so the byte counts match) lets it detach once idle.
"""

import base64
import json
import os
import re
import signal
import subprocess

import harness
from wsraw import WSClient, WSError, OP_CLOSE, handshake, wait_for

USER, PASSWORD = "alice", "s3cret"
DETACHED = "detached from its pools"
LOG_RE = re.compile(r'^(\S+) (\S+) (\S+) \[([^\]]+)\] "([^"]*)" (\d+) (\S+) '
                    r'(\d+) (\d+) (\d+) "([^"]*)" (\S+) (\S+)$')
FIELDS = ("h", "l", "u", "t", "r", "s", "b", "I", "O", "D", "ua", "a", "ca")


def conf(h):
    pw = os.path.join(h.root, "htpasswd")
    subprocess.run(["htpasswd", "-bc", pw, USER, PASSWORD], check=True,
                   capture_output=True)
    os.chmod(pw, 0o644)
    h.detach_log = os.path.join(h.root, "logs", "detach_log")
    return """
LoadModule remoteip_module {moddir}/mod_remoteip.so
RemoteIPHeader X-Forwarded-For
RemoteIPInternalProxy 127.0.0.1
LogLevel websocket:trace1
LogFormat "%h %l %u %t \\"%r\\" %>s %b %I %O %D \\"%{{User-Agent}}i\\" %a %{{c}}a" detachfmt
CustomLog "{log}" detachfmt
<Location /late>
    SetHandler websocket-handler
    WebSocketHandler "{so}" lateprobe_init
    AuthType Basic
    AuthName detach
    AuthBasicProvider file
    AuthUserFile "{pw}"
    Require valid-user
</Location>
<Location /capped>
    SetHandler websocket-handler
    WebSocketHandler "{so}" lateprobe_init
    WebSocketMaxConnections 2
</Location>
""".format(moddir=harness.MODDIR, log=h.detach_log, pw=pw,
           so=harness.test_plugin_so("lateprobe"))


def headers(mode):
    auth = base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()
    return [("X-Mode", mode), ("X-Info", "hello-world"),
            ("User-Agent", "detach-test/1.0"),
            ("X-Forwarded-For", "203.0.113.7"),
            ("Authorization", "Basic " + auth)]


def detach_lines(h, mark):
    return h.since(mark).count(DETACHED)


def wait_detached(h, mark, count=1, timeout=10):
    h.expect_log(DETACHED, mark, count=count, timeout=timeout)


def log_lines(h):
    """The access log's WebSocket lines (the harness's start-up probe
    aside)."""
    return [l for l in harness.Httpd.read(h.detach_log).splitlines()
            if " /late" in l]


def wait_log_lines(h, count, timeout=10):
    wait_for(lambda: len(log_lines(h)) >= count,
             "%d access log lines" % count, timeout=timeout)
    return log_lines(h)


def parse(line):
    m = LOG_RE.match(line)
    assert m, line
    return dict(zip(FIELDS, m.groups()))


def one_connection(h, mode):
    """Echoes, (waits until it detached,) echoes again, info, closes;
    returns the info answer and the access log line."""
    before = len(log_lines(h))
    mark = h.mark()
    with WSClient(h.port, "/late?q=1", headers=headers(mode)) as c:
        c.send_text("abc")
        assert c.recv_text() == "abc"
        if mode == "detach":
            wait_detached(h, mark)
        c.send_text("info")
        info = json.loads(c.recv_text())
        c.send_text("abcdefgh")
        assert c.recv_text() == "abcdefgh"
        c.close_handshake(1000)
    line = wait_log_lines(h, before + 1)[before]
    if mode == "attach":
        assert detach_lines(h, mark) == 0, h.since(mark)
    h.expect_log("late-disconnect uri=/late method=GET user=%s "
                 "x_info=hello-world" % USER, mark, "test")
    return info, parse(line)


def test_detached_log_line_and_request_equal_attached(make_httpd):
    h = make_httpd(conf).start()
    att_info, att = one_connection(h, "attach")
    det_info, det = one_connection(h, "detach")
    # Everything but the time and the duration is the same.
    for f in FIELDS:
        if f not in ("t", "D"):
            assert det[f] == att[f], (f, det, att)
    assert int(det["D"]) > 0 and int(att["D"]) > 0
    assert det["h"] == det["a"] == "203.0.113.7", det   # mod_remoteip's
    assert det["ca"] == "127.0.0.1" and det["u"] == USER, det
    assert det["r"] == "GET /late?q=1 HTTP/1.1" and det["s"] == "101", det
    assert int(det["I"]) > 200 and int(det["O"]) > 150, det
    assert det["ua"] == "detach-test/1.0", det
    # request() late (rebuilt after detaching) gives what the attached
    # request gives.
    assert det_info == att_info
    assert det_info["uri"] == "/late" and det_info["args"] == "q=1"
    assert det_info["method"] == "GET" and det_info["user"] == USER
    assert det_info["useragent_ip"] == "203.0.113.7"
    assert det_info["client_ip"] == "127.0.0.1"
    assert det_info["r_x_info"] == det_info["x_info"] == "hello-world"
    assert det_info["x_info_lower"] == "hello-world"
    assert det_info["r_user_agent"] == "detach-test/1.0"


def test_peer_gone_while_detached_is_logged(make_httpd):
    """A client that vanishes without a Close: the detached connection
    notices (1006), runs on_disconnect and still writes its log line."""
    h = make_httpd(conf).start()
    mark = h.mark()
    c = WSClient(h.port, "/late?gone", headers=headers("detach"))
    c.send_text("x")
    assert c.recv_text() == "x"
    wait_detached(h, mark)
    c.sock.close()
    lines = wait_log_lines(h, 1)
    d = parse(lines[0])
    assert d["r"] == "GET /late?gone HTTP/1.1" and d["s"] == "101", d
    h.expect_log("late-disconnect uri=/late", mark, "test")


def open_idle(h, n, mark):
    clients = []
    for i in range(n):
        c = WSClient(h.port, "/late?c%d" % i, headers=headers("detach"))
        c.send_text("hi")
        assert c.recv_text() == "hi"
        clients.append(c)
    wait_detached(h, mark, count=n, timeout=15)
    return clients


def expect_close(clients, code):
    for c in clients:
        f = c.expect_close(code, timeout=10, allow_data=True, reply=True)
        assert f.opcode == OP_CLOSE and f.close_code == code, f


def test_graceful_restart_and_stop_with_detached_sockets(make_httpd):
    """The MPM neither counts nor waits for detached connections: the
    child still closes each (1012 on a restart, 1001 on a stop) and logs
    it before it exits."""
    n = 40
    h = make_httpd(conf).start()
    try:
        mark = h.mark()
        old = open_idle(h, n, mark)
        h.graceful()
        expect_close(old, 1012)
        wait_log_lines(h, n, timeout=15)
        assert h.since(mark, "test").count("late-disconnect") == n
        # The new generation detaches too; a graceful stop closes them.
        mark = h.mark()
        new = open_idle(h, n, mark)
        os.kill(h.pid, signal.SIGWINCH)
        expect_close(new, 1001)
        h.proc.wait(20)
        assert len(log_lines(h)) == 2 * n
        assert h.since(mark, "test").count("late-disconnect") == n
    finally:
        for c in locals().get("old", []) + locals().get("new", []):
            c.close()


def test_stop_with_detached_sockets(make_httpd):
    h = make_httpd(conf).start()
    mark = h.mark()
    clients = open_idle(h, 10, mark)
    try:
        os.kill(h.pid, signal.SIGTERM)
        expect_close(clients, 1001)
        h.proc.wait(20)
        assert len(log_lines(h)) == 10
        assert h.since(mark, "test").count("late-disconnect") == 10
    finally:
        for c in clients:
            c.close()


def try_open(h, path):
    try:
        return WSClient(h.port, path, headers=[("X-Mode", "detach")])
    except WSError:
        return None


def test_detached_sockets_keep_their_max_connections_place(make_httpd):
    """WebSocketMaxConnections' count of a connection lived in its pools:
    detaching must neither give its place back early nor leave the place
    pointing at freed memory (ASan) when it closes."""
    h = make_httpd(conf).start()
    mark = h.mark()
    a, b = try_open(h, "/capped?a"), try_open(h, "/capped?b")
    c = None
    try:
        for x in (a, b):
            x.send_text("hi")
            assert x.recv_text() == "hi"
        wait_detached(h, mark, count=2)
        assert handshake(h.port, "/capped").status == 503
        a.close_handshake(1000)
        c = wait_for(lambda: try_open(h, "/capped?c"), "a free place")
        assert handshake(h.port, "/capped").status == 503
        for x in (b, c):
            x.close_handshake(1000)
        h.expect_log("late-disconnect uri=/capped", mark, "test", count=3)
    finally:
        for x in (a, b, c):
            if x:
                x.close()
