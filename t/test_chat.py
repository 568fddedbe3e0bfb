"""The chat plugin (plugins/chat.c): a text message of a member reaches
every other member of its room and nobody else; the sender does not get
it back; binary is refused with 1003."""

import pytest

from conftest import serve
from topics import (chat_location, topics_conf, publish, subscribe,
                    recv_texts, unique)
from wsraw import WSClient, OP_TEXT


def chat_conf(h):
    return topics_conf(h) + chat_location(
        "/support", "WebSocketParam topic_prefix support/")


@pytest.fixture(scope="module")
def chat():
    yield from serve(chat_conf)


def member(h, room, path="/chat"):
    return WSClient(h.port, "%s/%s" % (path, room))


def test_a_message_reaches_the_others_of_the_room_only(chat):
    room, other = unique("room"), unique("other")
    a1, a2, a3 = (member(chat, room) for _ in range(3))
    b = member(chat, other)
    try:
        a1.send_text("hello from a1")
        assert a2.recv_message() == (OP_TEXT, b"hello from a1")
        assert a3.recv_message() == (OP_TEXT, b"hello from a1")
        a2.send_text("a2 answers")
        assert a1.recv_message() == (OP_TEXT, b"a2 answers")
        assert a3.recv_message() == (OP_TEXT, b"a2 answers")
        # No echo to the senders, nothing to the other room.
        for c in (a1, a2, a3, b):
            c.expect_silence()
        b.send_text("in the other room")
        for c in (a1, a2, a3):
            c.expect_silence()
    finally:
        for c in (a1, a2, a3, b):
            c.close()


def test_messages_keep_their_order_and_bytes(chat):
    room = unique("order")
    with member(chat, room) as a, member(chat, room) as b:
        texts = ["m%d \u00e9\U0001F600" % i for i in range(100)]
        for t in texts:
            a.send_text(t)
        assert recv_texts(b, 100) == texts


def test_every_member_sends_and_gets_the_others(chat):
    room = unique("five")
    members = [member(chat, room) for _ in range(5)]
    try:
        for i, c in enumerate(members):
            c.send_text("from %d" % i)
        for i, c in enumerate(members):
            got = sorted(recv_texts(c, 4))
            assert got == sorted("from %d" % j for j in range(5) if j != i)
            c.expect_silence()
    finally:
        for c in members:
            c.close()


def test_binary_is_refused_with_1003(chat):
    room = unique("bin")
    with member(chat, room) as a, member(chat, room) as b:
        a.send_binary(b"\x00\x01")
        f = a.expect_close(1003, reply=True)
        assert f.close_reason == b"chat takes text messages only"
        b.expect_silence()


@pytest.mark.parametrize("path", ["/chat", "/chat/"])
def test_no_room_is_refused(chat, path):
    WSClient(chat.port, path, expect_status=403).close()


def test_rooms_are_topics_chat_slash_room(chat):
    """Documented: /sub/chat/<room> reads a room, /pub/chat/<room> posts
    into it (the README says how to deny both)."""
    room = unique("ns")
    with member(chat, room) as a, subscribe(chat, "chat/" + room) as s:
        a.send_text("seen by /sub")
        assert s.recv_message() == (OP_TEXT, b"seen by /sub")
        assert publish(chat, "chat/" + room, "announcement")["subscribers"] == 2
        assert a.recv_message() == (OP_TEXT, b"announcement")


def test_topic_prefix_keeps_locations_apart(chat):
    room = unique("apart")
    with member(chat, room) as a, member(chat, room, "/support") as s1, \
            member(chat, room, "/support") as s2:
        s1.send_text("support only")
        assert s2.recv_message() == (OP_TEXT, b"support only")
        a.expect_silence()
        a.send_text("chat only")
        s1.expect_silence()
        s2.expect_silence()
