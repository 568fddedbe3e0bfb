"""Configuration: `apache2 -t` refuses broken plugins and bad directive
values with a message that says why; the deprecated directive name."""

import os

import pytest

import harness
from wsraw import WSClient, handshake, OP_BINARY


def loc(so, init, extra=""):
    return ("<Location /ws>\n    SetHandler websocket-handler\n"
            '    WebSocketHandler "%s" %s\n%s</Location>\n'
            % (so, init, extra))


def configtest(make_httpd, conf):
    h = make_httpd(lambda h: conf(h) if callable(conf) else conf)
    return h.configtest()


def test_good_config_syntax_ok(make_httpd):
    rc, out = configtest(make_httpd, lambda h: loc(h.echo_so, "echo_init"))
    assert rc == 0, out
    assert "Syntax OK" in out


def test_missing_plugin_file(make_httpd):
    missing = "/nonexistent/dir/mod_websocket_nothing.so"
    rc, out = configtest(make_httpd, loc(missing, "nothing_init"))
    assert rc != 0, out
    assert missing in out or "mod_websocket_nothing.so" in out, out


def test_missing_relative_plugin_file(make_httpd):
    rc, out = configtest(make_httpd, "<Location /ws>\n"
                         "    SetHandler websocket-handler\n"
                         "    WebSocketHandler modules/not_here.so x_init\n"
                         "</Location>\n")
    assert rc != 0, out
    assert "not_here.so" in out, out


def test_missing_symbol(make_httpd):
    rc, out = configtest(make_httpd,
                         lambda h: loc(h.echo_so, "no_such_init_symbol"))
    assert rc != 0, out
    assert "no_such_init_symbol" in out, out


@pytest.mark.parametrize("plugin,words", [
    ("init_null", ["init_null_init"]),
    ("bad_version", ["version"]),
    ("bad_size", ["size"]),
    ("null_on_message", ["on_message"]),
])
def test_invalid_plugin_refused(make_httpd, plugin, words):
    so = harness.test_plugin_so(plugin)
    assert os.path.exists(so), "t/plugins/%s.c not built" % plugin
    rc, out = configtest(make_httpd, loc(so, plugin + "_init"))
    assert rc != 0, out
    assert "Syntax OK" not in out
    for w in words:
        assert w.lower() in out.lower(), out
    # The file or the symbol is named.
    assert plugin + ".so" in out or plugin + "_init" in out, out


def test_larger_plugin_structure_accepted(make_httpd):
    """A plugin built against a later header (larger size, version 0 here)
    still loads: the module reads only the fields it knows."""
    so = harness.test_plugin_so("future")
    h = make_httpd(lambda h: loc(so, "future_init"))
    rc, out = h.configtest()
    assert rc == 0, out
    h.start()
    with WSClient(h.port, "/ws") as c:
        c.send_binary(b"later")
        assert c.recv_message() == (OP_BINARY, b"later")
        c.close_handshake(1000)


@pytest.mark.parametrize("directive", [
    "WebSocketHandler",
    "WebSocketMaxMessageSize abc",
    "WebSocketMaxMessageSize -5",
    "WebSocketOriginCheck Sometimes",
    "WebSocketAllowReservedStatusCodes Maybe",
    "WebSocketSendQueueLimit lots",
    "WebSocketCloseTimeout soon",
    "WebSocketCloseTimeout -1",
], ids=["handler-no-args", "size-alpha", "size-negative", "origin-mode",
        "reserved-flag", "queue-alpha", "timeout-alpha", "timeout-negative"])
def test_bad_directive_values(make_httpd, directive):
    rc, out = configtest(make_httpd,
                         lambda h: loc(h.echo_so, "echo_init",
                                       "    %s\n" % directive))
    assert rc != 0, out
    assert directive.split()[0] in out, out


def test_deprecated_max_message_size(make_httpd):
    h = make_httpd(lambda h: loc(harness.test_plugin_so("probe"),
                                 "probe_init", "    MaxMessageSize 1000\n"))
    rc, out = h.configtest()
    assert rc == 0, out
    assert "MaxMessageSize" in out and "deprecat" in out.lower(), out
    h.start()
    with WSClient(h.port, "/ws") as c:
        c.send_binary(b"x" * 1000)
        assert c.recv_message() == (OP_BINARY, b"x" * 1000)
        c.send_binary(b"x" * 1001)
        c.expect_close(1009)


def test_handler_without_plugin_is_an_error_not_a_crash(make_httpd):
    """SetHandler websocket-handler where no WebSocketHandler applies: the
    configuration loads (other locations may set the plugin), and each
    handshake there gets a 500 and one error line that says why."""
    h = make_httpd(lambda h: "<Location /noplugin>\n"
                   "    SetHandler websocket-handler\n</Location>\n")
    rc, out = h.configtest()
    assert rc == 0, out
    h.start()
    for i in range(2):
        mark = h.mark()
        r = handshake(h.port, "/noplugin")
        assert r.status == 500, r
        h.expect_log('"GET /noplugin HTTP/1.1" 500 ', mark, "access")
        lines = [l for l in h.since(mark).splitlines() if "[websocket:" in l]
        assert len(lines) == 1, lines
        assert "[websocket:error]" in lines[0], lines[0]
        assert "no WebSocketHandler" in lines[0], lines[0]
