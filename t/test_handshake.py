"""The opening handshake: accepted, refused, and what the refusals say."""

import base64
import json
import re
import socket

import types

import pytest

import harness
import wsraw
from wsraw import WSClient, handshake, http_request, request_bytes, ws_headers
from conftest import AUTH_USER, AUTH_PASS, TRUSTED

VERSIONS_HEADER = "13, 8, 7"


def ws_log_lines(text):
    return [l for l in text.splitlines() if "[websocket:" in l]


def refusal_done(srv, mark, r):
    """Waits for the access log line of the refused request (status
    r.status), written when httpd is done with it: whatever the request
    logged or made the plugin do has happened by then."""
    srv.expect_log('" %d ' % r.status, mark, "access")


def assert_refusal_logged(srv, mark, r, *words):
    """Exactly one websocket line appeared in the error log for the
    refused request r (since `mark`), and it names every word
    (case-insensitive)."""
    refusal_done(srv, mark, r)
    text = srv.since(mark)
    lines = ws_log_lines(text)
    assert len(lines) == 1, "expected one [websocket:...] line, got:\n%s" \
        % text
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]
    return lines[0]


def b64(n):
    return base64.b64encode(b"k" * n).decode()


# ---- accepted ---------------------------------------------------------------

def test_accept_rfc_sample_key(srv):
    r = handshake(srv.port, "/echo", key="dGhlIHNhbXBsZSBub25jZQ==")
    assert r.status == 101, r
    assert r.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert r.header("Upgrade").lower() == "websocket"
    assert "upgrade" in [t.strip().lower()
                         for t in r.header("Connection").split(",")]
    assert not r.has("Sec-WebSocket-Protocol")
    assert not r.has("Transfer-Encoding")
    assert not r.has("Sec-WebSocket-Version")


@pytest.mark.parametrize("version", ["13", "8", "7"])
def test_supported_versions_echo(srv, version):
    with WSClient(srv.port, "/echo", version=version) as c:
        assert c.response.status == 101
        assert c.buf == b"", "bytes after the 101 head: %r" % c.buf
        c.send_text("hello v" + version)
        assert c.recv_message() == (wsraw.OP_TEXT,
                                    ("hello v" + version).encode())
        c.close_handshake(1000)


@pytest.mark.parametrize("upgrade", ["WebSocket", "WEBSOCKET",
                                     "websocket, foo/2", "foo, WebSocket"])
def test_upgrade_token_list_case_insensitive(srv, upgrade):
    r = handshake(srv.port, "/echo", upgrade=upgrade)
    assert r.status == 101, r


@pytest.mark.parametrize("connection", ["upgrade", "UPGRADE",
                                        "keep-alive, Upgrade",
                                        "Upgrade, keep-alive",
                                        "keep-alive,upgrade"])
def test_connection_token_list(srv, connection):
    r = handshake(srv.port, "/echo", connection=connection)
    assert r.status == 101, r


def test_first_frame_in_same_packet_as_handshake(srv):
    """Bytes after the request head belong to the WebSocket stream."""
    frame = wsraw.build_frame(wsraw.OP_TEXT, b"early bird")
    with WSClient(srv.port, "/echo", early=frame) as c:
        assert c.recv_message(timeout=5) == (wsraw.OP_TEXT, b"early bird")
        c.close_handshake(1000)


