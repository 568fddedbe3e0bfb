"""What the tests of topics share: the locations of the publisher, pubsub
and chat, an HTTP client for /pub, and the id form of pubsub messages."""

import http.client
import json
import os

import harness
from wsraw import WSClient, OP_TEXT

IDS = "pubsub.ids"


def location(path, handler, so=None, init=None, extra=""):
    lines = ["<Location %s>" % path, "    SetHandler %s" % handler]
    if so:
        lines.append('    WebSocketHandler "%s" %s' % (so, init))
    lines += ["    " + l for l in extra.strip().splitlines() if l.strip()]
    lines.append("</Location>")
    return "\n".join(lines) + "\n"


def pub_location(path="/pub", extra=""):
    return location(path, "websocket-publish", extra=extra)


def sub_location(path="/sub", extra=""):
    return location(path, "websocket-handler", harness.plugin_so("pubsub"),
                    "pubsub_init", extra)


def chat_location(path="/chat", extra=""):
    return location(path, "websocket-handler", harness.plugin_so("chat"),
                    "chat_init", extra)


def probe_location(path="/probe", extra=""):
    return location(path, "websocket-handler",
                    harness.test_plugin_so("v2probe"), "v2probe_init", extra)


def topics_conf(h, extra=""):
    """The issue's three locations, and the probe of API version 2."""
    return (pub_location() + sub_location() + chat_location()
            + probe_location() + extra)


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    @property
    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "Answer(%d, %r)" % (self.status, self.body[:200])


def request(h, method, path, body=None, ctype="text/plain", headers=None,
            timeout=10):
    """One HTTP request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if body is not None and ctype is not None:
            hdrs["Content-Type"] = ctype
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()},
                      r.read())
    finally:
        conn.close()


def publish(h, topic, body, ctype="text/plain", path="/pub", **kw):
    """POSTs body to topic; asserts the 202 and returns its JSON."""
    a = request(h, "POST", "%s/%s" % (path, topic), body, ctype, **kw)
    assert a.status == 202, a
    return a.json


def subscribe(h, topic, ids=False, last_id=None, path="/sub", **kw):
    """A pubsub subscriber of topic (with the ids subprotocol)."""
    url = "%s/%s" % (path, topic)
    if last_id is not None:
        url += "?last_id=" + last_id
    return WSClient(h.port, url, protocols=IDS if ids else None, **kw)


def split_id(payload):
    """An ids-form message -> (id, gap or None, message bytes)."""
    head, sep, body = payload.partition(b"\n\n")
    assert sep, "no blank line in %r" % payload[:80]
    fields = dict(line.split(b": ", 1) for line in head.split(b"\n"))
    assert set(fields) <= {b"id", b"gap"}, fields
    gap = fields.get(b"gap")
    return (fields[b"id"].decode(), gap.decode() if gap else None, body)


def seq_of(msg_id):
    return int(msg_id.split("-")[1])


def recv_texts(c, n, timeout=10):
    out = []
    for _ in range(n):
        op, data = c.recv_message(timeout)
        assert op == OP_TEXT, (op, data[:60])
        out.append(data.decode("utf-8"))
    return out


def probe_pid(c):
    """The pid of the child serving a v2probe connection."""
    c.send_text("info")
    info = c.recv_text()
    return int(info.split("pid=")[1].split()[0])


def unique(prefix):
    return "%s-%s" % (prefix, os.urandom(4).hex())
