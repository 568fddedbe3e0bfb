"""Shared pieces of the protocol conformance suite (t/test_conformance_*.py).

- one private httpd for the whole suite (started lazily by the first
  conformance module, stopped at the end of the session), with one echo
  location per configuration the suite needs; its MPM is event, or
  $WS_CONFORMANCE_MPM (worker, prefork);
- Conn: wsraw.WSClient that also speaks permessage-deflate (RFC 7692):
  it accepts RSV1 on the server's data frames when the extension was
  negotiated, and inflates them;
- strict expectations: the very next frame must be the one expected.
"""

import os
import socket
import struct
import time
import zlib

import pytest

import harness
import wsraw
from wsraw import (WSClient, WSError, build_frame, OP_CONT, OP_TEXT,
                   OP_BINARY, OP_CLOSE, OP_PING, OP_PONG)

TAIL = b"\x00\x00\xff\xff"
MiB = 1 << 20
DEFAULT_LIMIT = 16 * MiB
SMALL_LIMIT = 1 * MiB           # WebSocketMaxMessageSize 1M of the */1m paths

# ---- the shared server -----------------------------------------------------

SERVER_BITS = range(9, 16)
CLIENT_BITS = range(8, 16)


def _loc(h, path, extra=()):
    lines = ["<Location %s>" % path,
             "    SetHandler websocket-handler",
             '    WebSocketHandler "%s" echo_init' % h.echo_so]
    lines += ["    " + e for e in extra]
    lines.append("</Location>")
    return "\n".join(lines) + "\n"


def conformance_conf(h):
    both_ctx = ["WebSocketCompressionServerContextTakeover On",
                "WebSocketCompressionClientContextTakeover On"]
    out = [
        _loc(h, "/echo"),
        _loc(h, "/echo1m", ["WebSocketMaxMessageSize 1M"]),
        _loc(h, "/reserved", ["WebSocketAllowReservedStatusCodes On"]),
        _loc(h, "/nodeflate", ["WebSocketCompression Off"]),
        _loc(h, "/ctx", both_ctx),
        _loc(h, "/ctx1m", both_ctx + ["WebSocketMaxMessageSize 1M"]),
        _loc(h, "/ctx9", both_ctx + [
            "WebSocketCompressionServerWindowBits 9",
            "WebSocketCompressionClientWindowBits 9"]),
        _loc(h, "/sctx", ["WebSocketCompressionServerContextTakeover On"]),
        _loc(h, "/cctx", ["WebSocketCompressionClientContextTakeover On"]),
        _loc(h, "/minsize0", ["WebSocketCompressionMinSize 0"]),
        _loc(h, "/minsize1k", ["WebSocketCompressionMinSize 1000"]),
        _loc(h, "/level0", ["WebSocketCompressionLevel 0"]),
        _loc(h, "/level9", ["WebSocketCompressionLevel 9"]),
    ]
    for n in SERVER_BITS:
        out.append(_loc(h, "/sbits%d" % n,
                        ["WebSocketCompressionServerWindowBits %d" % n]))
    for n in CLIENT_BITS:
        out.append(_loc(h, "/cbits%d" % n,
                        ["WebSocketCompressionClientWindowBits %d" % n]))
    out.append(_loc(h, "/cbitsoff",
                    ["WebSocketCompressionClientWindowBits Off"]))
    return "".join(out)


_shared = {}


def _conftest():
    import sys
    return sys.modules.get("conftest")


def shared_httpd(config):
    """The suite's httpd (started once per pytest session)."""
    h = _shared.get("h")
    if h is not None and h.running():
        return h
    if "error" in _shared:
        pytest.fail("the conformance httpd did not start: %s"
                    % _shared["error"], pytrace=False)
    ct = _conftest()
    if ct is not None:
        ct.require_build()
    h = harness.Httpd(mpm=os.environ.get("WS_CONFORMANCE_MPM", "event"))
    h.write_conf(conformance_conf(h))
    try:
        h.start()
    except Exception as e:  # noqa: BLE001
        _shared["error"] = str(e)
        h.cleanup()
        raise
    if ct is not None:
        ct.register(h)
    _shared["h"] = h

    def stop():
        if ct is not None and h in ct._servers:
            ct._servers.remove(h)
        try:
            h.stop()
        except Exception as e:  # noqa: BLE001
            print("conformance httpd: %s" % e)
        finally:
            h.cleanup()
            _shared.pop("h", None)
    config.add_cleanup(stop)
    return h


