"""The websocket-publish handler (ws_publish.c): POST/PUT publish the body
to the topic named by the rest of the path, GET/HEAD tell the topic's
state, DELETE closes its subscribers; every refusal is a JSON error with
the right status and one info line."""

import json
import os
import socket
import subprocess

import pytest

import conftest
from conftest import serve
from topics import (request, publish, subscribe, pub_location, sub_location,
                    chat_location, topics_conf, unique)
from wsraw import OP_TEXT, OP_BINARY, recv_head, parse_head

SMALL = 1024            # WebSocketMaxMessageSize of /pub-small


def publish_conf(h):
    pwfile = os.path.join(h.root, "htpasswd")
    subprocess.run(["htpasswd", "-bc", pwfile, conftest.AUTH_USER,
                    conftest.AUTH_PASS], check=True, capture_output=True)
    os.chmod(pwfile, 0o644)
    # A directory of the DocumentRoot with the location's name: Apache's
    # path_info is then not the rest of the path after the location.
    os.makedirs(os.path.join(h.docroot, "pubdir"), exist_ok=True)
    return (topics_conf(h)
            + pub_location("/pub-small", "WebSocketMaxMessageSize 1K")
            + pub_location("/pub-hist", "WebSocketTopicHistory 5")
            + pub_location("/pub-denied", "Require ip 10.255.255.1")
            + pub_location("/pub-lrb", "LimitRequestBody 100")
            + pub_location("/pub-auth", 'AuthType Basic\nAuthName wstest\n'
                           'AuthBasicProvider file\nAuthUserFile "%s"\n'
                           'Require valid-user' % pwfile)
            + pub_location("/api/v1/pub") + pub_location("/pubdir"))


@pytest.fixture(scope="module")
def pub():
    yield from serve(publish_conf, loglevel="warn websocket:info")


def refusal_logged(h, mark, method, path, status, count=1):
    line = "WebSocket publish %s %s from 127.0.0.1 refused with %d" % (
        method, path, status)
    text = h.expect_log(line, mark)
    assert text.count(line) == count, text


# ---- publishing -------------------------------------------------------------

def test_post_reaches_the_subscriber_and_answers_json(pub):
    topic = unique("news")
    with subscribe(pub, topic) as c:
        a = request(pub, "POST", "/pub/" + topic, "hello, topic")
        assert a.status == 202, a
        assert a.header("Content-Type") == "application/json"
        body = a.json
        assert body["topic"] == topic
        assert body["bytes"] == len("hello, topic")
        assert body["type"] == "text"
        assert body["subscribers"] == 1
        epoch, seq = body["id"].split("-")
        assert len(epoch) == 8 and int(epoch, 16) >= 0 and int(seq) > 0
        assert c.recv_message() == (OP_TEXT, b"hello, topic")


def test_answer_counts_every_subscriber_and_none(pub):
    topic = unique("count")
    # (Not the same topic: a child's reader may be behind, and a message
    # published before a subscription must not reach it; see
    # test_pubsub.py for that.)
    assert publish(pub, unique("nobody"), "nobody")["subscribers"] == 0
    subs = [subscribe(pub, topic) for _ in range(3)]
    try:
        assert publish(pub, topic, "three")["subscribers"] == 3
        for c in subs:
            assert c.recv_message() == (OP_TEXT, b"three")
    finally:
        for c in subs:
            c.close()


@pytest.mark.parametrize("ctype,opcode", [
    ("text/plain", OP_TEXT),
    ("TEXT/HTML; charset=utf-8", OP_TEXT),
    ("application/json", OP_TEXT),
    ("application/vnd.api+json; charset=utf-8", OP_TEXT),
    ("application/octet-stream", OP_BINARY),
    ("application/x-www-form-urlencoded", OP_BINARY),   # curl -d
    ("image/png", OP_BINARY),
    (None, OP_BINARY),
])
def test_message_type_follows_content_type(pub, ctype, opcode):
    topic = unique("types")
    with subscribe(pub, topic) as c:
        a = request(pub, "POST", "/pub/" + topic, '{"a": 1}', ctype)
        assert a.status == 202, a
        assert a.json["type"] == ("text" if opcode == OP_TEXT else "binary")
        assert c.recv_message() == (opcode, b'{"a": 1}')


