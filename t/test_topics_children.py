"""Topics across the child processes of one server (event MPM, two
children): a message published in any child, by the publisher or by a
plugin, reaches subscribers in every child; the counts are the server's;
after a graceful restart new children carry on with the same ring, ids
and history."""

import contextlib

import pytest

from conftest import serve
from topics import (publish, request, subscribe, split_id, probe_pid,
                    topics_conf, sub_location, unique)
from wsraw import WSClient, OP_TEXT, wait_for

TWO_CHILDREN = """\
StartServers 2
ServerLimit 4
ThreadLimit 10
ThreadsPerChild 10
MaxRequestWorkers 20
MinSpareThreads 1
MaxSpareThreads 20
MaxConnectionsPerChild 0
"""


def children_conf(h):
    return topics_conf(h) + sub_location("/sub-hist",
                                         "WebSocketTopicHistory 100")


@pytest.fixture(scope="module")
def two():
    yield from serve(children_conf, mpm_conf=TWO_CHILDREN)


def probes_in_every_child(h, limit=300):
    """v2probe connections until each child serves one (the listener of
    whichever child accepts first takes a connection); {pid: conn}."""
    wait_for(lambda: len(h.children()) == 2, "two children", timeout=15)
    by_pid, extra = {}, []
    try:
        for _ in range(limit):
            c = WSClient(h.port, "/probe")
            pid = probe_pid(c)
            if pid in by_pid:
                extra.append(c)
            else:
                by_pid[pid] = c
            if len(by_pid) == 2:
                break
    finally:
        for c in extra:
            c.close()
    assert len(by_pid) == 2, "every connection went to one child"
    assert set(by_pid) <= set(h.children())
    return by_pid


def subscribe_probe(c, topic):
    """Subscribes a v2probe connection; done when it answers the next
    command (commands run in order)."""
    c.send_text("sub:" + topic)
    c.send_text("queued")
    assert c.recv_text().startswith("queued ")


@contextlib.contextmanager
def subscribed_in_both(h, topic):
    """A v2probe connection in each child, subscribed to topic, counted
    by the server; yields [(pid, conn), (pid, conn)]."""
    by_pid = probes_in_every_child(h)
    try:
        for c in by_pid.values():
            subscribe_probe(c, topic)
        assert request(h, "GET", "/pub/" + topic).json["subscribers"] == 2
        yield sorted(by_pid.items())
    finally:
        for c in by_pid.values():
            c.close()


def test_a_post_reaches_subscribers_in_every_child(two):
    topic = unique("everywhere")
    with subscribed_in_both(two, topic) as probes:
        for i in range(5):
            assert publish(two, topic, "post %d" % i)["subscribers"] == 2
        for _, c in probes:
            assert [c.recv_message() for _ in range(5)] == \
                [(OP_TEXT, b"post %d" % i) for i in range(5)]


def test_a_plugin_publish_reaches_the_other_child(two):
    topic = unique("crosschild")
    with subscribed_in_both(two, topic) as ((pa, a), (pb, b)):
        a.send_text("pubx:%s:from child %d" % (topic, pa))
        assert b.recv_message() == (OP_TEXT, b"from child %d" % pa)
        a.expect_silence()                 # excluded itself
        b.send_text("pub:%s:from child %d" % (topic, pb))
        assert a.recv_message() == (OP_TEXT, b"from child %d" % pb)
        assert b.recv_message() == (OP_TEXT, b"from child %d" % pb)


def test_chat_rooms_span_the_children(two):
    """A chat member's message reaches listeners of its room's topic in
    both children (probes subscribed to chat/<room>)."""
    room = unique("room")
    with subscribed_in_both(two, "chat/" + room) as probes, \
            WSClient(two.port, "/chat/" + room) as a, \
            WSClient(two.port, "/chat/" + room) as b:
        a.send_text("to the room")
        assert b.recv_message() == (OP_TEXT, b"to the room")
        for _, c in probes:
            assert c.recv_message() == (OP_TEXT, b"to the room")
        a.expect_silence()


@pytest.mark.slow
def test_graceful_restart_keeps_ring_ids_and_history(two):
    topic = unique("restart")
    old = subscribe(two, topic, ids=True, path="/sub-hist")
    first = publish(two, topic, "before the restart")["id"]
    assert split_id(old.recv_message()[1])[0] == first
    old_children = set(two.children())
    two.graceful()
    # The old generation's WebSockets are told the server is going away.
    old.expect_close(1001, reply=True)
    wait_for(lambda: not (set(two.children()) & old_children),
             "the old children to exit", timeout=20)
    ids = [publish(two, topic, "after %d" % i)["id"] for i in range(3)]
    assert ids[0].split("-")[0] == first.split("-")[0]       # same epoch
    # A client that saw the first message resumes from the ring.
    with subscribe(two, topic, ids=True, last_id=first,
                   path="/sub-hist") as c:
        got = [split_id(c.recv_message()[1]) for _ in range(3)]
        assert [g[0] for g in got] == ids
        assert all(g[1] is None for g in got)
    # New subscribers in both new children get what any child publishes.
    with subscribed_in_both(two, topic) as ((pa, a), (pb, b)):
        publish(two, topic, "to the new generation")
        for c in (a, b):
            assert c.recv_message() == (OP_TEXT, b"to the new generation")
        a.send_text("pubx:%s:new child %d" % (topic, pa))
        assert b.recv_message() == (OP_TEXT, b"new child %d" % pa)