@pytest.fixture(scope="module")
def ws(request):
    """The conformance httpd (import this fixture into a test module)."""
    return shared_httpd(request.config)


# ---- permessage-deflate helpers ----------------------------------------------

def parse_extensions(value):
    """'a; x; y=1, b' -> [('a', {'x': None, 'y': '1'}), ('b', {})].
    Values keep no quotes.  Duplicated parameters raise."""
    out = []
    if value is None:
        return out
    for ext in value.split(","):
        ext = ext.strip()
        if not ext:
            continue
        parts = [p.strip() for p in ext.split(";")]
        params = {}
        for p in parts[1:]:
            k, eq, v = p.partition("=")
            k = k.strip()
            if k in params:
                raise WSError("parameter %r twice in %r" % (k, value))
            v = v.strip()
            if v.startswith('"') and v.endswith('"') and len(v) >= 2:
                v = v[1:-1]
            params[k] = v if eq else None
        out.append((parts[0], params))
    return out


class Pmd:
    """Agreed permessage-deflate parameters, from the client's side."""

    def __init__(self, params):
        self.params = params
        self.server_nct = "server_no_context_takeover" in params
        self.client_nct = "client_no_context_takeover" in params
        self.server_bits = int(params.get("server_max_window_bits") or 15)
        self.client_bits = int(params.get("client_max_window_bits") or 15)


def strip_tail(data):
    if not data.endswith(TAIL):
        raise AssertionError("deflate output without the sync-flush tail")
    return data[:-4]


class Deflater:
    """The client's compressor.  With takeover the window is kept across
    messages; bits 8 is honoured by Huffman-only coding (zlib refuses raw
    windows of 256 bytes, and no back-reference means no window)."""

    def __init__(self, bits=15, takeover=False, level=6):
        self.bits = bits
        self.takeover = takeover
        self.level = level
        self.z = None

    def _new(self):
        if self.bits == 8:
            return zlib.compressobj(self.level, zlib.DEFLATED, -9, 8,
                                    zlib.Z_HUFFMAN_ONLY)
        return zlib.compressobj(self.level, zlib.DEFLATED, -self.bits)

    def compress(self, data):
        if self.z is None or not self.takeover:
            self.z = self._new()
        return strip_tail(self.z.compress(data)
                          + self.z.flush(zlib.Z_SYNC_FLUSH))


def deflate_raw(data, bits=15, level=6, final=False):
    """One message's payload, compressed on a fresh window.  final=True:
    the stream ends with a BFINAL block and is sent as it is."""
    z = zlib.compressobj(level, zlib.DEFLATED, -bits)
    if final:
        return z.compress(data) + z.flush(zlib.Z_FINISH)
    return strip_tail(z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))


def inflate_with(d, data, strict=False):
    """d.decompress(data).  zlib checks back-references against the
    window only beyond what one call has produced, so with strict=True
    the output is taken 256 bytes at a time: a distance beyond the window
    (plus 256) then fails with "invalid distance too far back"."""
    if not strict:
        out = d.decompress(data)
        if d.unconsumed_tail:
            raise WSError("inflate left input")
        return out
    parts = []
    while True:
        parts.append(d.decompress(data, 256))
        data = d.unconsumed_tail
        # A block with BFINAL set ends the stream (RFC 7692 7.2.3.4 lets a
        # sender end each message so when it keeps no context).
        if d.eof or (not data and len(parts[-1]) < 256):
            break
    return b"".join(parts)


def inflate_raw(payload, bits=15, strict=False):
    return inflate_with(zlib.decompressobj(-bits), payload + TAIL, strict)