def test_upgrade_after_request_on_keepalive_connection(srv):
    """A plain request, then the handshake on the same TCP connection."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(request_bytes("/", [("Host", "127.0.0.1")]))
        head, rest = wsraw.recv_head(s)
        status, _, headers = wsraw.parse_head(head)
        assert status == 200
        n = int(dict((k.lower(), v) for k, v in headers)["content-length"])
        while len(rest) < n:
            rest += s.recv(4096)
        assert rest[:n] == b"<html>static</html>\n"
        key = wsraw.make_key()
        s.sendall(request_bytes("/echo", ws_headers(srv.port, key=key))
                  + wsraw.build_frame(wsraw.OP_TEXT, b"same conn"))
        head, rest = wsraw.recv_head(s, rest[n:])
        status, _, headers = wsraw.parse_head(head)
        assert status == 101
        assert dict(headers)["Sec-WebSocket-Accept"] == wsraw.accept_for(key)
        while len(rest) < 11:
            rest += s.recv(4096)
        assert rest == b"\x81\x09same conn"


def test_relative_plugin_path_under_serverroot(srv):
    with WSClient(srv.port, "/relecho") as c:
        c.send_binary(b"\x00\x01rel")
        assert c.recv_message() == (wsraw.OP_BINARY, b"\x00\x01rel")
        c.close_handshake(1000)


def test_static_files_unaffected(srv):
    r = http_request(srv.port, request_bytes("/", [("Host", "127.0.0.1")]))
    assert r.status == 200
    assert r.body == b"<html>static</html>\n"


# ---- 426 --------------------------------------------------------------------

def test_plain_get_gets_426(srv):
    r = http_request(srv.port, request_bytes("/echo", [
        ("Host", "127.0.0.1:%d" % srv.port)]))
    assert r.status == 426, r
    assert r.header("Upgrade", "").lower() == "websocket"


def test_websocket_headers_without_upgrade_get_426(srv):
    h = [x for x in ws_headers(srv.port) if x[0] != "Upgrade"]
    r = http_request(srv.port, request_bytes("/echo", h))
    assert r.status == 426, r
    assert r.header("Upgrade", "").lower() == "websocket"


@pytest.mark.parametrize("version", ["12", "14", "0", "99"])
def test_unsupported_numeric_version_426(srv, version):
    mark = srv.mark()
    r = handshake(srv.port, "/probe", version=version,
                  extra=[("X-Conn-Id", "v" + version)])
    assert r.status == 426, r
    assert r.header("Sec-WebSocket-Version") == VERSIONS_HEADER
    assert_refusal_logged(srv, mark, r, "version")
    assert "connect id=v%s " % version not in srv.since(mark, "test")


# ---- 400 --------------------------------------------------------------------

@pytest.mark.parametrize("method", ["POST", "PUT", "OPTIONS"])
def test_non_get_is_400(srv, method):
    hdrs = ws_headers(srv.port) + [("Content-Length", "0")]
    r = http_request(srv.port, request_bytes("/echo", hdrs, method=method))
    assert r.status == 400, r


def test_http10_is_400(srv):
    r = handshake(srv.port, "/echo", http_version="HTTP/1.0")
    assert r.status == 400, r


@pytest.mark.parametrize("connection", [None, "keep-alive", "close",
                                        "upgrades", "Upgrade-Insecure"])
def test_bad_connection_is_400(srv, connection):
    r = handshake(srv.port, "/echo", connection=connection)
    assert r.status == 400, r


@pytest.mark.parametrize("key", [
    None, "", b64(15), b64(17), b64(32), "short",
    "!!!!!!!!!!!!!!!!!!!!!!==",             # right length, not base64
    "dGhlIHNhbXBsZSBub25jZQ",               # 16 bytes, padding missing
    "dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ==",  # two keys
], ids=["missing", "empty", "15bytes", "17bytes", "32bytes", "short",
        "not-base64", "unpadded", "two-keys"])
def test_bad_key_is_400(srv, key):
    hdrs = [x for x in ws_headers(srv.port) if x[0] != "Sec-WebSocket-Key"]
    if key is not None:
        hdrs.append(("Sec-WebSocket-Key", key))
    mark = srv.mark()
    r = http_request(srv.port, request_bytes("/echo", hdrs))
    assert r.status == 400, r
    assert_refusal_logged(srv, mark, r, "Sec-WebSocket-Key")


@pytest.mark.parametrize("version", [None, "abc", "", "13a", "-13"],
                         ids=["missing", "alpha", "empty", "13a", "minus"])
def test_bad_version_is_400_with_versions(srv, version):
    mark = srv.mark()
    r = handshake(srv.port, "/echo", version=version)
    assert r.status == 400, r
    assert r.header("Sec-WebSocket-Version") == VERSIONS_HEADER
    assert_refusal_logged(srv, mark, r, "version")


# ---- subprotocols -----------------------------------------------------------

def info(c):
    c.send_text("info")
    return json.loads(c.recv_text())


def test_protocol_preferred_by_plugin(srv):
    with WSClient(srv.port, "/probe", protocols="chat, probe.v2") as c:
        assert c.response.header("Sec-WebSocket-Protocol") == "probe.v2"
        i = info(c)
        assert i["count"] == 2
        assert i["protocols"] == ["chat", "probe.v2"]
        assert i["out_of_range"] is None
        c.close_handshake(1000)


def test_protocol_first_offered(srv):
    with WSClient(srv.port, "/probe", protocols="chat,superchat") as c:
        assert c.response.header("Sec-WebSocket-Protocol") == "chat"
        assert info(c)["protocols"] == ["chat", "superchat"]
        c.close_handshake(1000)


def test_protocol_header_lines_combined(srv):
    with WSClient(srv.port, "/probe", protocols="a1",
                  headers=[("Sec-WebSocket-Protocol", "b2, c3")]) as c:
        assert c.response.header("Sec-WebSocket-Protocol") == "a1"
        assert info(c)["protocols"] == ["a1", "b2", "c3"]
        c.close_handshake(1000)


def test_protocol_empty_elements_tolerated(srv):
    with WSClient(srv.port, "/probe", protocols="chat, , x,") as c:
        assert c.response.header("Sec-WebSocket-Protocol") == "chat"
        i = info(c)
        assert i["protocols"] == ["chat", "x"]
        assert i["count"] == 2
        c.close_handshake(1000)


def test_no_protocol_header_when_plugin_chooses_none(srv):
    with WSClient(srv.port, "/probe", protocols="chat",
                  headers=[("X-No-Protocol", "1")]) as c:
        assert not c.response.has("Sec-WebSocket-Protocol")
        assert info(c)["count"] == 1
        c.close_handshake(1000)


def test_plugin_choice_not_offered_is_ignored(srv):
    mark = srv.mark()
    with WSClient(srv.port, "/probe", protocols="chat",
                  headers=[("X-Pick", "not-offered")]) as c:
        assert not c.response.has("Sec-WebSocket-Protocol")
        c.close_handshake(1000)
    text = srv.wait_log(lambda t: "[websocket:warn" in t, mark)
    assert "[websocket:warn" in text and "not-offered" in text, text


def test_no_protocol_offered(srv):
    with WSClient(srv.port, "/probe") as c:
        assert not c.response.has("Sec-WebSocket-Protocol")
        i = info(c)
        assert i["count"] == 0 and i["protocols"] == []
        assert i["out_of_range"] is None
        c.close_handshake(1000)


@pytest.mark.parametrize("protocols", ["a b", "a;b", '"x"', "a/b", "chat, a b",
                                       "a=b", "x{y}"])
def test_invalid_protocol_tokens_400(srv, protocols):
    r = handshake(srv.port, "/probe", protocols=protocols,
                  extra=[("X-Conn-Id", "badproto")])
    assert r.status == 400, r


# ---- refusals: origin, plugin, access control -------------------------------

def test_same_origin_accepted(srv):
    with WSClient(srv.port, "/probe", origin=srv.origin) as c:
        c.close_handshake(1000)


def test_absent_origin_accepted(srv):
    r = handshake(srv.port, "/probe")
    assert r.status == 101


@pytest.mark.parametrize("origin", [
    "http://evil.example", "https://127.0.0.1:{port}", "http://127.0.0.1:1",
    "http://127.0.0.1", "null", "http://localhost:{port}"])
def test_cross_origin_refused_403(srv, origin):
    origin = origin.format(port=srv.port)
    mark = srv.mark()
    r = handshake(srv.port, "/probe", origin=origin,
                  extra=[("X-Conn-Id", "origin")])
    assert r.status == 403, r
    assert_refusal_logged(srv, mark, r, "Origin")
    assert "connect id=origin " not in srv.since(mark, "test")


@pytest.mark.parametrize("version", ["7", "8"])
def test_old_versions_use_sec_websocket_origin(srv, version):
    bad = handshake(srv.port, "/probe", version=version,
                    extra=[("Sec-WebSocket-Origin", "http://evil.example")])
    assert bad.status == 403, bad
    good = handshake(srv.port, "/probe", version=version,
                     extra=[("Sec-WebSocket-Origin", srv.origin)])
    assert good.status == 101, good


@pytest.mark.parametrize("origin,status", [
    (TRUSTED[0], 101), (TRUSTED[1], 101), ("http://evil.example", 403),
    ("HTTP://GOOD.Example", 101), ("https://good.example", 403),
    ("http://also.example:8443", 403), ("https://also.example", 403),
    ("http://good.example:80", 403)])
def test_trusted_origins(srv, origin, status):
    r = handshake(srv.port, "/probe/trusted", origin=origin)
    assert r.status == status, r


def test_origin_check_off(srv):
    r = handshake(srv.port, "/probe/anyorigin", origin="http://evil.example")
    assert r.status == 101, r


def test_plugin_refusal_is_403_without_disconnect(srv):
    mark = srv.mark()
    r = handshake(srv.port, "/probe", extra=[("X-Refuse", "1"),
                                             ("X-Conn-Id", "refused1")])
    assert r.status == 403, r
    assert_refusal_logged(srv, mark, r)
    log = srv.since(mark, "test")
    assert "refuse id=refused1" in log
    assert "disconnect id=refused1" not in log


def test_require_all_denied_before_plugin(srv):
    mark = srv.mark()
    r = handshake(srv.port, "/probe/denied", extra=[("X-Conn-Id", "denied")])
    assert r.status == 403, r
    refusal_done(srv, mark, r)
    assert "id=denied" not in srv.since(mark, "test")


def test_basic_auth_required(srv):
    r = handshake(srv.port, "/probe/auth")
    assert r.status == 401, r
    assert "basic" in r.header("WWW-Authenticate", "").lower()


@pytest.mark.parametrize("password,status", [(AUTH_PASS, 101),
                                             ("wrong", 401)])
def test_basic_auth_credentials(srv, password, status):
    cred = base64.b64encode(("%s:%s" % (AUTH_USER, password)).encode())
    r = handshake(srv.port, "/probe/auth",
                  extra=[("Authorization", "Basic " + cred.decode())])
    assert r.status == status, r


# ---- on_connect: headers ----------------------------------------------------

def test_header_set_in_on_connect(srv):
    with WSClient(srv.port, "/probe",
                  headers=[("X-Echo-Header", "v=1; token")]) as c:
        assert c.response.header("X-Echoed") == "v=1; token"
        c.close_handshake(1000)


def test_request_and_header_get(srv):
    with WSClient(srv.port, "/probe/sub/path?a=1&b=two",
                  headers=[("X-Info", "hello info")]) as c:
        i = info(c)
        assert i["uri"] == "/probe/sub/path"
        assert i["args"] == "a=1&b=two"
        assert i["method"] == "GET"
        assert i["protocol"] == "HTTP/1.1"
        assert i["x_info"] == "hello info"
        assert i["x_info_lower"] == "hello info"
        assert i["missing"] is None
        assert i["host"] == "127.0.0.1:%d" % srv.port
        assert i["server_version"] >= 1
        assert i["server_size"] >= 8 + 8 * 9
        c.close_handshake(1000)


def test_header_and_protocol_set_after_connect_harmless(srv):
    with WSClient(srv.port, "/probe") as c:
        c.send_text("lateset")
        assert c.recv_text() == "lateset ok"
        c.send_text("still here")
        assert c.recv_text() == "still here"
        c.close_handshake(1000)


def test_access_log_line_per_websocket(srv):
    mark = srv.mark()
    path = "/echo?accesslog=%d" % id(mark)
    for _ in range(3):
        with WSClient(srv.port, path) as c:
            c.send_text("x")
            c.recv_message()
            c.close_handshake(1000)
    text = srv.wait_log(lambda t: t.count(path) >= 3, mark, "access")
    lines = [l for l in text.splitlines() if path in l]
    assert len(lines) == 3, text
    for l in lines:
        m = re.search(r'" (\d{3}) \S+ (\d+)$', l)
        assert m and m.group(1) == "101", l


# ---- hardening: method, body, version range, origins ------------------------

def test_head_is_400(srv):
    """httpd gives HEAD the method number of GET (and sets header_only):
    a HEAD with the WebSocket headers must not be upgraded."""
    mark = srv.mark()
    r = http_request(srv.port, request_bytes(
        "/probe", ws_headers(srv.port, extra=[("X-Conn-Id", "head")]),
        method="HEAD"), read_body=False)
    assert r.status == 400, r
    assert_refusal_logged(srv, mark, r, "HEAD")
    assert "connect id=head " not in srv.since(mark, "test")


@pytest.mark.parametrize("body_headers,body", [
    ([("Content-Length", "9")], wsraw.build_frame(wsraw.OP_TEXT, b"bod")),
    ([("Transfer-Encoding", "chunked")], b"9\r\n" + wsraw.build_frame(
        wsraw.OP_TEXT, b"bod") + b"\r\n0\r\n\r\n"),
], ids=["content-length", "chunked"])
def test_request_with_body_is_400(srv, body_headers, body):
    """Bytes of a request body must not be read as WebSocket frames."""
    mark = srv.mark()
    hdrs = ws_headers(srv.port, extra=[("X-Conn-Id", "body")]) + body_headers
    r = http_request(srv.port, request_bytes("/probe", hdrs) + body)
    assert r.status == 400, r
    assert_refusal_logged(srv, mark, r, body_headers[0][0])
    assert "connect id=body " not in srv.since(mark, "test")


def test_content_length_zero_is_no_body(srv):
    hdrs = ws_headers(srv.port) + [("Content-Length", "0")]
    frame = wsraw.build_frame(wsraw.OP_TEXT, b"after cl0")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(request_bytes("/echo", hdrs) + frame)
        head, rest = wsraw.recv_head(s)
        assert wsraw.parse_head(head)[0] == 101
        while len(rest) < 11:
            rest += s.recv(4096)
        assert rest == b"\x81\x09after cl0"


@pytest.mark.parametrize("version", ["256", "999"])
def test_version_outside_0_255_is_400(srv, version):
    """RFC 6455 4.1: the version is a number from 0 to 255; anything else
    is malformed (400), not an unsupported version (426)."""
    mark = srv.mark()
    r = handshake(srv.port, "/echo", version=version)
    assert r.status == 400, r
    assert r.header("Sec-WebSocket-Version") == VERSIONS_HEADER
    assert_refusal_logged(srv, mark, r, "version", version)


def test_version_255_is_426(srv):
    r = handshake(srv.port, "/echo", version="255")
    assert r.status == 426, r


@pytest.mark.parametrize("version", ["7", "8"])
@pytest.mark.parametrize("header", ["Origin", "Sec-WebSocket-Origin"])
def test_old_versions_check_either_origin_header(srv, version, header):
    """Drafts 11 and 12 send version 8 with Origin, drafts 7 to 10 send
    Sec-WebSocket-Origin: whichever is present is checked."""
    mark = srv.mark()
    bad = handshake(srv.port, "/probe", version=version,
                    extra=[(header, "http://evil.example")])
    assert bad.status == 403, bad
    assert_refusal_logged(srv, mark, bad, header, "evil.example")
    good = handshake(srv.port, "/probe", version=version,
                     extra=[(header, srv.origin)])
    assert good.status == 101, good


def test_both_origin_headers_checked(srv):
    r = handshake(srv.port, "/probe", origin=srv.origin,
                  extra=[("Sec-WebSocket-Origin", "http://evil.example")])
    assert r.status == 403, r


def test_dns_rebinding_refused(srv):
    """A page of evil.example whose name now resolves to this server: Host
    and Origin agree, but neither is a name of the server."""
    mark = srv.mark()
    evil = "evil.example:%d" % srv.port
    hdrs = [(k, evil if k == "Host" else v)
            for k, v in ws_headers(srv.port, origin="http://" + evil,
                                   extra=[("X-Conn-Id", "rebind")])]
    r = http_request(srv.port, request_bytes("/probe", hdrs))
    assert r.status == 403, r
    line = assert_refusal_logged(srv, mark, r, "Origin", "evil.example")
    assert "127.0.0.1:%d" % srv.port in line, line
    assert "connect id=rebind " not in srv.since(mark, "test")


def test_refusal_log_names_useragent_ip(make_httpd):
    """Behind mod_remoteip, the log line names the client, not the proxy."""
    def conf(h):
        return ("LoadModule remoteip_module %s/mod_remoteip.so\n"
                "RemoteIPHeader X-Forwarded-For\n"
                "RemoteIPInternalProxy 127.0.0.1\n"
                '<Location /echo>\n    SetHandler websocket-handler\n'
                '    WebSocketHandler "%s" echo_init\n</Location>\n'
                % (harness.MODDIR, h.echo_so))
    h = make_httpd(conf).start()
    mark = h.mark()
    r = handshake(h.port, "/echo", origin="http://evil.example",
                  extra=[("X-Forwarded-For", "203.0.113.7")])
    assert r.status == 403, r
    line = assert_refusal_logged(h, mark, r, "Origin")
    assert "from 203.0.113.7 " in line, line


# WebSocketOriginCheck Same against the server's names: two name-based
# virtual hosts on one port, the first being the default one.
def names_conf(h):
    probe = harness.test_plugin_so("probe")
    loc = ('    <Location /probe>\n        SetHandler websocket-handler\n'
           '        WebSocketHandler "%s" probe_init\n    </Location>\n'
           % probe)
    return ("<VirtualHost 127.0.0.1:%d>\n"
            "    ServerName https://ws.example.com:443\n"
            "    ServerAlias alias.example.com *.wild.example\n%s"
            "</VirtualHost>\n"
            "<VirtualHost 127.0.0.1:%d>\n"
            "    ServerName plain.example:8080\n%s"
            "</VirtualHost>\n"
            "<VirtualHost 127.0.0.1:%d>\n"
            "    ServerName noport.example\n%s"
            "</VirtualHost>\n"
            "<VirtualHost 127.0.0.1:%d>\n"
            "    ServerName https://offload.example\n%s"
            "</VirtualHost>\n"
            % (h.port, loc, h.port, loc, h.port, loc, h.port, loc))


@pytest.fixture(scope="module")
def names_srv():
    from conftest import serve
    yield from serve(names_conf)


@pytest.mark.parametrize("host,origin,status", [
    # TLS offload: a plain-http vhost whose public name is https on 443.
    ("ws.example.com", "https://ws.example.com", 101),
    ("ws.example.com", "HTTPS://WS.Example.COM", 101),
    ("ws.example.com", "https://ws.example.com:443", 101),
    ("ws.example.com", "http://ws.example.com", 403),
    ("ws.example.com", "http://ws.example.com:{port}", 403),
    ("ws.example.com", "https://ws.example.com:8443", 403),
    # ServerAlias, exact and wildcard.
    ("alias.example.com", "https://alias.example.com", 101),
    ("ws.example.com", "https://alias.example.com", 101),
    ("x.wild.example", "https://x.wild.example", 101),
    ("ws.example.com", "https://a.b.wild.example", 101),
    ("wild.example", "https://wild.example", 403),
    ("ws.example.com", "https://xwild.example", 403),
    # DNS rebinding lands on the default (first) virtual host.
    ("evil.example:{port}", "http://evil.example:{port}", 403),
    ("evil.example", "https://evil.example", 403),
    # The port of ServerName, not the one the connection came in on.
    ("plain.example:8080", "http://plain.example:8080", 101),
    ("plain.example:8080", "http://plain.example:8081", 403),
    ("plain.example", "http://plain.example", 403),
    ("plain.example:8080", "http://plain.example:{port}", 403),
    ("plain.example:8080", "https://plain.example:8080", 403),
    # No port in ServerName: the one the connection came in on.
    ("noport.example", "http://noport.example:{port}", 101),
    ("noport.example", "http://noport.example", 403),
    # A scheme without a port: the scheme's default port.
    ("offload.example", "https://offload.example", 101),
    ("offload.example", "https://offload.example:{port}", 403),
    ("offload.example", "http://offload.example:{port}", 403),
    # Not an origin at all.
    ("ws.example.com", "https://ws.example.com/", 403),
    ("ws.example.com", "https://user@ws.example.com", 403),
    ("ws.example.com", "https://ws.example.com:", 403),
    ("ws.example.com", "https://ws.example.com:0443x", 403),
    ("ws.example.com", "null", 403),
])
def test_same_origin_uses_server_names(names_srv, host, origin, status):
    port = names_srv.port
    host, origin = host.format(port=port), origin.format(port=port)
    hdrs = [(k, host if k == "Host" else v)
            for k, v in ws_headers(port, origin=origin)]
    r = http_request(port, request_bytes("/probe", hdrs))
    assert r.status == status, r


def h2_extended_connect(port, path, extra=()):
    """RFC 8441 over h2c (prior knowledge): the :status of an extended
    CONNECT for a WebSocket on path."""
    import h2.config
    import h2.connection
    import h2.events

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        c = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True))
        c.initiate_connection()
        s.sendall(c.data_to_send())
        headers = [(":method", "CONNECT"), (":protocol", "websocket"),
                   (":scheme", "http"), (":path", path),
                   (":authority", "127.0.0.1:%d" % port),
                   ("sec-websocket-version", "13")] + list(extra)
        sent = False
        while True:
            data = s.recv(65536)
            assert data, "connection closed before a response"
            for ev in c.receive_data(data):
                if isinstance(ev, h2.events.RemoteSettingsChanged) \
                        and not sent:
                    c.send_headers(c.get_next_available_stream_id(),
                                   headers)
                    sent = True
                if isinstance(ev, h2.events.ResponseReceived):
                    return int(dict(ev.headers)[b":status"])
            s.sendall(c.data_to_send())


def test_http2_extended_connect_is_not_a_body(make_httpd):
    """mod_http2 gives the GET it makes of an RFC 8441 CONNECT a
    Transfer-Encoding: chunked; the stream is the WebSocket, not a body."""
    def conf(h):
        return ("LoadModule http2_module %s/mod_http2.so\n"
                "Protocols h2c http/1.1\nH2WebSockets on\n"
                '<Location /echo>\n    SetHandler websocket-handler\n'
                '    WebSocketHandler "%s" echo_init\n</Location>\n'
                % (harness.MODDIR, h.echo_so))
    h = make_httpd(conf).start()
    mark = h.mark()
    assert h2_extended_connect(h.port, "/echo") == 200
    assert h2_extended_connect(h.port, "/echo",
                               [("origin", "http://evil.example")]) == 403
    assert_refusal_logged(h, mark, types.SimpleNamespace(status=403),
                          "evil.example")
