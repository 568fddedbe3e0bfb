"""A small RFC 8441 client for the tests: WebSockets over HTTP/2 streams,
with python3-h2 (Debian's) over h2c (prior knowledge) or TLS (ALPN h2).

    conn = H2Conn(port)                      # or H2Conn(port, tls=ctx)
    ws = conn.websocket("/echo")             # extended CONNECT, :protocol
    ws.send_text("hi"); ws.recv_text()       # wsraw.WSClient's methods

H2Conn holds one HTTP/2 connection and multiplexes its streams in the
calling thread: a stream that waits for data reads the socket and files
what it brings for the others.  A stream looks like a socket to
wsraw.WSClient (recv, sendall, settimeout), so every frame-level helper of
wsraw works on HTTP/2 as it does on TCP: frames sent exactly as built,
frames received exactly as the server wrote them into DATA frames.

Flow control: received DATA is acknowledged at once (WINDOW_UPDATE) unless
the stream is `paused`, which is how a test makes a slow reader; sending
waits for the server's window.
"""

import socket
import ssl
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from wsraw import WSClient, WSError, HTTPResponse, DEFAULT_TIMEOUT


CONNECTION_WINDOW = 1 << 30


class H2Error(AssertionError):
    pass


class _GracefulH2(h2.connection.H2Connection):
    """python3-h2 4.1 closes its connection state at a GOAWAY, and then
    refuses every frame after it, even the DATA of a stream the GOAWAY
    lets finish (RFC 9113 6.8; python-hyper/h2 issue 1181).  mod_http2's
    graceful stop sends its GOAWAY before the streams' last frames (our
    Close 1001), often in the same read: the state is reopened right at
    the GOAWAY, before the frames that follow it are processed."""

    def _receive_goaway_frame(self, frame):
        frames, events = super()._receive_goaway_frame(frame)
        if frame.error_code == 0:
            self.state_machine.state = \
                h2.connection.ConnectionState.CLIENT_OPEN
        return frames, events


class H2Stream:
    """One stream, with the part of the socket interface WSClient uses."""

    def __init__(self, conn, stream_id):
        self.conn = conn
        self.id = stream_id
        self.headers = None           # the response's, once received
        self.data = bytearray()       # received, not yet read
        self.ended = False            # END_STREAM received
        self.reset = None             # RST_STREAM's error code
        self.unacked = 0              # received while paused
        self.paused = False
        self.timeout = conn.timeout

    # ---- the socket interface ----------------------------------------
    def settimeout(self, t):
        self.timeout = t

    def gettimeout(self):
        return self.timeout

    def recv(self, n):
        deadline = None if self.timeout is None \
            else time.monotonic() + self.timeout
        while not self.data:
            if self.reset is not None:
                raise ConnectionResetError("stream %d reset (error %d)"
                                           % (self.id, self.reset))
            if self.ended or self.conn.gone(self.id):
                return b""
            self.conn.pump(deadline)
        out = bytes(self.data[:n])
        del self.data[:n]
        return out

    def sendall(self, data):
        self.conn.send_data(self, bytes(data))

    def close(self):
        self.conn.reset_stream(self)

    # ---- flow control --------------------------------------------------
    def pause(self):
        """Stop acknowledging this stream's data: the server's window for
        it closes once it has sent that much."""
        self.paused = True

    def resume(self):
        self.paused = False
        self.conn.ack(self, self.unacked)
        self.unacked = 0


