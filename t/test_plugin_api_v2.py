"""Plugin API version 2 through t/plugins/v2probe.c: every call and every
callback, on the event loop and (for the calls other threads make) from
plugin threads; v0 plugins beside it keep working (the rest of the suite
runs them)."""

import base64
import os
import re
import time

import pytest

import harness
from conftest import ws_location, AUTH_USER, AUTH_PASS
from wsraw import (WSClient, build_frame, OP_TEXT, OP_BINARY, OP_PING,
                   OP_PONG, OP_CLOSE, OP_CONT, wait_until)

V2 = harness.test_plugin_so("v2probe")


def v2_conf(h):
    import subprocess
    os.makedirs(os.path.join(h.docroot, "v2dir", "a"), exist_ok=True)
    os.makedirs(os.path.join(h.docroot, "v2deep"), exist_ok=True)
    pw = h.root + "/htpasswd"
    subprocess.run(["htpasswd", "-bc", pw, AUTH_USER, AUTH_PASS], check=True,
                   capture_output=True)
    return "".join([
        "LoadModule remoteip_module %s/mod_remoteip.so\n" % harness.MODDIR,
        "RemoteIPHeader X-Forwarded-For\n",
        "RemoteIPInternalProxy 127.0.0.1\n",
        ws_location("/v2", V2, "v2probe_init",
                    "    WebSocketParam color blue\n"
                    "    WebSocketParam shape round\n"
                    "    WebSocketSendQueueLimit 256K\n"),
        # Small answers stay uncompressed, so that the test reads them.
        "<Location /v2/inner>\n    WebSocketParam color red\n"
        "    WebSocketCompressionMinSize 1M\n</Location>\n",
        ws_location("/v2auth", V2, "v2probe_init",
                    "    AuthType Basic\n    AuthName v2\n"
                    "    AuthBasicProvider file\n"
                    '    AuthUserFile "%s"\n    Require valid-user\n' % pw),
        ws_location("/v2frag", V2, "v2probe_init",
                    "    WebSocketFragmentSize 1000\n"),
        ws_location("/v2ping", V2, "v2probe_init",
                    "    WebSocketPingInterval 300ms\n"
                    "    WebSocketPingTimeout 400ms\n"),
        ws_location("/v2life", V2, "v2probe_init",
                    "    WebSocketMaxLifetime 700ms\n"),
        ws_location("/v2idle", V2, "v2probe_init",
                    "    WebSocketIdleTimeout 1\n"),
        ws_location("/v2stream", V2, "v2stream_init",
                    "    WebSocketMaxMessageSize 4M\n"),
        ws_location("/v2nodeflate", V2, "v2stream_init",
                    "    WebSocketCompression Off\n"),
        # path_info(): the DocumentRoot holds a directory named like the
        # location (Apache's own path_info of /v2dir/a/b would be /b).
        ws_location("/v2dir", V2, "v2probe_init",
                    "    WebSocketCompression Off\n"),
        ws_location("/v2deep/er/sub", V2, "v2probe_init",
                    "    WebSocketCompression Off\n"),
        '<LocationMatch "^/v2re/[0-9]+">\n    SetHandler websocket-handler\n'
        '    WebSocketHandler "%s" v2probe_init\n'
        '    WebSocketCompression Off\n</LocationMatch>\n' % V2,
    ])


@pytest.fixture(scope="module")
def v2srv():
    from conftest import serve
    yield from serve(v2_conf, loglevel="warn websocket:debug")


def conn(h, cid, path="/v2", **kw):
    headers = kw.pop("headers", []) + [("X-Conn-Id", cid)]
    return WSClient(h.port, path, headers=headers, **kw)


def log_line(h, pattern, mark, timeout=5):
    rx = re.compile(pattern, re.M)
    text = h.expect_log(lambda t: rx.search(t), mark, "test", timeout=timeout)
    return rx.search(text)


