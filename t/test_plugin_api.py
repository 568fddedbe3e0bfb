"""The plugin API through the probe plugin: send() of every type, from the
connection's thread and from others, its return values, the send queue
limit, and on_disconnect exactly once however a connection ends."""

import re

import pytest

from wsraw import (WSClient, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG,
                   handshake)


def conn(srv, cid, path="/probe", **kw):
    """A connection named cid in the probe's log, and by its query string
    in the access log."""
    headers = kw.pop("headers", []) + [("X-Conn-Id", cid)]
    return WSClient(srv.port, "%s?%s" % (path, cid), headers=headers, **kw)


def disconnects(srv, mark, cid):
    return srv.since(mark, "test").count("disconnect id=%s " % cid)


def wait_disconnect(srv, mark, cid, timeout=8):
    """Waits for the access log line of `cid`'s request, which is written
    once its WebSocket is over, after on_disconnect: by then on_disconnect
    must have run, and exactly once."""
    srv.expect_log('?%s HTTP/1.1" 101 ' % cid, mark, "access",
                   timeout=timeout)
    n = disconnects(srv, mark, cid)
    assert n == 1, "on_disconnect of %s called %d times:\n%s" % (
        cid, n, srv.since(mark, "test"))


# ---- send() of each type ----------------------------------------------------

def test_text_and_binary_echo_keep_type(srv):
    with conn(srv, "types") as c:
        c.send_text("plain text")
        assert c.recv_message() == (OP_TEXT, b"plain text")
        c.send_binary(b"\x00\xffbin")
        assert c.recv_message() == (OP_BINARY, b"\x00\xffbin")
        c.close_handshake(1000)


def test_send_binary_large_from_plugin(srv):
    with conn(srv, "bin") as c:
        c.send_text("binary:300000")
        op, data = c.recv_message(timeout=10)
        assert op == OP_BINARY
        assert data == bytes(i & 255 for i in range(300000))
        c.close_handshake(1000)


def test_plugin_sends_ping(srv):
    with conn(srv, "ping") as c:
        c.send_text("ping:are you there")
        f = c.recv_frame()
        assert (f.opcode, f.fin, f.payload) == (OP_PING, True,
                                                 b"are you there")
        c.send_frame(OP_PONG, f.payload)       # must not reach on_message
        c.send_text("next")
        assert c.recv_frame().payload == b"next"
        c.close_handshake(1000)


def test_plugin_sends_pong(srv):
    with conn(srv, "pong") as c:
        c.send_text("pong:unsolicited")
        f = c.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"unsolicited")
        c.close_handshake(1000)


def test_plugin_sends_close_with_payload(srv):
    mark = srv.mark()
    with conn(srv, "sendclose") as c:
        c.send_text("sendclose:0fa0627965")          # 4000 "bye"
        f = c.recv_frame()
        assert f.opcode == OP_CLOSE
        assert (f.close_code, f.close_reason) == (4000, b"bye")
        c.send_close(4000)
        c.expect_eof(5)
    log = srv.wait_log(lambda t: "sendclose id=sendclose" in t, mark, "test")
    m = re.search(r"sendclose id=sendclose ret=(\d+) after=(\d+)", log)
    assert m, log
    assert m.group(1) == "5"            # accepted: buffer_size
    assert m.group(2) == "0"            # after a Close nothing is sent
    wait_disconnect(srv, mark, "sendclose")


def test_send_after_close_returns_zero(srv):
    mark = srv.mark()
    with conn(srv, "closethen") as c:
        c.send_text("closethen")
        f = c.recv_frame()
        assert f.opcode == OP_CLOSE and f.payload == b""
        c.send_close(1000)
        c.expect_eof(5)
    log = srv.wait_log(lambda t: "closethen id=" in t, mark, "test")
    assert "closethen id=closethen ret=0" in log


def test_invalid_sends_return_zero(srv):
    with conn(srv, "badtype") as c:
        c.send_text("badtype")
        assert c.recv_text() == "badtype ret=0,0,0,0,0"
        c.send_text("ret:abcdef")
        assert c.recv_text() == "abcdef"
        assert c.recv_text() == "ret=6"
        c.close_handshake(1000)


def test_minimal_plugin_optional_callbacks_null(srv):
    with WSClient(srv.port, "/minimal", protocols="chat") as c:
        assert not c.response.has("Sec-WebSocket-Protocol")
        c.send_text("shout \u00e9")
        assert c.recv_text() == "SHOUT \u00e9"
        c.send_binary(b"\x01\x02\x03")
        assert c.recv_message() == (OP_BINARY, b"\x03\x02\x01")
        c.close_handshake(1001)


# ---- other threads ----------------------------------------------------------

def test_burst_from_other_thread_in_order(srv):
    with conn(srv, "burst") as c:
        c.send_text("burst:500")
        for i in range(500):
            assert c.recv_text(timeout=10) == "burst %d" % i
        assert c.recv_text() == "burst done 500"
        c.close_handshake(1000)


