"""The pubsub plugin (plugins/pubsub.c) with the publisher: subscribers
get a topic's messages in order, with ids when they ask for the
pubsub.ids subprotocol, and resume after the last id they saw from the
topic's history; a slow subscriber is closed with 1013 (or, with Drop,
told of the gap) while the others get everything."""

import http.client
import os

import pytest

from conftest import serve
from topics import (IDS, publish, request, subscribe, split_id, seq_of,
                    recv_texts, pub_location, sub_location, topics_conf,
                    unique)
from wsraw import WSClient, OP_TEXT, OP_BINARY, OP_CLOSE, WSError


def pubsub_conf(h):
    return (topics_conf(h)
            + sub_location("/sub-hist", "WebSocketTopicHistory 1000")
            + sub_location("/sub-short", "WebSocketTopicHistory 5")
            + sub_location("/api/v1/sub")
            + sub_location("/sub-takeover",
                           "WebSocketCompressionServerContextTakeover On"))


@pytest.fixture(scope="module")
def ps():
    yield from serve(pubsub_conf)


def overflow_conf(h):
    """Subscribers that fill up at once: the kernel's buffers are small
    (SendBufferSize) and so is the queue (WebSocketSendQueueLimit 4K)."""
    return ("SendBufferSize 4096\n" + pub_location()
            + sub_location("/sub-hist", "WebSocketTopicHistory 1000")
            + sub_location("/sub-slow", "WebSocketSendQueueLimit 4K\n"
                           "WebSocketTopicHistory 1000")
            + sub_location("/sub-drop", "WebSocketSendQueueLimit 4K\n"
                           "WebSocketTopicOverflow Drop"))


@pytest.fixture(scope="module")
def slow():
    yield from serve(overflow_conf)


# Messages of 1000 bytes that overflow a subscriber that reads nothing
# (SendBufferSize 4096 on the server, a 4 KB receive buffer on the
# client, WebSocketSendQueueLimit 4K between them).
FLOOD = 200


class Publisher:
    """POSTs on one keep-alive connection."""

    def __init__(self, h, path="/pub"):
        self.conn = http.client.HTTPConnection("127.0.0.1", h.port,
                                               timeout=10)
        self.path = path

    def post(self, topic, body, ctype="text/plain"):
        self.conn.request("POST", "%s/%s" % (self.path, topic), body=body,
                          headers={"Content-Type": ctype})
        r = self.conn.getresponse()
        data = r.read()
        assert r.status == 202, (r.status, data)
        import json
        return json.loads(data)

    def close(self):
        self.conn.close()


def publish_many(h, topic, n, size=0, prefix="m"):
    """n text messages "m0", "m1", ... (padded to size); their ids."""
    p = Publisher(h)
    try:
        return [p.post(topic, ("%s%d " % (prefix, i)).ljust(size, "."))["id"]
                for i in range(n)]
    finally:
        p.close()


def read_until_close(c, timeout=10):
    """Every data message up to the server's Close: (messages, code)."""
    got = []
    while True:
        f = c.recv_frame(timeout)
        if f.opcode == OP_CLOSE:
            return got, f.close_code
        if f.opcode in (OP_TEXT, OP_BINARY):
            assert f.fin, "topics' messages are sent whole"
            got.append(f.payload)


# ---- plain subscribers -------------------------------------------------------

def test_subscriber_gets_200_messages_in_order(ps):
    topic = unique("order")
    with subscribe(ps, topic) as c:
        publish_many(ps, topic, 200)
        assert recv_texts(c, 200) == ["m%d " % i for i in range(200)]


def test_every_subscriber_gets_every_message(ps):
    topic = unique("fan")
    subs = [subscribe(ps, topic) for _ in range(5)]
    try:
        publish_many(ps, topic, 30)
        for c in subs:
            assert recv_texts(c, 30) == ["m%d " % i for i in range(30)]
    finally:
        for c in subs:
            c.close()


def test_subscriber_gets_only_its_topic(ps):
    a, b = unique("mine"), unique("theirs")
    with subscribe(ps, a) as c:
        publish(ps, b, "not for you")
        publish(ps, a, "for you")
        assert c.recv_message() == (OP_TEXT, b"for you")
        c.expect_silence()


def test_what_a_subscriber_sends_is_dropped(ps):
    topic = unique("listen")
    mark = ps.mark()
    with subscribe(ps, topic) as c:
        c.send_text("hello?")
        c.send_binary(b"\x01\x02")
        c.expect_silence()
        publish(ps, topic, "still subscribed")
        assert c.recv_message() == (OP_TEXT, b"still subscribed")
        c.close_handshake(1000)
    # Nothing at info or above about it (debug lines only).
    assert "pubsub" not in ps.since(mark)