def test_open_close_and_version(v2srv):
    mark = v2srv.mark()
    with conn(v2srv, "oc") as c:
        log_line(v2srv, r"^v2 open oc version=2$", mark)
        c.close_handshake(4001, b"see you")
    m = log_line(v2srv, r"^v2 close oc code=(\d+) reason=(.*)$", mark)
    assert m.groups() == ("4001", "see you")
    text = log_line(v2srv, r"^v2 disconnect oc$", mark)
    t = v2srv.since(mark, "test")
    assert t.index("v2 close oc") < t.index("v2 disconnect oc")


def test_close_code_when_the_peer_vanishes(v2srv):
    mark = v2srv.mark()
    c = conn(v2srv, "gone")
    log_line(v2srv, r"^v2 open gone", mark)
    c.abort()
    assert log_line(v2srv, r"^v2 close gone code=(\d+)", mark).group(1) == "1006"


def test_close_code_of_a_protocol_error(v2srv):
    mark = v2srv.mark()
    with conn(v2srv, "perr") as c:
        c.send_raw(build_frame(OP_TEXT, b"\xff"))
        c.expect_close(1007)
    assert log_line(v2srv, r"^v2 close perr code=(\d+)", mark).group(1) == "1007"


def test_info_strings(v2srv):
    with conn(v2srv, "info", path="/v2/inner/x/y?a=1&b=2",
              protocols="chat.v1",
              headers=[("X-Forwarded-For", "203.0.113.7"),
                       ("Sec-WebSocket-Extensions", "permessage-deflate")]) as c:
        c.send_text("info")
        info = c.recv_text()
        assert "ip=203.0.113.7" in info, info            # mod_remoteip
        assert "proto=chat.v1" in info
        assert "ext=permessage-deflate" in info
        assert "query=a=1&b=2" in info
        assert "path=/inner/x/y" in info
        assert "user=(null)" in info
        c.send_text("param:color")
        assert c.recv_text() == "param color=red"        # inner wins
        c.send_text("param:shape")
        assert c.recv_text() == "param shape=round"      # inherited
        c.send_text("param:size")
        assert c.recv_text() == "param size=(null)"
        c.send_text("userdata")
        assert c.recv_text() == "userdata ok"
        c.close_handshake(1000)


@pytest.mark.parametrize("path,rest", [
    ("/v2dir/a/b", "/a/b"),              # a directory of the same name
    ("/v2dir", ""),
    ("/v2deep/er/sub/news", "/news"),    # deeper than the DocumentRoot
    ("/v2re/42/tail/x?q=1", "/tail/x"),  # after a <LocationMatch>'s match
])
def test_path_info_is_the_rest_after_the_location(v2srv, path, rest):
    with conn(v2srv, "pi", path=path) as c:
        c.send_text("info")
        info = c.recv_text()
        assert info.endswith(" path=" + rest), info
        c.close_handshake(1000)


def test_user_of_an_authenticated_request(v2srv):
    auth = base64.b64encode(("%s:%s" % (AUTH_USER, AUTH_PASS)).encode())
    with conn(v2srv, "auth", path="/v2auth",
              headers=[("Authorization", "Basic " + auth.decode())]) as c:
        c.send_text("info")
        assert "user=%s" % AUTH_USER in c.recv_text()
        c.close_handshake(1000)


def test_ping_pong_callbacks_and_ping_call(v2srv):
    mark = v2srv.mark()
    with conn(v2srv, "pp") as c:
        c.send_frame(OP_PING, b"hi there")
        f = c.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"hi there")
        log_line(v2srv, r"^v2 ping pp hi there$", mark)
        c.send_text("pingv2:xyz")
        f = c.recv_frame()
        assert (f.opcode, f.payload) == (OP_PING, b"xyz")
        assert log_line(v2srv, r"^v2 ping-sent pp rc=(-?\d+)$", mark).group(1) == "0"
        c.send_frame(OP_PONG, b"xyz")
        log_line(v2srv, r"^v2 pong pp xyz$", mark)
        c.close_handshake(1000)


@pytest.mark.parametrize("code,rc,wire", [
    ("4321:bye now", "0", (4321, b"bye now")),
    ("1000:", "0", (1000, b"")),
    ("1005:no", "-3", None),             # never on the wire
    ("999:x", "-3", None),
    ("5000:x", "-3", None)])