def test_several_threads_sending_at_once(srv):
    k, n = 6, 300
    with conn(srv, "multi") as c:
        c.send_text("multi:%d:%d" % (k, n))
        nxt = [0] * k
        done = set()
        while len(done) < k:
            t = c.recv_text(timeout=10)
            m = re.fullmatch(r"t(\d+) (\d+|done \d+)", t)
            assert m, "corrupt message %r" % t
            j = int(m.group(1))
            if m.group(2).startswith("done"):
                assert m.group(2) == "done %d" % n
                assert nxt[j] == n
                done.add(j)
            else:
                assert int(m.group(2)) == nxt[j], (t, nxt)
                nxt[j] += 1
        c.close_handshake(1000)


def test_thread_and_connection_thread_interleave(srv):
    """Echoes (connection thread) and a burst (other thread) both arrive
    intact while they race."""
    with conn(srv, "race") as c:
        c.send_text("burst:300")
        for i in range(50):
            c.send_text("echo %d" % i)
        bursts, echoes = [], []
        while len(bursts) < 301 or len(echoes) < 50:
            t = c.recv_text(timeout=10)
            (echoes if t.startswith("echo") else bursts).append(t)
        assert echoes == ["echo %d" % i for i in range(50)]
        assert bursts == ["burst %d" % i for i in range(300)] + \
            ["burst done 300"]
        c.close_handshake(1000)


def test_thread_sending_while_client_aborts(srv):
    mark = srv.mark()
    c = conn(srv, "drip")
    c.send_text("drip")
    for i in range(5):
        assert c.recv_text() == "drip %d" % i
    c.abort()
    wait_disconnect(srv, mark, "drip")
    log = srv.since(mark, "test")
    assert re.search(r"drip end id=drip accepted=\d+", log), log


def test_thread_sending_while_client_closes(srv):
    mark = srv.mark()
    with conn(srv, "drip2") as c:
        c.send_text("drip")
        assert c.recv_text() == "drip 0"
        c.send_close(1000)
        f = c.expect_close(1000, allow_data=True)
        assert f.close_code == 1000
    wait_disconnect(srv, mark, "drip2")


# ---- send queue -------------------------------------------------------------

def test_send_queue_limit_rejects_without_blocking(srv):
    """WebSocketSendQueueLimit 1 MiB: a plugin that sends 40 x 256 KiB while
    the client reads nothing gets 0 from send() once the queue is full,
    without waiting; what was accepted arrives intact, then Close 1008, and
    one info line says why (not an error: any client can be slow)."""
    mark = srv.mark()
    c = conn(srv, "queue", path="/probe/queue", rcvbuf=32768)
    try:
        c.send_text("queue:262144:40")
        log = srv.wait_log(lambda t: "queue id=queue " in t, mark, "test",
                           timeout=10)
        m = re.search(r"queue id=queue accepted=(\d+) first_reject=(-?\d+) "
                      r"ms=(\d+)", log)
        assert m, log
        accepted, first_reject, ms = map(int, m.groups())
        assert 3 <= accepted < 40, log
        assert first_reject == accepted, log
        assert ms < 1000, "send() blocked: %d ms" % ms
        for i in range(accepted):
            op, data = c.recv_message(timeout=10)
            assert op == OP_BINARY and len(data) == 262144
            assert int.from_bytes(data[:8], "little") == i
            assert data[8:] == b"q" * (262144 - 8)
        c.expect_close(1008, timeout=10, reply=True)
    finally:
        c.close()
    text = srv.wait_log(lambda t: "send queue limit of" in t, mark)
    lines = [l for l in text.splitlines() if "send queue limit of" in l]
    assert len(lines) == 1 and "[websocket:info]" in lines[0], text
    assert "[websocket:error]" not in text, text
    wait_disconnect(srv, mark, "queue")


def test_message_over_queue_limit_refused_before_it_is_queued(srv):
    """WebSocketSendQueueLimit bounds all a connection holds: one message
    larger than it (2 MiB against 1 MiB; before, it was accepted when the
    queue was empty) is refused at once, send() returns 0, one warning
    per connection, and the connection goes on."""
    mark = srv.mark()
    with conn(srv, "bigone", path="/probe/queue") as c:
        c.send_text("queue:2097152:2")
        log = srv.wait_log(lambda t: "queue id=bigone " in t, mark, "test")
        assert "queue id=bigone accepted=0 first_reject=0 " in log, log
        c.send_text("still here")
        assert c.recv_text(timeout=5) == "still here"
        c.close_handshake(1000)
    text = srv.wait_log(lambda t: "more than WebSocketSendQueueLimit" in t,
                        mark)
    assert text.count("more than WebSocketSendQueueLimit") == 1, text


