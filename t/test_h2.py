"""WebSockets over HTTP/2 (RFC 8441): mod_http2 with H2WebSockets on turns
an extended CONNECT (:protocol websocket) into a GET with Upgrade, and our
101 into a 200; the sync engine then drives the stream's secondary
connection.  Real httpd, real mod_http2, h2c (prior knowledge) and h2 over
TLS (ALPN); the client is python3-h2 (t/h2ws.py)."""

import os
import signal
import time

import pytest

import harness
from conformance_lib import Conn, Pmd, deflate_raw, parse_extensions
from h2ws import H2Conn, H2WSClient
from wsraw import (OP_BINARY, OP_CLOSE, OP_CONT, OP_TEXT, WSError, wait_for,
                   wait_until)

H2_CONF = """
LoadModule http2_module {moddir}/mod_http2.so
Protocols h2 h2c http/1.1
H2WebSockets on
LogFormat "%r %>s close=%{{websocket-close-code}}n in=%{{websocket-messages-in}}n out=%{{websocket-messages-out}}n" wsnotes
CustomLog "{root}/logs/ws_log" wsnotes
"""


def loc(path, so, init, extra=""):
    return ("<Location %s>\n    SetHandler websocket-handler\n"
            '    WebSocketHandler "%s" %s\n%s</Location>\n'
            % (path, so, init, extra))


def h2_conf(h, extra=""):
    return (H2_CONF.format(moddir=harness.MODDIR, root=h.root)
            + loc("/echo", h.echo_so, "echo_init")
            + loc("/dumb-increment", h.dumb_so, "dumb_increment_init")
            + loc("/probe", harness.test_plugin_so("probe"), "probe_init")
            + loc("/probe/small", harness.test_plugin_so("probe"),
                  "probe_init", "    WebSocketSendQueueLimit 64K\n")
            + extra)


def ws_log(h):
    return h.read(os.path.join(h.root, "logs", "ws_log"))


@pytest.fixture(scope="module")
def h2srv():
    from conftest import serve
    yield from serve(h2_conf, tls=True, loglevel="warn websocket:debug")


@pytest.fixture(params=["h2c", "h2"])
def conn(request, h2srv):
    """An HTTP/2 connection: cleartext (prior knowledge), or TLS (ALPN)."""
    if request.param == "h2c":
        c = H2Conn(h2srv.port)
    else:
        c = H2Conn(h2srv.tls_port, tls=h2srv.ssl_context())
    yield c
    c.close()


def echo(ws, text, timeout=5):
    ws.send_text(text)
    got = ws.recv_text(timeout=timeout)
    assert got == text, (got, text)


# ---- the basics ---------------------------------------------------------------

def test_echo_over_extended_connect(conn, h2srv):
    """The first read of the stream is a synthetic EOS (mod_http2 ends the
    GET's body with it): the WebSocket must not end there.  (Before, the
    stream ended at once, "peer closed the TCP connection".)"""
    ws = conn.websocket("/echo")
    assert ws.response.status == 200
    assert not ws.response.has("Sec-WebSocket-Accept")
    echo(ws, "hello over h2")
    ws.send_binary(b"\x00\x01binary")
    assert ws.recv_message() == (OP_BINARY, b"\x00\x01binary")
    ws.close_handshake(1000)
    assert ws.ended == "end"
    wait_for(lambda: "GET /echo HTTP/2.0 101 close=1000 in=2 out=2"
             in ws_log(h2srv), "the access log line with the notes")
    assert "WebSocket engine: sync (HTTP/2 stream)" in h2srv.error_log()


def test_large_messages(conn):
    """1 MiB each way, binary and text, through mod_http2's flow control
    in both directions."""
    ws = conn.websocket("/echo")
    data = os.urandom(1 << 20)
    ws.send_binary(data)
    assert ws.recv_message(timeout=20) == (OP_BINARY, data)
    text = ("0123456789abcdef" * 65536)
    ws.send_fragmented(OP_TEXT, text.encode(), 100000)
    assert ws.recv_text(timeout=20) == text
    ws.close_handshake(1000)


class H2Deflate(H2WSClient):
    """A stream that speaks permessage-deflate: the conformance client's
    frame reader (RSV1 allowed on data frames) and inflater."""
    recv_frame = Conn.recv_frame
    inflate = Conn.inflate
    recv_msg = Conn.recv_msg

    def __init__(self, *args):
        super().__init__(*args)
        exts = parse_extensions(self.response.header(
            "Sec-WebSocket-Extensions"))
        assert [e[0] for e in exts] == ["permessage-deflate"], exts
        self.pmd = Pmd(exts[0][1])
        self.inflater = None


def test_permessage_deflate(conn):
    ws = conn.websocket("/echo", extensions="permessage-deflate",
                        cls=H2Deflate)
    for payload in (b"compress me " * 500, os.urandom(300000),
                    b"z" * (1 << 20)):
        ws.send_frame(OP_BINARY, deflate_raw(payload), rsv=4)
        m = ws.recv_msg(timeout=20)
        assert m.opcode == OP_BINARY and m.data == payload, m
        assert m.compressed, m
    ws.send_text("short")                 # under the minimum: as is
    m = ws.recv_msg(timeout=5)
    assert (m.data, m.compressed) == (b"short", False), m
    ws.close_handshake(1000)