@pytest.mark.parametrize("path", ["/sub", "/sub/"])
def test_no_topic_is_refused(ps, path):
    mark = ps.mark()
    WSClient(ps.port, path, expect_status=403).close()
    ps.expect_log("refused with 403: plugin pubsub_init declined", mark)


def test_topic_over_1024_bytes_is_refused(ps):
    WSClient(ps.port, "/sub/" + "t" * 1025, expect_status=403).close()
    with subscribe(ps, "t" * 1024):
        pass


def test_topic_under_a_nested_location(ps):
    """websocket_plugin.h: path_info() is "the part of the path after the
    <Location> that configured the handler"; the publisher agrees."""
    topic = unique("nested")
    with subscribe(ps, topic, path="/api/v1/sub") as c:
        assert publish(ps, topic, "deep")["subscribers"] == 1
        assert c.recv_message() == (OP_TEXT, b"deep")


def test_topic_when_the_document_root_has_the_locations_name(make_httpd):
    def conf(h):
        os.makedirs(os.path.join(h.docroot, "sub"))
        return pub_location() + sub_location()
    h = make_httpd(conf)
    h.start()
    with subscribe(h, "a/b") as c:
        assert publish(h, "a/b", "found")["subscribers"] == 1
        assert c.recv_message() == (OP_TEXT, b"found")


def test_without_the_subprotocol_no_ids(ps):
    topic = unique("plain")
    with WSClient(ps.port, "/sub/" + topic, protocols="chat, other") as c:
        assert c.response.header("Sec-WebSocket-Protocol") is None
        publish(ps, topic, "plain")
        assert c.recv_message() == (OP_TEXT, b"plain")


def test_binary_messages_stay_binary(ps):
    topic = unique("bin")
    with subscribe(ps, topic) as c, subscribe(ps, topic, ids=True) as d:
        mid = publish(ps, topic, b"\x00\xff", "application/octet-stream")["id"]
        assert c.recv_message() == (OP_BINARY, b"\x00\xff")
        op, data = d.recv_message()
        assert op == OP_BINARY
        assert split_id(data) == (mid, None, b"\x00\xff")


def test_nothing_published_before_subscribing_arrives(ps):
    """The reader of the child is kept busy (it compresses a 2 MB message
    for each of 12 subscribers with context takeover, holding the topics'
    lock), while "before" is published and a new subscriber comes."""
    busy, topic = unique("busy"), unique("late")
    pmd = [("Sec-WebSocket-Extensions", "permessage-deflate")]
    hogs = [WSClient(ps.port, "/sub-takeover/" + busy, headers=pmd)
            for _ in range(12)]
    try:
        import os
        import base64
        big = base64.b64encode(os.urandom(1500 * 1024))[:2 * 1024 * 1024 - 64]
        publish(ps, busy, big)
        publish(ps, topic, "before")
        with subscribe(ps, topic) as c:
            publish(ps, topic, "after")
            assert c.recv_message(timeout=30) == (OP_TEXT, b"after")
    finally:
        for h in hogs:
            h.close()


# ---- ids and resuming ------------------------------------------------------------

def test_ids_come_with_the_subprotocol(ps):
    topic = unique("ids")
    with subscribe(ps, topic, ids=True) as c:
        assert c.response.header("Sec-WebSocket-Protocol") == IDS
        ids = publish_many(ps, topic, 3)
        got = [split_id(c.recv_message()[1]) for _ in range(3)]
        assert [g[0] for g in got] == ids
        assert [g[2] for g in got] == [b"m0 ", b"m1 ", b"m2 "]
        assert all(g[1] is None for g in got)
        assert [seq_of(i) for i in ids] == sorted(seq_of(i) for i in ids)


def test_resume_replays_what_was_missed(ps):
    topic = unique("resume")
    with subscribe(ps, topic, ids=True, path="/sub-hist") as c:
        ids = publish_many(ps, topic, 3)
        assert split_id(c.recv_message()[1])[0] == ids[0]
    # Gone after the first; three more are published meanwhile.
    ids += publish_many(ps, topic, 3, prefix="n")
    with subscribe(ps, topic, ids=True, last_id=ids[0],
                   path="/sub-hist") as c:
        got = [split_id(c.recv_message()[1]) for _ in range(5)]
        assert [g[0] for g in got] == ids[1:]
        assert [g[2] for g in got] == [b"m1 ", b"m2 ", b"n0 ", b"n1 ", b"n2 "]
        assert all(g[1] is None for g in got), got
        # Then the live ones, none twice.
        new = publish(ps, topic, "live")["id"]
        assert split_id(c.recv_message()[1]) == (new, None, b"live")
        c.expect_silence()


def test_resume_with_nothing_missed_gets_only_new_ones(ps):
    topic = unique("uptodate")
    last = publish_many(ps, topic, 2)[-1]
    with subscribe(ps, topic, ids=True, last_id=last, path="/sub-hist") as c:
        c.expect_silence()
        new = publish(ps, topic, "next")["id"]
        assert split_id(c.recv_message()[1]) == (new, None, b"next")