def test_put_publishes_like_post(pub):
    topic = unique("put")
    with subscribe(pub, topic) as c:
        a = request(pub, "PUT", "/pub/" + topic, b"\x00\x01\xff",
                    "application/octet-stream")
        assert a.status == 202 and a.json["bytes"] == 3, a
        assert c.recv_message() == (OP_BINARY, b"\x00\x01\xff")


def test_empty_body_is_an_empty_message(pub):
    topic = unique("empty")
    with subscribe(pub, topic) as c:
        a = request(pub, "POST", "/pub/" + topic, b"")
        assert a.status == 202 and a.json["bytes"] == 0, a
        assert c.recv_message() == (OP_TEXT, b"")


def test_chunked_body_within_the_limit(pub):
    topic = unique("chunked")
    body = b"x" * 300
    raw = ("POST /pub-small/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
           "Connection: close\r\n\r\n" % topic).encode()
    raw += b"".join(b"%x\r\n%s\r\n" % (len(body), body) for _ in range(3))
    raw += b"0\r\n\r\n"
    with subscribe(pub, topic) as c:
        status, answer = raw_exchange(pub, raw)
        assert status == 202, answer
        assert json.loads(answer)["bytes"] == 900
        assert c.recv_message() == (OP_TEXT, body * 3)


def test_body_as_large_as_the_limit_goes_through(pub):
    topic = unique("limit")
    with subscribe(pub, topic) as c:
        a = request(pub, "POST", "/pub-small/" + topic, b"y" * SMALL)
        assert a.status == 202, a
        assert c.recv_message() == (OP_TEXT, b"y" * SMALL)


def test_keepalive_connection_publishes_in_order(pub):
    import http.client
    topic = unique("keepalive")
    with subscribe(pub, topic) as c:
        conn = http.client.HTTPConnection("127.0.0.1", pub.port, timeout=10)
        try:
            for i in range(20):
                conn.request("POST", "/pub/" + topic, body=b"m%d" % i,
                             headers={"Content-Type": "text/plain"})
                r = conn.getresponse()
                assert r.status == 202
                r.read()
        finally:
            conn.close()
        assert [c.recv_message()[1] for _ in range(20)] == \
            [b"m%d" % i for i in range(20)]


def test_topic_is_the_decoded_rest_of_the_path(pub):
    with subscribe(pub, "a%20b/c%C3%A9") as c:
        body = publish(pub, "a%20b/c%C3%A9", "decoded")
        assert body["topic"] == "a b/c\u00e9"
        assert c.recv_message() == (OP_TEXT, b"decoded")


@pytest.mark.parametrize("path", ["/api/v1/pub/nested", "/pubdir/nested"])
def test_topic_is_what_follows_the_configuring_location(pub, path):
    """Under <Location /api/v1/pub>, and under a location named like a
    directory of the DocumentRoot (where Apache's path_info differs)."""
    a = request(pub, "POST", path, "where")
    assert a.status == 202, a
    assert a.json["topic"] == "nested"


def test_topic_in_json_is_escaped(pub):
    a = request(pub, "POST", '/pub/q%22b%5Cs%01t%FFu', "escape me")
    assert a.status == 202, a
    assert b"\\u0001" in a.body
    assert a.json["topic"] == 'q"b\\s\x01t\ufffdu'


def test_longest_topic_goes_through(pub):
    topic = "t" * 1024
    assert publish(pub, topic, "long")["topic"] == topic


# ---- the topic's state, and closing it ----------------------------------------

def test_get_tells_subscribers_over_the_server(pub):
    topic = unique("state")
    a = request(pub, "GET", "/pub/" + topic)
    assert a.status == 200, a
    assert a.json == {"topic": topic, "subscribers": 0}
    with subscribe(pub, topic), subscribe(pub, topic):
        assert request(pub, "GET", "/pub/" + topic).json["subscribers"] == 2