def test_close_with(v2srv, code, rc, wire):
    mark = v2srv.mark()
    with conn(v2srv, "cw") as c:
        c.send_text("closewith:" + code)
        assert log_line(v2srv, r"^v2 closewith cw rc=(-?\d+)$", mark).group(1) == rc
        if wire:
            f = c.recv_frame()
            assert f.opcode == OP_CLOSE
            assert (f.close_code, f.close_reason) == wire
            c.send_close(wire[0])
            c.expect_eof()
        else:
            c.send_text("still")
            assert c.recv_text() == "still"
            c.close_handshake(1000)


def recv_message_frames(c):
    """(opcode of the first, payload, number of frames) of one message."""
    frames = [c.recv_frame()]
    while not frames[-1].fin:
        frames.append(c.recv_frame())
    assert all(f.opcode == OP_CONT for f in frames[1:])
    return frames[0].opcode, b"".join(f.payload for f in frames), len(frames)


def test_send_fragment_pieces(v2srv):
    mark = v2srv.mark()
    with conn(v2srv, "fr") as c:
        c.send_text("frag:4:100")
        op, data, n = recv_message_frames(c)
        assert (op, n) == (OP_TEXT, 4)
        assert data == b"a" * 100 + b"b" * 100 + b"c" * 100 + b"d" * 100
        for i in range(4):
            assert log_line(v2srv, r"^v2 frag fr %d rc=(-?\d+)$" % i,
                            mark).group(1) == "0"
        c.close_handshake(1000)


def test_whole_sends_wait_for_an_open_message(v2srv):
    """While a message is sent in pieces a whole send is refused (0) and
    a Ping still goes out between the pieces."""
    mark = v2srv.mark()
    with conn(v2srv, "busy") as c:
        c.send_text("fragbusy")
        first = c.recv_frame()
        assert (first.opcode, first.fin, first.payload) == (OP_TEXT, False, b"one ")
        ping = c.recv_frame()
        assert (ping.opcode, ping.payload) == (OP_PING, b"between")
        last = c.recv_frame()
        assert (last.opcode, last.fin, last.payload) == (OP_CONT, True, b"two")
        assert c.recv_text() == "fragbusy done"
        m = log_line(v2srv, r"^v2 fragbusy busy first=(-?\d+) whole=(\d+) "
                     r"ping=(-?\d+) last=(-?\d+)$", mark)
        assert m.groups() == ("0", "0", "0", "0")
        c.close_handshake(1000)


def test_fragment_size_cuts_large_messages(v2srv):
    with conn(v2srv, "fs", path="/v2frag") as c:
        c.send_binary(bytes(range(256)) * 10)
        op, data, n = recv_message_frames(c)
        assert (op, data, n) == (OP_BINARY, bytes(range(256)) * 10, 3)
        c.send_text("small")
        assert recv_message_frames(c) == (OP_TEXT, b"small", 1)
        c.close_handshake(1000)


def test_queued_and_drain(v2srv):
    """A reader that does not read: the queue holds what it holds, then
    on_drain fires once the client reads it down."""
    mark = v2srv.mark()
    c = conn(v2srv, "dr", rcvbuf=4096)
    try:
        c.send_text("flood:16384:10")
        m = log_line(v2srv, r"^v2 flood dr sent=(\d+) queued=(\d+)$", mark)
        assert int(m.group(1)) == 10 and int(m.group(2)) > 100000
        for _ in range(10):
            op, data = c.recv_message(timeout=10)
            assert op == OP_BINARY and len(data) == 16384
        log_line(v2srv, r"^v2 drain dr queued=(\d+)$", mark)
        c.send_text("queued")
        assert c.recv_text() == "queued 0"
        c.close_handshake(1000)
    finally:
        c.close()


def test_pause_input_stops_reading(v2srv):
    """pause_input(1): what the client sends waits until the plugin's
    thread resumes; then it all comes, in order."""
    mark = v2srv.mark()
    with conn(v2srv, "pause") as c:
        c.send_text("pause:600")
        log_line(v2srv, r"^v2 paused pause$", mark)
        for i in range(3):
            c.send_text("m%d" % i)
        c.settimeout(0.3)
        with pytest.raises(Exception):
            c.recv_frame()                    # nothing while paused
        log_line(v2srv, r"^v2 resume pause$", mark)
        assert [c.recv_text(timeout=5) for _ in range(3)] == ["m0", "m1", "m2"]
        c.close_handshake(1000)