class H2Conn:
    """One HTTP/2 connection to 127.0.0.1:port (h2c, or h2 over `tls`)."""

    def __init__(self, port, tls=None, timeout=DEFAULT_TIMEOUT,
                 window=None):
        self.port = port
        self.timeout = timeout
        self.scheme = "https" if tls is not None else "http"
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
            sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
            if sock.selected_alpn_protocol() != "h2":
                sock.close()
                raise H2Error("ALPN chose %r, not h2"
                              % sock.selected_alpn_protocol())
        self.sock = sock
        self.h2 = _GracefulH2(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        self.streams = {}
        self.terminated = None        # the GOAWAY event
        self.settings_seen = False    # the server's first SETTINGS
        self.h2.initiate_connection()
        # The connection's window is wide open: a test that leaves one
        # stream unread (pause) must not close the others' window too.
        self.h2.increment_flow_control_window(CONNECTION_WINDOW)
        if window is not None:
            self.h2.update_settings(
                {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.flush()
        deadline = time.monotonic() + timeout
        while not self.settings_seen and self.terminated is None:
            self.pump(deadline)
        if not self.h2.remote_settings.enable_connect_protocol:
            raise H2Error("the server does not announce "
                          "SETTINGS_ENABLE_CONNECT_PROTOCOL (H2WebSockets)")

    def gone(self, stream_id):
        """Whether the connection ended for this stream: closed, or a
        GOAWAY that does not cover it (a graceful GOAWAY lets the open
        streams finish)."""
        t = self.terminated
        if t is None:
            return False
        return t == "EOF" or stream_id > t.last_stream_id

    def flush(self):
        out = self.h2.data_to_send()
        if out:
            self.sock.sendall(out)

    def pump(self, deadline=None):
        """Reads the socket once (waiting until deadline) and files what it
        brings; socket.timeout when nothing came in time."""
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            self.terminated = "EOF"
            return
        for ev in self.h2.receive_data(data):
            self.on_event(ev)
        self.flush()

    def on_event(self, ev):
        st = self.streams.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            self.settings_seen = True
        elif isinstance(ev, h2.events.ResponseReceived) and st:
            st.headers = ev.headers
        elif isinstance(ev, h2.events.DataReceived) and st:
            st.data += ev.data
            if st.paused:
                st.unacked += ev.flow_controlled_length
            else:
                self.ack(st, ev.flow_controlled_length)
        elif isinstance(ev, h2.events.StreamEnded) and st:
            st.ended = True
        elif isinstance(ev, h2.events.StreamReset) and st:
            st.reset = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            if self.terminated != "EOF":
                self.terminated = ev

    def ack(self, st, n):
        if n:
            try:
                self.h2.acknowledge_received_data(n, st.id)
            except h2.exceptions.StreamClosedError:
                pass
            self.flush()

    def send_data(self, st, data):
        deadline = None if st.timeout is None \
            else time.monotonic() + st.timeout
        while data:
            if st.reset is not None or self.gone(st.id):
                raise ConnectionResetError("stream %d closed" % st.id)
            room = min(self.h2.local_flow_control_window(st.id),
                       self.h2.max_outbound_frame_size)
            if room <= 0:
                self.pump(deadline)       # wait for a WINDOW_UPDATE
                continue
            self.h2.send_data(st.id, data[:room])
            data = data[room:]
            self.flush()

    def reset_stream(self, st):
        if st.reset is None and not self.gone(st.id):
            try:
                self.h2.reset_stream(st.id, h2.errors.ErrorCodes.CANCEL)
                self.flush()
            except (h2.exceptions.StreamClosedError, OSError):
                pass
            st.reset = st.reset if st.reset is not None else -1

    def end_stream(self, st):
        """END_STREAM: the client sends nothing more on this stream."""
        self.h2.end_stream(st.id)
        self.flush()

    def request(self, headers, end_stream=False):
        """Opens a stream with these headers; returns it once the
        response's headers came."""
        sid = self.h2.get_next_available_stream_id()
        st = self.streams[sid] = H2Stream(self, sid)
        self.h2.send_headers(sid, headers, end_stream=end_stream)
        self.flush()
        deadline = time.monotonic() + self.timeout
        while st.headers is None and st.reset is None and not self.gone(sid):
            self.pump(deadline)
        if st.headers is None:
            raise H2Error("no response on stream %d (reset %r, %r)"
                          % (sid, st.reset, self.terminated))
        return st

    def websocket(self, path="/echo", extensions=None, protocols=None,
                  origin=None, expect_status=200, headers=None, cls=None):
        """An RFC 8441 WebSocket on a new stream: a WSClient (cls, a
        subclass of H2WSClient) whose socket is the stream."""
        hdrs = [(":method", "CONNECT"), (":protocol", "websocket"),
                (":scheme", self.scheme), (":path", path),
                (":authority", "127.0.0.1:%d" % self.port),
                ("sec-websocket-version", "13")]
        if extensions is not None:
            hdrs.append(("sec-websocket-extensions", extensions))
        if protocols is not None:
            hdrs.append(("sec-websocket-protocol", protocols))
        if origin is not None:
            hdrs.append(("origin", origin))
        hdrs += list(headers or [])
        st = self.request(hdrs)
        status = int(dict(st.headers)[":status"])
        ws = (cls or H2WSClient)(self, st, [(k, v) for k, v in st.headers
                                            if not k.startswith(":")], status)
        if status != expect_status:
            st.close()
            raise WSError("extended CONNECT to %s: expected %d, got %d %r"
                          % (path, expect_status, status, st.headers))
        return ws

    def ping_server(self, timeout=None):
        """An HTTP/2 PING answered: the connection's own thread on the
        server is alive (answers while streams are busy or blocked)."""
        payload = b"h2ping!!"
        self.h2.ping(payload)
        self.flush()
        acked = []
        deadline = time.monotonic() + (timeout or self.timeout)
        orig = self.on_event

        def watch(ev):
            if isinstance(ev, h2.events.PingAckReceived) \
                    and ev.ping_data == payload:
                acked.append(ev)
            orig(ev)
        self.on_event = watch
        try:
            while not acked:
                self.pump(deadline)
        finally:
            self.on_event = orig
        return True

    def close(self):
        try:
            self.h2.close_connection()
            self.flush()
        except OSError:
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class H2WSClient(WSClient):
    """wsraw.WSClient over one HTTP/2 stream."""

    def __init__(self, conn, stream, headers, status):
        self.conn = conn
        self.port = conn.port
        self.key = None
        self.sock = stream
        self.stream = stream
        self.buf = b""
        self.closed = False
        self.response = HTTPResponse(status, "", headers, b"", b"")

    def end_stream(self):
        self.conn.end_stream(self.stream)

    def abort(self):
        """Drops the stream without a closing handshake (RST_STREAM)."""
        self.stream.close()
        self.closed = True

    @property
    def ended(self):
        """How the server ended the stream: "end" (END_STREAM, the TCP FIN
        of RFC 8441; mod_http2 may follow it with RST_STREAM NO_ERROR since
        the client's side is still open), "reset" (RST_STREAM alone), or
        None while it is open."""
        if self.stream.ended:
            return "end"
        return "reset" if self.stream.reset is not None else None