def test_many_websockets_on_one_connection(conn):
    streams = [conn.websocket("/echo") for _ in range(6)]
    for k in range(3):
        for i, ws in enumerate(streams):
            ws.send_text("s%d m%d" % (i, k))
        for i, ws in enumerate(streams):
            assert ws.recv_text() == "s%d m%d" % (i, k)
    for ws in streams:
        ws.close_handshake(1000)


# ---- the end of a stream --------------------------------------------------------

def test_close_by_server(conn, h2srv):
    mark = h2srv.mark()
    ws = conn.websocket("/probe", headers=[("x-conn-id", "h2close")])
    ws.send_text("close")
    f = ws.expect_close(timeout=5, allow_data=True, reply=True)
    assert f.opcode == OP_CLOSE
    assert ws.ended == "end"
    log = h2srv.wait_log(lambda t: "disconnect id=h2close " in t, mark,
                         "test")
    assert log.count("disconnect id=h2close ") == 1, log


def test_client_end_stream_ends_the_websocket(conn, h2srv):
    """A real end of the client's stream (END_STREAM without a Close) is
    not the synthetic EOS: the WebSocket ends (1006), on_disconnect runs
    once, and the server ends its side of the stream."""
    mark = h2srv.mark()
    ws = conn.websocket("/probe?eos", headers=[("x-conn-id", "h2eos")])
    echo(ws, "before the end")
    ws.end_stream()
    ws.expect_eof(5)
    log = h2srv.wait_log(lambda t: "disconnect id=h2eos " in t, mark, "test")
    assert log.count("disconnect id=h2eos ") == 1, log
    wait_for(lambda: "GET /probe?eos HTTP/2.0 101 close=1006" in ws_log(h2srv),
             "close=1006 in the access log")


def test_connect_with_end_stream_is_400(conn, h2srv):
    """An extended CONNECT that ends its stream at once leaves the client
    no way to send a frame: 400, one info line.  (Before, the stream's
    missing input was put in a pollset, and the child crashed.)"""
    mark = h2srv.mark()
    st = conn.request([(":method", "CONNECT"), (":protocol", "websocket"),
                       (":scheme", conn.scheme), (":path", "/echo"),
                       (":authority", "127.0.0.1:%d" % conn.port),
                       ("sec-websocket-version", "13")], end_stream=True)
    assert dict(st.headers)[":status"] == "400", st.headers
    h2srv.expect_log("ended its HTTP/2 stream with the CONNECT", mark)
    ws = conn.websocket("/echo")
    echo(ws, "the connection goes on")
    ws.close_handshake(1000)


def test_client_reset_ends_the_websocket(conn, h2srv):
    mark = h2srv.mark()
    ws = conn.websocket("/probe", headers=[("x-conn-id", "h2rst")])
    echo(ws, "then RST_STREAM")
    ws.abort()
    log = h2srv.wait_log(lambda t: "disconnect id=h2rst " in t, mark, "test")
    assert log.count("disconnect id=h2rst ") == 1, log
    # The connection itself goes on.
    other = conn.websocket("/echo")
    echo(other, "still here")
    other.close_handshake(1000)


# ---- plugin threads, and writes that block --------------------------------------

def test_plugin_thread_pushes_wake_the_stream(conn):
    """dumb-increment's thread sends every 50 ms: each value must leave as
    it is sent, the plugin's send waking the stream's thread (a missed
    wake-up would hold them until the loop's 1 s look at the server's
    state, and they would come in bursts)."""
    ws = conn.websocket("/dumb-increment")
    times, values = [], []
    while len(values) < 12:
        op, data = ws.recv_message(timeout=3)
        values.append(int(data))
        times.append(time.monotonic())
    assert values == list(range(values[0], values[0] + 12)), values
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert sum(1 for g in gaps if g > 0.02) >= 6, gaps
    ws.close_handshake(1000)


def test_probe_burst_from_thread(conn):
    ws = conn.websocket("/probe")
    ws.send_text("burst:2000")
    for i in range(2000):
        assert ws.recv_text(timeout=10) == "burst %d" % i
    assert ws.recv_text(timeout=10) == "burst done 2000"
    ws.close_handshake(1000)