def test_message_as_large_as_the_queue_limit_goes_through(srv):
    with conn(srv, "limitsize", path="/probe/queue") as c:
        c.send_text("binary:1048576")
        op, data = c.recv_message(timeout=10)
        assert op == OP_BINARY and len(data) == 1048576
        assert data[:512] == bytes(range(256)) * 2
        c.close_handshake(1000)


def test_default_queue_takes_more(srv):
    """The default limit (16 MiB) takes what a 1 MiB limit refuses."""
    mark = srv.mark()
    with conn(srv, "queue2", rcvbuf=32768) as c:
        c.send_text("queue:262144:40")
        log = srv.wait_log(lambda t: "queue id=queue2 " in t, mark, "test",
                           timeout=10)
        m = re.search(r"queue id=queue2 accepted=(\d+)", log)
        assert m and int(m.group(1)) == 40, log
        for i in range(40):
            op, data = c.recv_message(timeout=10)
            assert int.from_bytes(data[:8], "little") == i
        c.close_handshake(1000)


# ---- on_disconnect exactly once ---------------------------------------------

@pytest.mark.parametrize("how", ["client-close", "server-close", "abort",
                                 "protocol-error", "too-big", "eof"])
def test_on_disconnect_exactly_once(srv, how):
    cid = "once-" + how
    mark = srv.mark()
    c = conn(srv, cid, path="/probe/small")
    c.send_text("hello")
    assert c.recv_text() == "hello"
    if how == "client-close":
        c.close_handshake(1000)
    elif how == "server-close":
        c.send_text("close")
        assert c.recv_frame().opcode == OP_CLOSE
        c.send_close(None)
        c.expect_eof(5)
    elif how == "abort":
        c.abort()
    elif how == "protocol-error":
        c.send_frame(0x3, b"")
        c.expect_close(1002)
    elif how == "too-big":
        c.send_binary(b"x" * 1001)
        c.expect_close(1009)
    elif how == "eof":
        c.close()
    c.close()
    wait_disconnect(srv, mark, cid)
    log = srv.since(mark, "test")
    assert "connect id=%s " % cid in log
    # request() is still valid in on_disconnect.
    assert re.search(r"disconnect id=%s pid=\d+ uri=/probe/small$" % cid,
                     log, re.M), log


def test_server_survives_many_short_connections(srv):
    mark = srv.mark()
    for i in range(30):
        c = conn(srv, "short%d" % i)
        if i % 3 == 0:
            c.abort()
        elif i % 3 == 1:
            c.close_handshake(1000)
            c.close()
        else:
            c.send_text("bye")
            c.close()
    # Every request's access log line, written after its on_disconnect.
    srv.expect_log(lambda t: all('?short%d HTTP/1.1" 101 ' % i in t
                                 for i in range(30)), mark, "access",
                   timeout=10)
    text = srv.since(mark, "test")
    for i in range(30):
        assert text.count("disconnect id=short%d " % i) == 1, i


@pytest.mark.parametrize("payload,why", [
    ("03", "one byte"),
    ("03ed", "1005 is never sent"),
    ("03ee", "1006 is never sent"),
    ("03e7", "999"),
    ("1388", "5000"),
])
def test_plugin_invalid_close_payload_is_refused(srv, payload, why):
    """send(MESSAGE_TYPE_CLOSE) with a payload no endpoint may send returns
    0 and sends nothing; the connection stays open."""
    mark = srv.mark()
    cid = "badclose" + payload
    with conn(srv, cid) as c:
        c.send_text("sendclose:" + payload)
        c.send_text("still open")
        # "after close" is the probe's follow-up text, sent because no Close
        # went out; then our own message comes back.
        assert c.recv_text() == "after close"
        assert c.recv_text() == "still open"
        c.close_handshake(1000)
    log = srv.wait_log(lambda t: "sendclose id=%s" % cid in t, mark, "test")
    m = re.search(r"sendclose id=%s ret=(\d+) after=(\d+)" % cid, log)
    assert m and m.group(1) == "0", (why, log)
    assert "invalid Close payload" in srv.since(mark)


def test_plugin_refusal_after_send_drops_the_message(srv):
    """A plugin that queues a message in on_connect and then refuses: 403,
    nothing of the message on the wire, and the server carries on."""
    mark = srv.mark()
    r = handshake(srv.port, "/probe", extra=[("X-Refuse-After-Send", "1"),
                                             ("X-Conn-Id", "refusedsend")])
    assert r.status == 403, r
    assert b"before refusal" not in r.body
    # The request's access log line: httpd is done with it.
    srv.expect_log('" 403 ', mark, "access")
    log = srv.since(mark, "test")
    assert "refuse-after-send id=refusedsend" in log, log
    assert "disconnect id=refusedsend" not in log
    with conn(srv, "afterrefusal") as c:
        c.send_text("alive")
        assert c.recv_text() == "alive"
        c.close_handshake(1000)
