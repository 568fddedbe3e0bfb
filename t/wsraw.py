"""A raw-socket WebSocket client for the integration tests.

Unlike a library client it never "fixes" what it sends or receives: the
tests build any frame they like (unmasked, reserved bits, bad lengths,
fragments split anywhere) and see every frame the server sends exactly as
it came off the wire, so they can check the server's framing too.
"""

import base64
import hashlib
import os
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

DEFAULT_TIMEOUT = 10.0


class WSError(AssertionError):
    """The server did something a correct server does not do."""


def make_key(nbytes=16):
    return base64.b64encode(os.urandom(nbytes)).decode("ascii")


def accept_for(key):
    if isinstance(key, str):
        key = key.encode("ascii")
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode("ascii")


def mask_bytes(payload, key):
    """XOR payload with the 4-byte key (fast for large payloads)."""
    n = len(payload)
    if n == 0:
        return b""
    reps = key * (n // 4 + 1)
    a = int.from_bytes(payload, "little")
    b = int.from_bytes(reps[:n], "little")
    return (a ^ b).to_bytes(n, "little")


def build_frame(opcode, payload=b"", fin=True, mask=True, rsv=0,
                mask_key=None, length=None):
    """Encodes one frame.  `rsv` is the 3-bit RSV1..RSV3 value; `length`
    overrides the length written in the header (the payload is sent as is)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        if mask_key is None:
            mask_key = os.urandom(4)
        return hdr + mask_key + mask_bytes(payload, mask_key)
    return hdr + payload


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload", "header_len")

    def __init__(self, fin, rsv, opcode, masked, payload, header_len):
        self.fin = fin
        self.rsv = rsv
        self.opcode = opcode
        self.masked = masked
        self.payload = payload
        self.header_len = header_len

    @property
    def close_code(self):
        if self.opcode != OP_CLOSE:
            raise WSError("not a close frame: %r" % self)
        if len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    @property
    def close_reason(self):
        return self.payload[2:]

    def __repr__(self):
        p = self.payload
        shown = p[:60] + (b"..." if len(p) > 60 else b"")
        return "Frame(op=%#x fin=%d rsv=%d masked=%d len=%d %r)" % (
            self.opcode, self.fin, self.rsv, self.masked, len(p), shown)


class HTTPResponse:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers          # list of (name, value)
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        """The value of header `name` (several occurrences joined by ', ')."""
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        if not vals:
            return default
        return ", ".join(vals)

    def has(self, name):
        return any(k.lower() == name.lower() for k, _ in self.headers)

    def __repr__(self):
        return "HTTPResponse(%d %s, %r)" % (self.status, self.reason,
                                            self.headers)


def parse_head(head):
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise WSError("bad status line %r" % lines[0])
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return status, reason, headers


def request_bytes(path="/", headers=None, method="GET", version="HTTP/1.1",
                  host=None):
    """Builds a request; `headers` is a list of (name, value) pairs, sent in
    that order (a value of None drops a default header)."""
    lines = ["%s %s %s" % (method, path, version)]
    for k, v in headers or []:
        if v is not None:
            lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1")


def ws_headers(port, key=None, version="13", protocols=None, origin=None,
               extra=None, upgrade="websocket", connection="Upgrade"):
    """The headers of an opening handshake, as a list (None drops one)."""
    if key is None:
        key = make_key()
    h = [("Host", "127.0.0.1:%d" % port),
         ("Upgrade", upgrade),
         ("Connection", connection),
         ("Sec-WebSocket-Key", key),
         ("Sec-WebSocket-Version", version)]
    if protocols is not None:
        h.append(("Sec-WebSocket-Protocol", protocols))
    if origin is not None:
        h.append(("Origin", origin))
    for item in extra or []:
        h.append(item)
    return h


def recv_head(sock, buf=b"", limit=65536):
    """Reads until the end of the header block; returns (head, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise WSError("connection closed during the response head: %r"
                          % buf)
        buf += chunk
        if len(buf) > limit:
            raise WSError("response head too large")
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def http_request(port, raw, timeout=DEFAULT_TIMEOUT, read_body=True):
    """Sends raw request bytes on a fresh connection and returns the parsed
    response (the body read by Content-Length, or until EOF)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        head, rest = recv_head(s)
        status, reason, headers = parse_head(head)
        resp = HTTPResponse(status, reason, headers, b"", head)
        if not read_body or status == 101 or status == 304 or status < 200:
            resp.body = rest
            return resp
        cl = resp.header("Content-Length")
        te = (resp.header("Transfer-Encoding") or "").lower()
        body = rest
        if cl is not None:
            n = int(cl)
            while len(body) < n:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
            body = body[:n]
        elif "chunked" in te:
            while not body.endswith(b"0\r\n\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
        else:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
        resp.body = body
        return resp


def handshake(port, path="/echo", **kw):
    """A handshake request on a fresh connection; returns the response."""
    method = kw.pop("method", "GET")
    version = kw.pop("http_version", "HTTP/1.1")
    return http_request(port, request_bytes(path, ws_headers(port, **kw),
                                            method=method, version=version))


class WSClient:
    """One WebSocket connection over a raw socket."""

    def __init__(self, port, path="/echo", headers=None, key=None,
                 protocols=None, origin=None, version="13",
                 timeout=DEFAULT_TIMEOUT, expect_status=101, early=b"",
                 rcvbuf=None, tls=None):
        """tls: an ssl.SSLContext to speak TLS with (wss).  With a context
        that does not ignore unexpected EOFs (Httpd.ssl_context()), a TLS
        connection the server ends without close_notify raises ssl.SSLError
        instead of looking like a clean end."""
        self.port = port
        self.key = key or make_key()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="127.0.0.1",
                                        suppress_ragged_eofs=False)
        hdrs = ws_headers(port, key=self.key, version=version,
                          protocols=protocols, origin=origin, extra=headers)
        # `early` bytes go in the same write as the request head.
        self.sock.sendall(request_bytes(path, hdrs) + early)
        head, self.buf = recv_head(self.sock)
        status, reason, hlist = parse_head(head)
        self.response = HTTPResponse(status, reason, hlist, b"", head)
        if status != expect_status:
            self.sock.close()
            raise WSError("handshake to %s: expected %d, got %d %s\n%s" % (
                path, expect_status, status, reason, head.decode("latin-1")))
        if status == 101:
            acc = self.response.header("Sec-WebSocket-Accept")
            if acc != accept_for(self.key):
                self.sock.close()
                raise WSError("bad Sec-WebSocket-Accept %r" % acc)
        self.closed = False

    # ---- low level ----------------------------------------------------
    def settimeout(self, t):
        self.sock.settimeout(t)

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(build_frame(opcode, payload, **kw))

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise EOFError("connection closed by the server (%d of %d "
                               "bytes buffered)" % (len(self.buf), n))
            self.buf += chunk

    def _take(self, n):
        self._fill(n)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self, timeout=None):
        """Next frame off the wire, checked for what a server must never
        send (masking, reserved bits, non-minimal lengths)."""
        if timeout is not None:
            old = self.sock.gettimeout()
            self.sock.settimeout(timeout)
        try:
            b0, b1 = self._take(2)
            fin = bool(b0 & 0x80)
            rsv = (b0 >> 4) & 7
            opcode = b0 & 0x0F
            masked = bool(b1 & 0x80)
            n = b1 & 0x7F
            hl = 2
            if n == 126:
                n = struct.unpack("!H", self._take(2))[0]
                hl += 2
                if n < 126:
                    raise WSError("non-minimal 16-bit length %d" % n)
            elif n == 127:
                n = struct.unpack("!Q", self._take(8))[0]
                hl += 8
                if n < 65536:
                    raise WSError("non-minimal 64-bit length %d" % n)
            if masked:
                raise WSError("server sent a masked frame")
            if rsv and not (rsv == 4 and getattr(self, "allow_rsv1", False)):
                raise WSError("server set reserved bits %d" % rsv)
            payload = self._take(n)
            return Frame(fin, rsv, opcode, masked, payload, hl)
        finally:
            if timeout is not None:
                self.sock.settimeout(old)

    def recv_message(self, timeout=None, pongs=None, auto_pong=True):
        """Next whole data message as (opcode, payload).  Control frames in
        between: pongs are appended to `pongs` (a list) if given, else
        ignored; pings are answered; a close raises WSError."""
        op = None
        parts = []
        while True:
            f = self.recv_frame(timeout)
            if f.opcode == OP_PING:
                if auto_pong:
                    self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                if pongs is not None:
                    pongs.append(f.payload)
                continue
            if f.opcode == OP_CLOSE:
                raise WSError("unexpected close %r (code %r)"
                              % (f, f.close_code))
            if op is None:
                if f.opcode == OP_CONT:
                    raise WSError("server sent a continuation first")
                if f.opcode not in (OP_TEXT, OP_BINARY):
                    raise WSError("server sent opcode %#x" % f.opcode)
                op = f.opcode
            elif f.opcode != OP_CONT:
                raise WSError("server interleaved a data frame %r" % f)
            parts.append(f.payload)
            if f.fin:
                return op, b"".join(parts)

    def recv_text(self, timeout=None):
        op, data = self.recv_message(timeout)
        if op != OP_TEXT:
            raise WSError("expected text, got opcode %#x %r" % (op, data[:60]))
        return data.decode("utf-8")

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text.encode("utf-8")
                        if isinstance(text, str) else text, **kw)

    def send_binary(self, data, **kw):
        self.send_frame(OP_BINARY, data, **kw)

    def send_close(self, code=None, reason=b"", **kw):
        self.send_frame(OP_CLOSE, close_payload(code, reason), **kw)

    def send_fragmented(self, opcode, payload, size, between=None):
        """Sends one message in frames of `size` bytes; `between(i)` is
        called after each non-final fragment (to interleave control)."""
        chunks = [payload[i:i + size] for i in range(0, len(payload), size)]
        if not chunks:
            chunks = [b""]
        out = []
        for i, c in enumerate(chunks):
            out.append(build_frame(opcode if i == 0 else OP_CONT, c,
                                   fin=(i == len(chunks) - 1)))
            if between is not None and i < len(chunks) - 1:
                self.sock.sendall(b"".join(out))
                out = []
                between(i)
        if out:
            self.sock.sendall(b"".join(out))

    def expect_close(self, code=None, timeout=None, allow_data=False,
                     empty=False, reply=False):
        """Reads up to the server's Close frame; checks its code (None: any
        code; with empty=True the payload must be empty); with reply=True
        answers it with a Close of the same code; checks that the server
        then closes TCP.  Returns the close frame."""
        skipped = []
        while True:
            try:
                f = self.recv_frame(timeout)
            except EOFError:
                raise WSError("TCP closed without a Close frame (after %r)"
                              % skipped[-3:])
            if f.opcode == OP_CLOSE:
                break
            if f.opcode in (OP_PING, OP_PONG) or allow_data:
                skipped.append(f)
                continue
            raise WSError("expected Close, got %r" % f)
        if empty:
            if f.payload != b"":
                raise WSError("expected an empty Close, got %r" % f.payload)
        elif code is not None and f.close_code != code:
            raise WSError("expected close code %r, got %r (reason %r)" % (
                code, f.close_code, f.close_reason))
        if reply:
            self.send_close(f.close_code)
        self.expect_eof(timeout)
        return f

    def expect_silence(self, timeout=None):
        """The server sent nothing so far: a Ping sent now is answered by
        the very next frame.  Frames of one connection leave in order, so
        whatever the server had to send before reading the Ping (an echo
        of what was sent before it, say) would come first."""
        token = b"silence? " + os.urandom(6).hex().encode()
        self.send_frame(OP_PING, token)
        f = self.recv_frame(timeout)
        if (f.opcode, f.payload) != (OP_PONG, token):
            raise WSError("expected nothing before the pong %r, got %r"
                          % (token, f))

    def expect_eof(self, timeout=None):
        """The server must close TCP (no further frames)."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        if self.buf:
            raise WSError("bytes after the Close frame: %r" % self.buf[:60])
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                raise WSError("data after the Close frame: %r" % chunk[:60])
        except ConnectionResetError:
            pass
        self.closed = True

    def close_handshake(self, code=1000, reason=b""):
        """The client-initiated closing handshake; returns the reply."""
        self.send_close(code, reason)
        return self.expect_close(code if code is not None else None,
                                 allow_data=True,
                                 empty=(code is None))

    def abort(self):
        """Drops TCP without a closing handshake."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()
        self.closed = True

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


def open_many(port, path="/echo", n=1, batch=200, headers=None,
              timeout=DEFAULT_TIMEOUT, rcvbuf=None):
    """n WebSockets to path as WSClients, the handshakes pipelined `batch`
    at a time: every connection of a batch is opened and sends its request
    before the answers are read (so a batch must fit the listen backlog).
    Each answer must be a 101 with the right Sec-WebSocket-Accept."""
    out, pending = [], []
    try:
        for start in range(0, n, batch):
            pending = []
            for _ in range(start, min(n, start + batch)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                if rcvbuf is not None:
                    # Before connect: the window the server sees is small.
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                s.settimeout(timeout)
                s.connect(("127.0.0.1", port))
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                key = make_key()
                pending.append((s, key))
                s.sendall(request_bytes(path, ws_headers(port, key=key,
                                                         extra=headers)))
            for i, (s, key) in enumerate(pending):
                try:
                    head, rest = recv_head(s)
                except (OSError, WSError) as e:
                    raise WSError("handshake %d of %d to %s: %s"
                                  % (start + i, n, path, e))
                status, reason, hlist = parse_head(head)
                c = WSClient.__new__(WSClient)
                c.port, c.key, c.sock, c.buf = port, key, s, rest
                c.response = HTTPResponse(status, reason, hlist, b"", head)
                c.closed = False
                out.append(c)
                if status != 101:
                    raise WSError("handshake %d of %d to %s: %d %s"
                                  % (start + i, n, path, status, reason))
                if c.response.header("Sec-WebSocket-Accept") \
                        != accept_for(key):
                    raise WSError("bad Sec-WebSocket-Accept in handshake %d"
                                  % (start + i))
            pending = []
    except BaseException:
        for c in out:
            c.close()
        for s, _ in pending:
            s.close()
        raise
    return out


def tcp_table():
    """The IPv4 TCP sockets of /proc/net/tcp, as (local port, remote port,
    tx_queue, inode) tuples."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            yield (int(fields[1].split(":")[1], 16),
                   int(fields[2].split(":")[1], 16),
                   int(fields[4].split(":")[0], 16), fields[9])


def server_send_queue(c):
    """Bytes the server's end of c's TCP connection holds unacknowledged
    or unsent (tx_queue in /proc/net/tcp).  More than c's receive buffer
    can take means that c's window is closed and the server's writes
    wait: c is not reading."""
    me, peer = c.sock.getsockname()[1], c.sock.getpeername()[1]
    for local, remote, tx_queue, _ in tcp_table():
        if (local, remote) == (peer, me):
            return tx_queue
    raise WSError("no server socket for port %d in /proc/net/tcp" % me)


def wait_until(pred, timeout=5.0, interval=0.05):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            return v
        time.sleep(interval)


def wait_for(pred, what, timeout=5.0, interval=0.02):
    """Polls pred() until it returns something true (returned); fails
    saying `what` was expected once `timeout` has passed."""
    v = wait_until(pred, timeout, interval)
    if not v:
        raise AssertionError("not within %ss: %s" % (timeout, what))
    return v