def test_gap_when_the_history_is_too_short(ps):
    topic = unique("short")
    ids = publish_many(ps, topic, 20)
    # History 5: the last five come, the first says some were missed.
    with subscribe(ps, topic, ids=True, last_id=ids[2],
                   path="/sub-short") as c:
        got = [split_id(c.recv_message()[1]) for _ in range(5)]
        assert [g[0] for g in got] == ids[15:]
        assert got[0][1] is not None, got[0]
        assert all(g[1] is None for g in got[1:])
        c.expect_silence()


@pytest.mark.parametrize("last_id", ["00000000-5", "garbage", "1-2-3"])
def test_unknown_last_id_says_gap(ps, last_id):
    topic = unique("unknown")
    with subscribe(ps, topic, ids=True, last_id=last_id,
                   path="/sub-hist") as c:
        mid = publish(ps, topic, "first")["id"]
        assert split_id(c.recv_message()[1]) == (mid, "?", b"first")
        mid = publish(ps, topic, "second")["id"]
        assert split_id(c.recv_message()[1]) == (mid, None, b"second")


def test_resume_after_1013_loses_nothing(slow):
    """A subscriber that reads nothing is closed with 1013 once the kernel
    buffers and its 4 KB queue are full; it then reads what it was sent,
    comes back with the last id it got, and gets the rest: every message
    once, in order.  A subscriber that reads gets them all meanwhile."""
    topic = unique("slow")
    fast = subscribe(slow, topic, ids=True, path="/sub-hist")
    with subscribe(slow, topic, ids=True, path="/sub-slow", rcvbuf=4096) as c:
        mark = slow.mark()
        ids = publish_many(slow, topic, FLOOD, size=1000)
        slow.expect_log("with 1013: too slow for topic %s" % topic, mark)
        first, code = read_until_close(c)
        assert code == 1013
    with fast:
        assert [split_id(fast.recv_message()[1])[0]
                for _ in range(FLOOD)] == ids
    assert 0 < len(first) < FLOOD
    first = [split_id(m) for m in first]
    assert [f[0] for f in first] == ids[:len(first)]
    with subscribe(slow, topic, ids=True, last_id=first[-1][0],
                   path="/sub-hist") as c:
        rest = [split_id(c.recv_message()[1])
                for _ in range(FLOOD - len(first))]
        c.expect_silence()
    assert [r[0] for r in first + rest] == ids
    assert all(r[1] is None for r in rest), rest[0]
    assert [r[2] for r in first + rest] == \
        [("m%d " % i).ljust(1000, ".").encode() for i in range(FLOOD)]


def drain(c, quiet=2.0):
    """The messages c receives until none comes for `quiet` seconds."""
    got = []
    while True:
        try:
            got.append(c.recv_message(quiet)[1])
        except TimeoutError:
            return got


def test_drop_keeps_the_slow_subscriber_and_tells_the_gap(slow):
    topic = unique("drop")
    with subscribe(slow, topic, ids=True, path="/sub-drop",
                   rcvbuf=4096) as c:
        mark = slow.mark()
        publish_many(slow, topic, FLOOD, size=1000)
        got = [split_id(m) for m in drain(c)]
        # Drained: the next one is not dropped, and says what was if no
        # message did so yet.
        last = publish(slow, topic, "after the flood")["id"]
        got.append(split_id(c.recv_message()[1]))
        assert got[-1][0] == last and got[-1][2] == b"after the flood"
        seqs = [seq_of(g[0]) for g in got]
        assert seqs == sorted(seqs)
        # What it got, and what the gap lines say it missed, make them all.
        gaps = [int(g[1]) for g in got if g[1] is not None]
        assert gaps and min(gaps) > 0, got
        assert len(got) + sum(gaps) == FLOOD + 1
        assert "too slow" not in slow.since(mark)


def test_other_subprotocols_are_not_answered(ps):
    with WSClient(ps.port, "/sub/" + unique("proto"),
                  protocols="soap, " + IDS) as c:
        assert c.response.header("Sec-WebSocket-Protocol") == IDS


def test_publish_and_delete_reach_ids_subscribers(ps):
    topic = unique("bye")
    with subscribe(ps, topic, ids=True) as c:
        a = request(ps, "DELETE", "/pub/" + topic)
        assert a.json["closed"] == 1
        f = c.expect_close(1000, reply=True)
        assert f.close_reason == b"topic closed"


def test_a_failed_handshake_leaves_no_subscription(ps):
    topic = unique("refused")
    with pytest.raises(WSError):
        WSClient(ps.port, "/sub/" + topic, origin="http://evil.example")
    assert request(ps, "GET", "/pub/" + topic).json["subscribers"] == 0