def test_get_tells_history_where_it_is_on(pub):
    topic = unique("hist")
    a = request(pub, "GET", "/pub-hist/" + topic)
    assert a.json["history"] == {"messages": 0, "last_id": None}, a
    ids = [publish(pub, topic, "h%d" % i)["id"] for i in range(7)]
    state = request(pub, "GET", "/pub-hist/" + topic).json
    # WebSocketTopicHistory 5: what a resume could get.
    assert state["history"] == {"messages": 5, "last_id": ids[-1]}, state
    assert "history" not in request(pub, "GET", "/pub/" + topic).json


def test_head_answers_like_get_without_a_body(pub):
    topic = unique("head")
    a = request(pub, "HEAD", "/pub/" + topic)
    assert a.status == 200 and a.body == b"", a
    assert a.header("Content-Type") == "application/json"


def test_delete_closes_the_topics_subscribers_with_1000(pub):
    topic, other = unique("doomed"), unique("spared")
    a1, a2, b = (subscribe(pub, topic), subscribe(pub, topic),
                 subscribe(pub, other))
    try:
        mark = pub.mark()
        d = request(pub, "DELETE", "/pub/" + topic)
        assert d.status == 200, d
        assert d.json == {"topic": topic, "closed": 2}
        for c in (a1, a2):
            f = c.expect_close(1000, reply=True)
            assert f.close_reason == b"topic closed"
        b.expect_silence()
        publish(pub, other, "still here")
        assert b.recv_message() == (OP_TEXT, b"still here")
        pub.expect_log("WebSocket topic %s closed by 127.0.0.1: its 2 "
                       "subscribers get 1000" % topic, mark)
    finally:
        for c in (a1, a2, b):
            c.close()


# ---- refusals ----------------------------------------------------------------

@pytest.mark.parametrize("method", ["PATCH", "OPTIONS", "PROPFIND", "BREW"])
def test_other_methods_get_405_with_allow(pub, method):
    mark = pub.mark()
    a = request(pub, method, "/pub/anything", "x")
    assert a.status == 405, a
    assert a.header("Allow") == "GET, HEAD, POST, PUT, DELETE"
    assert "method %s" % method in a.json["error"]
    refusal_logged(pub, mark, method, "/pub/anything", 405)


@pytest.mark.parametrize("path", ["/pub", "/pub/", "/pub-small"])
def test_no_topic_is_404(pub, path):
    mark = pub.mark()
    a = request(pub, "POST", path, "lost")
    assert a.status == 404, a
    assert "no topic" in a.json["error"]
    refusal_logged(pub, mark, "POST", path, 404)
    assert request(pub, "GET", path).status == 404


def test_topic_over_1024_bytes_is_414(pub):
    mark = pub.mark()
    path = "/pub/" + "t" * 1025
    a = request(pub, "POST", path, "too long")
    assert a.status == 414, a
    assert "1025 bytes" in a.json["error"]
    refusal_logged(pub, mark, "POST", path, 414)


def raw_exchange(h, raw, timeout=10):
    """Sends raw bytes, returns (status, body) of the answer, read until
    the server closes."""
    with socket.create_connection(("127.0.0.1", h.port), timeout=timeout) as s:
        s.sendall(raw)
        head, rest = recv_head(s)
        status, _, headers = parse_head(head)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, rest


def test_413_by_content_length_before_reading_the_body(pub):
    """The body is never sent: the answer must come without it."""
    topic = unique("big")
    mark = pub.mark()
    raw = ("POST /pub-small/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           "Content-Type: text/plain\r\nContent-Length: %d\r\n"
           "Expect: 100-continue\r\n\r\n" % (topic, SMALL + 1)).encode()
    status, body = raw_exchange(pub, raw)
    assert status == 413, body            # and no 100 Continue first
    assert json.loads(body)["error"] == ("the body is 1025 bytes, over "
                                         "WebSocketMaxMessageSize (1024 bytes)")
    refusal_logged(pub, mark, "POST", "/pub-small/" + topic, 413)
    assert request(pub, "GET", "/pub/" + topic).json["subscribers"] == 0