class Msg:
    __slots__ = ("opcode", "data", "compressed", "wire")

    def __init__(self, opcode, data, compressed, wire):
        self.opcode = opcode
        self.data = data
        self.compressed = compressed
        self.wire = wire            # payload as it came (compressed or not)

    def __repr__(self):
        return "Msg(op=%#x compressed=%s len=%d wire=%d %r)" % (
            self.opcode, self.compressed, len(self.data), len(self.wire),
            self.data[:40])


# ---- the client ----------------------------------------------------------------

class Conn(WSClient):
    """A raw client; extensions= is sent as Sec-WebSocket-Extensions."""

    def __init__(self, port, path="/echo", extensions=None, headers=None,
                 timeout=10.0, **kw):
        hdrs = list(headers or [])
        if extensions is not None:
            hdrs.append(("Sec-WebSocket-Extensions", extensions))
        super().__init__(port, path, headers=hdrs, timeout=timeout, **kw)
        self.ext_header = self.response.header("Sec-WebSocket-Extensions")
        self.pmd = None
        if self.ext_header is not None:
            exts = parse_extensions(self.ext_header)
            if len(exts) != 1 or exts[0][0] != "permessage-deflate":
                raise WSError("unexpected extensions %r" % self.ext_header)
            self.pmd = Pmd(exts[0][1])
        self.inflater = None

    # frames ----------------------------------------------------------------
    def recv_frame(self, timeout=None):
        """The next frame as sent: never masked, minimal lengths, no RSV
        bit except RSV1 on a data frame of a deflate connection."""
        if timeout is not None:
            old = self.sock.gettimeout()
            self.sock.settimeout(timeout)
        try:
            b0, b1 = self._take(2)
            fin = bool(b0 & 0x80)
            rsv = (b0 >> 4) & 7
            opcode = b0 & 0x0F
            n = b1 & 0x7F
            hl = 2
            if n == 126:
                n = struct.unpack("!H", self._take(2))[0]
                hl += 2
                if n < 126:
                    raise WSError("server: non-minimal 16-bit length %d" % n)
            elif n == 127:
                n = struct.unpack("!Q", self._take(8))[0]
                hl += 8
                if n < 65536 or n >> 63:
                    raise WSError("server: bad 64-bit length %d" % n)
            if b1 & 0x80:
                raise WSError("server sent a masked frame")
            if rsv and not (rsv == 4 and self.pmd is not None
                            and opcode in (OP_TEXT, OP_BINARY)):
                raise WSError("server set RSV bits %d on opcode %#x"
                              % (rsv, opcode))
            if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING,
                              OP_PONG):
                raise WSError("server sent reserved opcode %#x" % opcode)
            if opcode >= 8 and (n > 125 or not fin):
                raise WSError("server sent a bad control frame")
            payload = self._take(n)
            return wsraw.Frame(fin, rsv, opcode, False, payload, hl)
        finally:
            if timeout is not None:
                self.sock.settimeout(old)

    def inflate(self, payload):
        """Inflates a server message with the agreed window (a fresh one
        per message unless the server keeps its context)."""
        p = self.pmd
        if self.inflater is None or p.server_nct:
            self.inflater = zlib.decompressobj(-p.server_bits)
        return inflate_with(self.inflater, payload + TAIL,
                            strict=p.server_bits < 15)

    def recv_msg(self, timeout=None):
        """The next frame must be a whole data message (the server never
        fragments); returns a Msg with the inflated payload."""
        f = self.recv_frame(timeout)
        if f.opcode not in (OP_TEXT, OP_BINARY):
            raise WSError("expected a data message, got %r%s" % (
                f, " code %r reason %r" % (f.close_code, f.close_reason)
                if f.opcode == OP_CLOSE else ""))
        if not f.fin:
            raise WSError("server fragmented a message: %r" % f)
        if f.rsv & 4:
            return Msg(f.opcode, self.inflate(f.payload), True, f.payload)
        return Msg(f.opcode, f.payload, False, f.payload)

    def expect_msg(self, opcode, data, compressed=None, timeout=None):
        m = self.recv_msg(timeout)
        assert m.opcode == opcode, m
        assert len(m.data) == len(data) and m.data == data, \
            "payload differs: got %r, want %d bytes %r" % (
                m, len(data), data[:40])
        if compressed is not None:
            assert m.compressed == compressed, m
        return m

    def expect_pong(self, payload, timeout=None):
        f = self.recv_frame(timeout)
        assert f.opcode == OP_PONG, "expected pong %r, got %r" % (payload, f)
        assert f.fin and f.rsv == 0, f
        assert f.payload == payload, f
        return f

    def expect_close_code(self, code, timeout=5.0, eof_timeout=3.0):
        """The next frame is a Close with this code (None: an empty Close),
        then TCP ends."""
        try:
            f = self.recv_frame(timeout)
        except EOFError:
            raise WSError("TCP closed without a Close frame (wanted %r)"
                          % code)
        except ConnectionResetError:
            raise WSError("connection reset without a Close frame "
                          "(wanted %r)" % code)
        except socket.timeout:
            raise WSError("no Close frame within %ss (wanted %r)"
                          % (timeout, code))
        if f.opcode != OP_CLOSE:
            raise WSError("expected Close %r, got %r" % (code, f))
        assert f.fin and f.rsv == 0, f
        if code is None:
            assert f.payload == b"", "expected an empty Close, got %r" % f
        else:
            assert f.close_code == code, \
                "expected close code %r, got %r (reason %r)" % (
                    code, f.close_code, f.close_reason)
            assert len(f.payload) <= 125
            f.close_reason.decode("utf-8")     # must be valid UTF-8
        try:
            self.expect_eof(eof_timeout)
        except socket.timeout:
            raise WSError("TCP not closed within %ss after the Close"
                          % eof_timeout)
        return f

    # sending -----------------------------------------------------------------
    def send_chopped(self, data, sizes, pause=0.0):
        """Writes data in pieces whose sizes cycle through `sizes`."""
        i = pos = 0
        while pos < len(data):
            n = sizes[i % len(sizes)]
            self.sock.sendall(data[pos:pos + n])
            pos += n
            i += 1
            if pause:
                time.sleep(pause)

    def finish(self, code=1000):
        """Client-initiated closing handshake, checked strictly."""
        self.send_close(code)
        return self.expect_close_code(code)