def blink_all_the_way(h):
    """Each message pauses the input and another thread resumes it at
    once, while the client sends without waiting.  Frames read behind the
    paused message must wait, neither dropped nor overtaken by what is
    read next, whether the resume comes before or after the module has
    returned from that message (a resume in between once dropped them,
    or let newer bytes go first: frames parsed from the middle of one,
    1002)."""
    import threading
    texts = ["%d %s" % (i, "x" * (i * 7 % 180)) for i in range(20000)]
    with conn(h, "blink") as c:
        c.send_text("blink")
        assert c.recv_text(timeout=5) == "blinking"
        failed = []

        def send_all():
            try:
                for i in range(0, len(texts), 100):
                    c.send_raw(b"".join(build_frame(OP_TEXT, t.encode())
                                        for t in texts[i:i + 100]))
            except OSError as e:
                failed.append(e)

        sender = threading.Thread(target=send_all)
        sender.start()
        try:
            for t in texts:
                assert c.recv_text(timeout=5) == t
        finally:
            sender.join(10)
        assert not failed
        c.close_handshake(1000)


def test_a_resume_racing_the_pause_keeps_what_was_read_behind(v2srv):
    blink_all_the_way(v2srv)


def test_a_resume_racing_the_pause_on_the_sync_engine(make_httpd):
    h = make_httpd(v2_conf, mpm="prefork")
    h.start()
    blink_all_the_way(h)


def test_keepalive_ping_and_timeout(v2srv):
    """WebSocketPingInterval: a quiet client gets Pings; answered, the
    connection lives; unanswered, it is dropped and logged."""
    mark = v2srv.mark()
    with conn(v2srv, "ka", path="/v2ping") as c:
        for _ in range(3):
            f = c.recv_frame(timeout=3)
            assert f.opcode == OP_PING and len(f.payload) == 8
            c.send_frame(OP_PONG, f.payload)
        c.send_text("alive")
        assert c.recv_text() == "alive"
        f = c.recv_frame(timeout=3)
        assert f.opcode == OP_PING                 # and now no answer
        c.expect_eof(timeout=3)
    text = v2srv.expect_log("no Pong within", mark)
    assert "WebSocketPingTimeout" in text


def test_max_lifetime(v2srv):
    with conn(v2srv, "life", path="/v2life") as c:
        c.send_text("x")
        assert c.recv_text() == "x"
        c.expect_close(1001, timeout=3, allow_data=True, reply=True)


def test_idle_counts_what_the_server_sends(v2srv):
    """A connection that only pushes to a quiet client is not idle."""
    with conn(v2srv, "idle", path="/v2idle") as c:
        c.send_text("sub:ticker")
        end = time.monotonic() + 2.0
        # Another connection publishes to it every 0.3 s for 2 s: longer
        # than WebSocketIdleTimeout, but busy.
        with conn(v2srv, "ticker", path="/v2") as p:
            while time.monotonic() < end:
                p.send_text("pub:ticker:tick")
                assert c.recv_text(timeout=2) == "tick"
                time.sleep(0.3)
            p.close_handshake(1000)
        # Now quiet for good: closed as idle.
        c.expect_close(1001, timeout=3, reply=True)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "deflate"])