def test_413_while_reading_a_chunked_body(pub):
    """The terminating chunk never comes: the answer must not wait for
    it, and nothing is published."""
    topic = unique("bigchunks")
    mark = pub.mark()
    chunk = b"z" * 600
    raw = ("POST /pub-small/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
           % topic).encode() + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2
    with subscribe(pub, topic) as c:
        status, body = raw_exchange(pub, raw)
        assert status == 413, body
        assert "more than 1024 bytes" in json.loads(body)["error"]
        refusal_logged(pub, mark, "POST", "/pub-small/" + topic, 413)
        c.expect_silence()


def test_invalid_utf8_text_is_400(pub):
    topic = unique("utf8")
    mark = pub.mark()
    with subscribe(pub, topic) as c:
        a = request(pub, "POST", "/pub/" + topic, b"ok \xc3\x28 not",
                    "text/plain; charset=utf-8")
        assert a.status == 400, a
        assert "not valid UTF-8" in a.json["error"]
        refusal_logged(pub, mark, "POST", "/pub/" + topic, 400)
        c.expect_silence()
        # The same bytes as binary are a message.
        a = request(pub, "POST", "/pub/" + topic, b"ok \xc3\x28 not",
                    "application/octet-stream")
        assert a.status == 202
        assert c.recv_message() == (OP_BINARY, b"ok \xc3\x28 not")


def test_limit_request_body_is_apaches_own(pub):
    a = request(pub, "POST", "/pub-lrb/" + unique("lrb"), b"w" * 200)
    assert a.status == 413, a


def test_access_is_apaches(pub):
    topic = unique("auth")
    with subscribe(pub, topic) as c:
        assert request(pub, "POST", "/pub-denied/" + topic, "no").status == 403
        assert request(pub, "POST", "/pub-auth/" + topic, "no").status == 401
        import base64
        cred = base64.b64encode(("%s:%s" % (conftest.AUTH_USER,
                                            conftest.AUTH_PASS)).encode())
        a = request(pub, "POST", "/pub-auth/" + topic, "yes",
                    headers={"Authorization": "Basic " + cred.decode()})
        assert a.status == 202, a
        assert c.recv_message() == (OP_TEXT, b"yes")


# ---- servers of their own ----------------------------------------------------------

def test_topics_off_is_503(make_httpd):
    h = make_httpd(lambda h: "WebSocketTopicBuffer Off\n" + pub_location()
                   + sub_location())
    h.start()
    mark = h.mark()
    for method in ("POST", "GET", "DELETE"):
        a = request(h, method, "/pub/news", "x" if method == "POST" else None)
        assert a.status == 503, a
        assert "WebSocketTopicBuffer" in a.json["error"]
    refusal_logged(h, mark, "POST", "/pub/news", 503)
    # Subscribers cannot subscribe either: refused, and the log says why.
    from wsraw import WSClient
    WSClient(h.port, "/sub/news", expect_status=403).close()
    h.expect_log("pubsub: cannot subscribe to news: topics are off", mark)


def test_message_over_what_the_ring_carries_is_413(make_httpd):
    """WebSocketTopicBuffer 64K carries messages of up to 8K, under the
    default WebSocketMaxMessageSize; chat members get 1009 for one."""
    h = make_httpd(lambda h: "WebSocketTopicBuffer 64K\n" + pub_location()
                   + sub_location() + chat_location())
    h.start()
    with subscribe(h, "ring") as c:
        mark = h.mark()
        a = request(h, "POST", "/pub/ring", b"r" * 8193)
        assert a.status == 413, a
        assert "WebSocketTopicBuffer / 8" in a.json["error"]
        refusal_logged(h, mark, "POST", "/pub/ring", 413)
        assert publish(h, "ring", b"r" * 8192)["bytes"] == 8192
        assert c.recv_message() == (OP_TEXT, b"r" * 8192)
    from wsraw import WSClient
    with WSClient(h.port, "/chat/room") as a, WSClient(h.port, "/chat/room") as b:
        a.send_text("s" * 8193)
        a.expect_close(1009, reply=True)
        b.expect_silence()