def test_blocked_stream_does_not_stall_others(conn):
    """A client that does not read one stream: the server's writes to it
    wait in mod_http2's flow control (the stream's window closes at 64 KiB),
    and only that stream waits.  Other WebSockets of the same connection go
    on, the connection answers PINGs, and the unread stream gets all of its
    data, in order, once read again."""
    slow = conn.websocket("/probe")
    slow.stream.pause()
    slow.send_text("binary:1048576")
    fast = conn.websocket("/echo")
    for i in range(20):
        echo(fast, "fast %d" % i)
    assert conn.ping_server(timeout=5)
    # The server could not send more than the stream's window.
    wait_until(lambda: len(slow.stream.data) >= 60000, timeout=2)
    assert len(slow.stream.data) <= 65535, len(slow.stream.data)
    slow.send_text("after")            # waits behind the blocked write
    echo(fast, "fast again")
    slow.stream.resume()
    op, data = slow.recv_message(timeout=20)
    assert op == OP_BINARY and data == bytes(i & 255 for i in range(1 << 20))
    assert slow.recv_text(timeout=10) == "after"
    slow.close_handshake(1000)
    fast.close_handshake(1000)


def test_slow_reader_over_send_queue_limit(conn, h2srv):
    """A thread that pushes to a stream the client does not read: the
    queue stops at WebSocketSendQueueLimit (64K here), the connection is
    closed with 1008 once the client reads again, and the plugin's thread
    never blocks."""
    mark = h2srv.mark()
    ws = conn.websocket("/probe/small", headers=[("x-conn-id", "h2slow")])
    ws.stream.pause()
    ws.send_text("burst:100000")
    h2srv.expect_log("send queue limit", mark, timeout=10)
    ws.stream.resume()
    f = ws.expect_close(1008, timeout=10, allow_data=True, reply=True)
    assert f.close_code == 1008
    log = h2srv.wait_log(lambda t: "disconnect id=h2slow " in t, mark, "test")
    assert log.count("disconnect id=h2slow ") == 1, log


# ---- restarts ---------------------------------------------------------------------

@pytest.mark.parametrize("mpm", ["event", "worker"])
def test_graceful_restart_closes_streams_1012(make_httpd, mpm):
    h = make_httpd(h2_conf, mpm=mpm, tls=True, loglevel="warn websocket:debug")
    h.start()
    c = H2Conn(h.port)
    t = H2Conn(h.tls_port, tls=h.ssl_context())
    try:
        streams = [c.websocket("/echo"), c.websocket("/dumb-increment"),
                   t.websocket("/echo")]
        echo(streams[0], "before")
        echo(streams[2], "before, TLS")
        assert streams[1].recv_message(timeout=3)[1] == b"0"
        before = h.generations()
        os.kill(h.pid, signal.SIGUSR1)
        for ws in streams:
            f = ws.expect_close(1012, timeout=5, allow_data=True, reply=True)
            assert f.close_reason == b"server restarting", f
        h.wait_new_generation(before)
        with H2Conn(h.port) as fresh:
            ws = fresh.websocket("/echo")
            echo(ws, "new generation")
            ws.close_handshake(1000)
        wait_for(lambda: ws_log(h).count("close=1012") == 3,
                 "three close=1012 lines in the access log")
    finally:
        c.close()
        t.close()


def test_stop_closes_streams_1001(make_httpd):
    h = make_httpd(h2_conf, loglevel="warn websocket:debug")
    h.start()
    c = H2Conn(h.port)
    try:
        ws = c.websocket("/echo")
        echo(ws, "before")
        os.kill(h.pid, signal.SIGWINCH)          # graceful-stop
        ws.expect_close(1001, timeout=5, allow_data=True, reply=True)
        h.proc.wait(10)
    finally:
        c.close()


def test_h2websockets_off_is_501(make_httpd):
    """Without H2WebSockets the CONNECT never reaches us: mod_http2
    answers 501 (and no SETTINGS_ENABLE_CONNECT_PROTOCOL is sent)."""
    h = make_httpd(lambda h: h2_conf(h).replace("H2WebSockets on",
                                                "H2WebSockets off"))
    h.start()
    with pytest.raises(AssertionError, match="ENABLE_CONNECT_PROTOCOL"):
        H2Conn(h.port)


def test_client_reads_streams_after_a_graceful_goaway():
    """The test client itself (t/h2ws.py): a graceful GOAWAY followed by
    DATA for a stream it covers, in one read, delivers that DATA (mod_http2
    sends its GOAWAY before a stopping server's Close frames; stock
    python3-h2 raised ProtocolError there, failing
    test_stop_closes_streams_1001 now and then)."""
    import h2.config
    import h2.connection
    import h2.events
    from hyperframe.frame import DataFrame, GoAwayFrame
    from h2ws import _GracefulH2

    client = _GracefulH2(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    client.send_headers(1, [(":method", "GET"), (":scheme", "http"),
                            (":authority", "x"), (":path", "/")])
    server.receive_data(client.data_to_send())
    server.send_headers(1, [(":status", "200")])
    client.receive_data(server.data_to_send())
    goaway = GoAwayFrame(0, last_stream_id=1, error_code=0)
    data = DataFrame(1, data=b"\x88\x02\x03\xe9")     # a Close 1001
    events = client.receive_data(goaway.serialize() + data.serialize())
    got = [e for e in events if isinstance(e, h2.events.DataReceived)]
    assert len(got) == 1 and got[0].data == b"\x88\x02\x03\xe9", events