def test_on_fragment_streams_pieces(v2srv, compress):
    """on_fragment: a 3 MiB message arrives in pieces, never whole, and is
    sent back in pieces (send_fragment); compressed ones are inflated
    piece by piece."""
    import zlib
    mark = v2srv.mark()
    payload = (b"stream me " * 400000)[:3 * 1024 * 1024]
    ext = [("Sec-WebSocket-Extensions",
            "permessage-deflate; client_no_context_takeover; "
            "server_no_context_takeover")] if compress else []
    with conn(v2srv, "st", path="/v2stream", headers=ext) as c:
        c.allow_rsv1 = compress
        if compress:
            co = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = co.compress(payload) + co.flush(zlib.Z_SYNC_FLUSH)
            c.send_raw(build_frame(OP_BINARY, data[:-4], rsv=4))
        else:
            for i in range(0, len(payload), 1 << 20):
                part = payload[i:i + (1 << 20)]
                last = i + len(part) >= len(payload)
                c.send_raw(build_frame(OP_BINARY if i == 0 else OP_CONT, part,
                                       fin=last))
        frames = [c.recv_frame(timeout=10)]
        while not frames[-1].fin:
            frames.append(c.recv_frame(timeout=10))
        if compress:
            d = zlib.decompressobj(-15)
            got = b"".join(d.decompress(f.payload) for f in frames)
            got += d.decompress(b"\x00\x00\xff\xff")
        else:
            got = b"".join(f.payload for f in frames)
        assert got == payload
        c.close_handshake(1000)
    log = v2srv.since(mark, "test")
    pieces = re.findall(r"^v2 fragment st type=128 flags=(\d+) len=(\d+) rc=0$",
                        log, re.M)
    assert len(pieces) >= 3, log[-2000:]
    assert int(pieces[0][0]) & 1 and int(pieces[-1][0]) & 2
    assert max(int(n) for _, n in pieces) < len(payload) // 2


def test_on_fragment_text_checked_as_it_comes(v2srv):
    """Invalid UTF-8 in streamed text fails with 1007 at the bad byte,
    before the message ends."""
    with conn(v2srv, "bad", path="/v2nodeflate") as c:
        c.send_raw(build_frame(OP_TEXT, "ok ".encode(), fin=False))
        c.send_raw(build_frame(OP_CONT, b"\xc3\x28", fin=False))
        c.expect_close(1007, allow_data=True)


def test_plugin_threads_calls_race_the_end(v2srv):
    """Calls from the pause thread after the connection ended are
    refused, never a crash (the crash check runs after each test)."""
    mark = v2srv.mark()
    c = conn(v2srv, "race")
    c.send_text("pause:300")
    log_line(v2srv, r"^v2 paused race$", mark)
    c.abort()
    log_line(v2srv, r"^v2 disconnect race$", mark, timeout=5)


# ---- a paused client that leaves ------------------------------------------------

def paused_conf(h):
    return ws_location("/v2", V2, "v2probe_init", "    WebSocketCompression Off\n")


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_a_paused_client_that_leaves_is_noticed(make_httpd, mpm):
    """While its input is paused the socket is still watched: a client
    that closes its TCP connection (FIN) ends the WebSocket at once
    (1006), instead of when the plugin resumes (30 s here)."""
    h = make_httpd(paused_conf, mpm=mpm, loglevel="warn websocket:debug")
    h.start()
    mark = h.mark()
    c = conn(h, "gone-%s" % mpm)
    c.send_text("pause:30000")
    log_line(h, r"^v2 paused gone-%s$" % mpm, mark)
    c.close()                                    # FIN, nothing unread
    m = log_line(h, r"^v2 close gone-%s code=(\d+)" % mpm, mark, timeout=3)
    assert m.group(1) == "1006"
    log_line(h, r"^v2 disconnect gone-%s$" % mpm, mark, timeout=3)


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_a_paused_client_that_left_data_is_heard_after_the_pause(make_httpd,
                                                                 mpm):
    """What the client sent before it left is still read when the pause
    ends, in order; only then does the connection end."""
    h = make_httpd(paused_conf, mpm=mpm, loglevel="warn websocket:debug")
    h.start()
    mark = h.mark()
    c = conn(h, "left-%s" % mpm)
    c.send_text("pause:1500")
    log_line(h, r"^v2 paused left-%s$" % mpm, mark)
    c.send_text("m0")
    c.close()
    log_line(h, r"^v2 close left-%s code=(\d+)" % mpm, mark, timeout=6)
    text = h.since(mark, "test")
    assert text.index("v2 resume left-%s" % mpm) \
        < text.index("v2 close left-%s" % mpm), text