def frame(opcode, payload=b"", **kw):
    return build_frame(opcode, payload, **kw)


def raw_header(b0, b1, ext=b"", mask_key=b"\x01\x02\x03\x04"):
    """A hand-made header: first two bytes, extended length, mask key."""
    return bytes([b0, b1]) + ext + mask_key


# ---- UTF-8 -------------------------------------------------------------------

def _utf8_ranges(lead):
    """Allowed ranges of the continuation bytes after a lead byte
    (Unicode Table 3-7), or None when the byte cannot start a sequence."""
    C = (0x80, 0xBF)
    if lead <= 0x7F:
        return []
    if 0xC2 <= lead <= 0xDF:
        return [C]
    if lead == 0xE0:
        return [(0xA0, 0xBF), C]
    if 0xE1 <= lead <= 0xEC or lead in (0xEE, 0xEF):
        return [C, C]
    if lead == 0xED:
        return [(0x80, 0x9F), C]
    if lead == 0xF0:
        return [(0x90, 0xBF), C, C]
    if 0xF1 <= lead <= 0xF3:
        return [C, C, C]
    if lead == 0xF4:
        return [(0x80, 0x8F), C, C]
    return None


def utf8_first_bad(data):
    """(index of the first byte no valid text can contain at that place,
    or None; True when the data ends inside a sequence)."""
    i, n = 0, len(data)
    while i < n:
        ranges = _utf8_ranges(data[i])
        if ranges is None:
            return i, False
        for k, (lo, hi) in enumerate(ranges):
            j = i + 1 + k
            if j >= n:
                return None, True
            if not lo <= data[j] <= hi:
                return j, False
        i += 1 + len(ranges)
    return None, False
