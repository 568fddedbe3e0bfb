#!/usr/bin/python3
"""A private Apache httpd for the mod_websocket tests (and `make run`).

Each Httpd gets its own ServerRoot in a temp dir, a generated httpd.conf,
a free port on 127.0.0.1, and runs /usr/sbin/apache2 -DFOREGROUND as a
child process.  With WS_ASAN=1 it uses the ASan+UBSan build under
build/asan/ and fails when a sanitizer wrote a report.

    /usr/bin/python3 t/harness.py run [--port 8080] [--mpm event]
"""

import argparse
import glob
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

T_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(T_DIR)
APACHE = "/usr/sbin/apache2"
MODDIR = "/usr/lib/apache2/modules"


def one_child(threads=25):
    """The event MPM as one child of `threads` worker threads that may hold
    many sockets (the tests that count a child's threads, memory or
    sockets, or need every connection in one process)."""
    return """
StartServers 1
ServerLimit 1
ThreadLimit {n}
ThreadsPerChild {n}
MaxRequestWorkers {n}
MinSpareThreads 1
MaxSpareThreads {n}
AsyncRequestWorkerFactor 1000
MaxConnectionsPerChild 0
""".format(n=threads)


ONE_CHILD = one_child()

ASAN = os.environ.get("WS_ASAN", "") not in ("", "0")
# WS_BUILD_DIR: test another build tree laid out like the repo's.
BUILD = os.environ.get("WS_BUILD_DIR") or (
    os.path.join(REPO, "build", "asan") if ASAN else REPO)

# WS_COREDUMP=1: children dump core into <ServerRoot>/san and stop()
# reports each core with gdb's backtraces.
COREDUMP = os.environ.get("WS_COREDUMP", "") not in ("", "0")

MPMS = ("event", "worker", "prefork")

# Lines of the error log that mean a child died or a sanitizer complained.
# AH00046: a child had to be SIGKILLed (it hung on stop).
CRASH_RE = re.compile(r"exit signal|AH00052|AH00046|AddressSanitizer|"
                      r"runtime error:|LeakSanitizer|double free|"
                      r"free\(\): invalid|corrupted|stack smashing")


def module_so():
    return os.path.join(BUILD, ".libs", "mod_websocket.so")


def plugin_so(name):
    """An example plugin of plugins/ (name: echo, dumb_increment)."""
    return os.path.join(BUILD, "plugins", ".libs",
                        "mod_websocket_%s.so" % name)


def test_plugin_so(name):
    """A test plugin built from t/plugins/<name>.c."""
    return os.path.join(BUILD, "t", "plugins", ".libs", "%s.so" % name)


def built():
    return os.path.exists(module_so())


def free_port():
    """A port nobody uses, below the ephemeral range (where client sockets
    in TIME_WAIT of a busy machine could make bind fail)."""
    rnd = random.Random()
    for _ in range(200):
        port = rnd.randrange(20000, 32000)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise HttpdError("no free port")


def sanitizer_env(logdir):
    env = {}
    libs = []
    for lib in ("libasan.so", "libubsan.so"):
        p = subprocess.run(["gcc", "-print-file-name=" + lib],
                           capture_output=True, text=True).stdout.strip()
        if p and os.path.isabs(p) and os.path.exists(p):
            libs.append(os.path.realpath(p))
    env["LD_PRELOAD"] = " ".join(libs)
    # use_sigaltstack=0: with the runtime preloaded into an uninstrumented
    # httpd, ASan's own alternate signal stack teardown at thread exit
    # reports a stack-buffer-underflow in its sigaltstack interceptor (a
    # false positive in libasan itself, not in our code).
    # symbolize=0: a report is written at once, and symbolized here when it
    # is read (symbolize_report).  Symbolizing in the child took seconds on
    # a loaded machine, and httpd's parent kills a stopping child that
    # lingers: reports were cut after their first line.
    env["ASAN_OPTIONS"] = ("detect_leaks=0:abort_on_error=0:use_sigaltstack=0:"
                           "symbolize=0:log_path=%s" % os.path.join(logdir, "asan"))
    env["UBSAN_OPTIONS"] = ("print_stacktrace=1:halt_on_error=0:log_path=%s"
                            % os.path.join(logdir, "ubsan"))
    return env


FRAME_RE = re.compile(r"^(\s*#\d+ 0x[0-9a-f]+) +\((\S+)\+(0x[0-9a-f]+)\)\s*$")


def symbolize_report(text):
    """Frames of an unsymbolized ASan/UBSan report ("#3 0x... (lib.so+0x12)")
    get their function and file:line from llvm-symbolizer, when it is there."""
    frames = [FRAME_RE.match(l) for l in text.splitlines()]
    wanted = [(m.group(2), m.group(3)) for m in frames if m]
    if not wanted or not shutil.which("llvm-symbolizer"):
        return text
    query = "".join('"%s" %s\n' % w for w in wanted)
    try:
        out = subprocess.run(["llvm-symbolizer", "--inlines"], input=query,
                             capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return text
    answers = [a.strip().splitlines() for a in out.split("\n\n")]
    lines, k = [], 0
    for line, m in zip(text.splitlines(), frames):
        if m and k < len(answers):
            where = answers[k]
            k += 1
            pairs = [" ".join(where[i:i + 2]) for i in range(0, len(where) - 1, 2)]
            line = "%s in %s (%s+%s)" % (m.group(1), " <- ".join(pairs) or "?",
                                         m.group(2), m.group(3))
        lines.append(line)
    return "\n".join(lines)


class HttpdError(AssertionError):
    pass


def make_cert(cert_path, key_path, cn="127.0.0.1"):
    """A self-signed certificate (and its key) for cn, valid for 2 days,
    with cn as an IP subjectAltName so that clients can verify it."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", key_path, "-out", cert_path, "-days", "2",
         "-subj", "/CN=%s" % cn, "-addext", "subjectAltName=IP:%s" % cn],
        check=True, capture_output=True, timeout=60)
    os.chmod(cert_path, 0o644)
    os.chmod(key_path, 0o600)


class Httpd:
    """One private httpd.

    conf: extra configuration appended to the generated base config (the
    test's <Location>s).  `{port}`-style placeholders are NOT expanded;
    build it with the attributes (h.port, h.echo_so, ...) instead.

    mpm_conf: the MPM's directives (ServerLimit, ThreadsPerChild, ...), one
    string, instead of the default ones.

    tls: also serve https/wss on h.tls_port (mod_ssl, a self-signed
    certificate for 127.0.0.1 generated into the ServerRoot: h.cert_path);
    the <Location>s of the main server apply there too.  h.ssl_context()
    is a client context that trusts that certificate.

    For benchmarks: access_log=False writes no access log (thousands of
    lines); docroot=False configures no DocumentRoot, so that a request's
    memory is not that of mapping its URL to a file.
    """

    def __init__(self, conf="", mpm="event", port=None, docroot=None,
                 loglevel="warn websocket:info", env=None, timeout=10,
                 tmp_parent=None, user=None, load_module=True, mpm_conf=None,
                 tls=False, access_log=True):
        if mpm not in MPMS:
            raise ValueError("mpm must be one of %s" % (MPMS,))
        self.mpm = mpm
        self.mpm_conf = mpm_conf
        self.port = port or free_port()
        self.fixed_port = port is not None
        self.tls = tls
        self.tls_port = None
        self.with_access_log = access_log
        self.root = tempfile.mkdtemp(prefix="ws-httpd-", dir=tmp_parent)
        os.chmod(self.root, 0o755)
        for d in ("logs", "run", "htdocs", "shared", "san"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        # Children run as an unprivileged user: they write here.
        os.chmod(os.path.join(self.root, "shared"), 0o777)
        self.san_dir = os.path.join(self.root, "san")
        os.chmod(self.san_dir, 0o777)
        self.docroot = None if docroot is False else (
            docroot or os.path.join(self.root, "htdocs"))
        os.chmod(os.path.join(self.root, "htdocs"), 0o755)
        self.conf_path = os.path.join(self.root, "httpd.conf")
        self.error_log_path = os.path.join(self.root, "logs", "error_log")
        self.access_log_path = os.path.join(self.root, "logs", "access_log")
        self.stderr_path = os.path.join(self.root, "logs", "stderr")
        self.pid_path = os.path.join(self.root, "run", "httpd.pid")
        # The log that the test plugins write to (WS_TEST_LOG).
        self.test_log_path = os.path.join(self.root, "shared", "plugin.log")
        with open(self.test_log_path, "w"):
            pass
        os.chmod(self.test_log_path, 0o666)
        self.loglevel = loglevel
        self.timeout = timeout
        self.extra_env = dict(env or {})
        self.user = user
        self.load_module = load_module
        # The module to load: another build's for benchmarks comparing two.
        self.module_path = module_so()
        self.proc = None
        self.sanitizer_reports = []
        self.cert_path = os.path.join(self.root, "server.crt")
        self.key_path = os.path.join(self.root, "server.key")
        if tls:
            self.tls_port = free_port()
            make_cert(self.cert_path, self.key_path)
        self.write_conf(conf)

    # ---- paths for the config -----------------------------------------
    module_so = staticmethod(module_so)
    plugin_so = staticmethod(plugin_so)
    test_plugin_so = staticmethod(test_plugin_so)

    @property
    def echo_so(self):
        return plugin_so("echo")

    @property
    def dumb_so(self):
        return plugin_so("dumb_increment")

    def url(self, path="/", scheme="http"):
        return "%s://127.0.0.1:%d%s" % (scheme, self.port, path)

    @property
    def origin(self):
        return "http://127.0.0.1:%d" % self.port

    # ---- config ---------------------------------------------------------
    def base_conf(self):
        r = self.root
        mods = ["mpm_%s" % self.mpm, "authz_core", "authz_host", "authn_core",
                "authn_file", "auth_basic", "authz_user", "mime", "dir",
                "alias", "env", "headers"]
        lines = ['ServerRoot "%s"' % r,
                 'DefaultRuntimeDir "%s/run"' % r,
                 'PidFile "%s"' % self.pid_path,
                 "Listen 127.0.0.1:%d" % self.port,
                 "ServerName 127.0.0.1:%d" % self.port,
                 "Timeout %d" % self.timeout,
                 "KeepAlive On",
                 "KeepAliveTimeout 2"]
        for m in mods:
            lines.append("LoadModule %s_module %s/mod_%s.so" % (m, MODDIR, m))
        if self.load_module:
            lines.append('LoadModule websocket_module "%s"' % self.module_path)
        if os.geteuid() == 0:
            user = self.user or "www-data"
            lines += ["User %s" % user, "Group %s" % user]
        if self.mpm_conf is not None:
            lines += self.mpm_conf.strip().splitlines()
        elif self.mpm == "prefork":
            lines += ["StartServers 8", "MinSpareServers 4",
                      "MaxSpareServers 16", "ServerLimit 40",
                      "MaxRequestWorkers 40", "MaxConnectionsPerChild 0"]
        else:
            lines += ["StartServers 1", "ServerLimit 4",
                      "ThreadsPerChild 25", "MinSpareThreads 5",
                      "MaxSpareThreads 75", "MaxRequestWorkers 100",
                      "ThreadLimit 25", "MaxConnectionsPerChild 0"]
        lines += [
            "GracefulShutdownTimeout 5",
            'ErrorLog "%s"' % self.error_log_path,
            "LogLevel %s" % (self.loglevel if self.load_module
                             else "warn"),
            'LogFormat "%h %l %u %t \\"%r\\" %>s %b %D" wstest',
        ]
        if self.with_access_log:
            lines.append('CustomLog "%s" wstest' % self.access_log_path)
        lines.append("TypesConfig /etc/mime.types")
        if self.docroot is not None:
            lines += ['DocumentRoot "%s"' % self.docroot,
                      '<Directory "%s">' % self.docroot,
                      "    Require all granted",
                      "</Directory>",
                      "DirectoryIndex index.html"]
        lines.append("PassEnv WS_TEST_LOG")
        if COREDUMP:
            lines.append('CoreDumpDirectory "%s"' % self.san_dir)
        if self.tls:
            lines += [
                "LoadModule socache_shmcb_module %s/mod_socache_shmcb.so"
                % MODDIR,
                "LoadModule ssl_module %s/mod_ssl.so" % MODDIR,
                "Listen 127.0.0.1:%d https" % self.tls_port,
                'SSLSessionCache "shmcb:%s/run/ssl_scache(512000)"' % r,
                "<VirtualHost 127.0.0.1:%d>" % self.tls_port,
                "    ServerName 127.0.0.1:%d" % self.tls_port,
                "    SSLEngine on",
                '    SSLCertificateFile "%s"' % self.cert_path,
                '    SSLCertificateKeyFile "%s"' % self.key_path,
                "</VirtualHost>",
            ]
        return "\n".join(lines) + "\n"

    def ssl_context(self):
        """A client context that trusts this server's certificate and
        treats an end of TLS without close_notify as an error (Python
        ignores it by default)."""
        import ssl
        ctx = ssl.create_default_context(cafile=self.cert_path)
        ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
        return ctx

    def write_conf(self, conf):
        self.extra_conf = conf
        with open(self.conf_path, "w") as f:
            f.write(self.base_conf())
            f.write("\n# ---- test configuration ----\n")
            f.write(conf)
            f.write("\n")

    def env(self):
        e = dict(os.environ)
        # apache2 reads nothing from these, but a pyenv/venv must not leak
        # into the plugins' environment.
        e["WS_TEST_LOG"] = self.test_log_path
        e.update(self.extra_env)
        if ASAN:
            e.update(sanitizer_env(self.san_dir))
            if COREDUMP:
                e["ASAN_OPTIONS"] += ":disable_coredump=0"
        return e

    @staticmethod
    def _preexec():
        if COREDUMP:
            import resource
            resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,
                                                      resource.RLIM_INFINITY))

    def cores(self):
        """Backtraces of the core files the children left (WS_COREDUMP)."""
        out = []
        for core in sorted(glob.glob(os.path.join(self.san_dir, "core*"))):
            if core in self.sanitizer_reports:
                continue
            self.sanitizer_reports.append(core)
            try:
                bt = subprocess.run(
                    ["gdb", "-batch", "-ex", "thread apply all bt 25",
                     APACHE, core], capture_output=True, text=True,
                    timeout=120).stdout
            except (OSError, subprocess.TimeoutExpired) as e:
                bt = "(no gdb backtrace: %s)" % e
            out.append("==== %s ====\n%s" % (core, bt[-8000:]))
        return "\n".join(out)

    # ---- running --------------------------------------------------------
    def configtest(self):
        """`apache2 -t -f conf`: returns (exit status, stdout+stderr)."""
        p = subprocess.run([APACHE, "-t", "-f", self.conf_path],
                           capture_output=True, text=True, env=self.env(),
                           timeout=60)
        out = p.stdout + p.stderr
        self.check_sanitizers(raise_=False)
        return p.returncode, out

    def start(self, wait=20.0, retry_port=3):
        if self.proc is not None:
            raise HttpdError("already started")
        self.stderr_file = open(self.stderr_path, "ab")
        before = self.generations()
        self.proc = subprocess.Popen(
            [APACHE, "-f", self.conf_path, "-DFOREGROUND"],
            stdin=subprocess.DEVNULL, stdout=self.stderr_file,
            stderr=self.stderr_file, env=self.env(), start_new_session=True,
            cwd=self.root, preexec_fn=self._preexec if COREDUMP else None)
        end = time.monotonic() + wait
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                self.stderr_file.close()
                lost = "Address already in use" in (
                    self.read(self.stderr_path)
                    + self.read(self.error_log_path))
                if retry_port and not self.fixed_port and lost:
                    # Lost a race for the port: take another one.
                    self.port = free_port()
                    if self.tls:
                        self.tls_port = free_port()
                    self.write_conf(self.extra_conf)
                    with open(self.stderr_path, "w"):
                        pass
                    return self.start(wait, retry_port - 1)
                raise HttpdError("httpd exited with %s at start:\n%s\n%s" % (
                    rc, self.read(self.stderr_path),
                    self.read(self.error_log_path)))
            # The port listens before the MPM has set its signal handlers
            # and started children: wait for AH00489 and a served request.
            if self.generations() > before and self._http_ok():
                break
            if time.monotonic() > end:
                self.kill()
                raise HttpdError("httpd did not listen on %d within %ss:\n%s"
                                 % (self.port, wait,
                                    self.read(self.error_log_path)))
            time.sleep(0.05)
        return self

    def _http_ok(self):
        """True when a plain request gets any HTTP response."""
        try:
            with socket.create_connection(("127.0.0.1", self.port),
                                          timeout=2) as s:
                s.sendall(b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Connection: close\r\n\r\n")
                return s.recv(16).startswith(b"HTTP/")
        except OSError:
            return False

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def children(self):
        """pids of the httpd processes whose parent is our httpd."""
        if not self.proc:
            return []
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
            except OSError:
                continue
            fields = st.rsplit(")", 1)[1].split()
            if int(fields[1]) == self.proc.pid:
                out.append(int(d))
        return out

    def generations(self):
        """How many generations have started (AH00489/AH00094 lines)."""
        return self.read(self.error_log_path).count("resuming normal")

    def graceful(self, wait=15.0):
        """SIGUSR1; waits until the new generation answers."""
        if not self.running():
            raise HttpdError("not running")
        before = self.generations()
        os.kill(self.proc.pid, signal.SIGUSR1)
        self.wait_new_generation(before, wait)

    def wait_new_generation(self, before, wait=15.0):
        """Waits until a generation after the `before` first ones (a count
        from generations()) has started and answers."""
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if self.generations() > before and self._http_ok():
                return
            if self.proc.poll() is not None:
                raise HttpdError("httpd died on graceful restart:\n%s"
                                 % self.read(self.error_log_path))
            time.sleep(0.05)
        raise HttpdError("no new generation within %ss of the restart:\n%s"
                         % (wait, self.read(self.error_log_path)[-3000:]))

    def restart(self, wait=15.0):
        """SIGHUP (apache2 -k restart): children are stopped at once, a new
        generation starts; waits until it answers."""
        if not self.running():
            raise HttpdError("not running")
        before = self.read(self.error_log_path).count("resuming normal")
        os.kill(self.proc.pid, signal.SIGHUP)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if self.read(self.error_log_path).count("resuming normal") \
                    > before and self._http_ok():
                return
            time.sleep(0.05)
        raise HttpdError("no new generation %ss after SIGHUP:\n%s"
                         % (wait, self.read(self.error_log_path)))

    def graceful_stop(self, timeout=20.0):
        """SIGWINCH (apache2 -k graceful-stop): children finish, then the
        parent exits; waits for that, then checks like stop()."""
        if not self.running():
            raise HttpdError("not running")
        os.kill(self.proc.pid, signal.SIGWINCH)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.stop()

    def stop(self, timeout=20.0, check=True):
        """SIGTERM; waits for exit (else SIGKILL and failure); then checks
        for crashes and sanitizer reports."""
        if self.proc is None:
            return
        problems = []
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                problems.append("httpd did not exit within %ss of SIGTERM"
                                % timeout)
        elif self.proc.returncode != 0:
            problems.append("httpd had exited by itself (status %s)"
                            % self.proc.returncode)
        self._reap_group()
        self.proc = None
        self.stderr_file.close()
        if check:
            crash = [l for l in self.read(self.error_log_path).splitlines()
                     if CRASH_RE.search(l)]
            if crash:
                problems.append("crash lines in the error log:\n"
                                + "\n".join(crash))
            rep = self.check_sanitizers(raise_=False)
            if rep:
                problems.append(rep)
            rep = self.cores()
            if rep:
                problems.append("core dumps:\n" + rep)
        if problems:
            raise HttpdError("\n".join(problems))

    def _reap_group(self):
        """No process of our session may survive: kill any leftover."""
        if not self.proc:
            return
        pgid = self.proc.pid
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def kill(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def check_sanitizers(self, raise_=True):
        """Reports of ASan/UBSan written so far (each read only once)."""
        out = []
        for p in sorted(glob.glob(os.path.join(self.san_dir, "asan.*")) +
                        glob.glob(os.path.join(self.san_dir, "ubsan.*"))):
            if p in self.sanitizer_reports:
                continue
            self.sanitizer_reports.append(p)
            out.append("==== %s ====\n%s" % (p, symbolize_report(self.read(p))))
        rep = "\n".join(out)
        if rep and raise_:
            raise HttpdError("sanitizer report:\n" + rep)
        return rep

    def cleanup(self):
        if self.proc is not None:
            self.kill()
            self.proc = None
        if os.environ.get("WS_KEEP_TMP"):
            return
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            self.stop(check=exc[0] is None)
        finally:
            self.cleanup()

    # ---- logs -------------------------------------------------------------
    @staticmethod
    def read(path):
        try:
            with open(path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def error_log(self):
        return self.read(self.error_log_path)

    def access_log(self):
        return self.read(self.access_log_path)

    def test_log(self):
        return self.read(self.test_log_path)

    def mark(self):
        """Offsets of the logs now, for since()."""
        return {p: os.path.getsize(p) if os.path.exists(p) else 0
                for p in (self.error_log_path, self.access_log_path,
                          self.test_log_path, self.stderr_path)}

    def since(self, mark, which="error"):
        path = {"error": self.error_log_path, "access": self.access_log_path,
                "test": self.test_log_path, "stderr": self.stderr_path}[which]
        with open(path, "rb") as f:
            f.seek(mark.get(path, 0))
            return f.read().decode("utf-8", "replace")

    def wait_log(self, pred, mark=None, which="error", timeout=5.0):
        """Polls the log (from `mark`) until pred(text) is true; returns the
        text (the last one read, whether or not pred became true)."""
        end = time.monotonic() + timeout
        while True:
            text = self.since(mark or {}, which)
            if pred(text):
                return text
            if time.monotonic() > end:
                return text
            time.sleep(0.05)

    def expect_log(self, what, mark=None, which="error", timeout=5.0,
                   count=1):
        """Waits until the log (from `mark`) holds `what` -- a string, at
        least `count` times, or a predicate on the text -- and returns the
        text; fails saying what was expected once `timeout` has passed."""
        if callable(what):
            pred, wanted = what, "the expected lines"
        else:
            pred = lambda t: t.count(what) >= count  # noqa: E731
            wanted = "%r%s" % (what, " x%d" % count if count > 1 else "")
        text = self.wait_log(pred, mark, which, timeout)
        if not pred(text):
            raise HttpdError("%s not in the %s log within %ss; it has "
                             "since the mark:\n%s" % (wanted, which, timeout,
                                                       text[-4000:]))
        return text


# ---- make run ---------------------------------------------------------------

def demo_conf(h):
    # The exec plugin's system monitor, copied where httpd's user can run
    # it.
    sysmon = os.path.join(h.root, "sysmon.sh")
    shutil.copy(os.path.join(REPO, "demo", "sysmon.sh"), sysmon)
    os.chmod(sysmon, 0o755)
    return """
<Location /echo>
    SetHandler websocket-handler
    WebSocketHandler "{echo}" echo_init
</Location>
<Location /dumb-increment>
    SetHandler websocket-handler
    WebSocketHandler "{dumb}" dumb_increment_init
</Location>
# Topics: the live feed (/sub/feed, fed by curl -d ... /pub/feed) and chat.
<Location /sub>
    SetHandler websocket-handler
    WebSocketHandler "{pubsub}" pubsub_init
    WebSocketTopicHistory 100
</Location>
<Location /pub>
    SetHandler websocket-publish
    Require ip 127.0.0.1
</Location>
<Location /chat>
    SetHandler websocket-handler
    WebSocketHandler "{chat}" chat_init
</Location>
<Location /monitor>
    SetHandler websocket-handler
    WebSocketHandler "{exec_so}" exec_init
    WebSocketParam command "{sysmon}"
    WebSocketParam max_processes 20
</Location>
""".format(echo=h.echo_so, dumb=h.dumb_so, pubsub=plugin_so("pubsub"),
           chat=plugin_so("chat"), exec_so=plugin_so("exec"), sysmon=sysmon)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="serve the demo in the foreground")
    run.add_argument("--port", type=int, default=8080)
    run.add_argument("--mpm", choices=MPMS, default="event")
    run.add_argument("--loglevel", default="warn websocket:info")
    args = ap.parse_args(argv)

    if not built():
        print("%s is missing: run make first" % module_so(), file=sys.stderr)
        return 1
    demo = os.path.join(REPO, "demo")
    h = Httpd(port=args.port, mpm=args.mpm, loglevel=args.loglevel,
              docroot=demo if os.path.isdir(demo) else None)
    h.write_conf(demo_conf(h))

    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        try:
            h.start()
        except HttpdError as e:
            print(e, file=sys.stderr)
            return 1
        print("mod_websocket demo: %s  (echo: %s, dumb-increment: %s, "
              "chat: %s, feed: %s, monitor: %s)"
              % (h.url("/"), h.url("/echo", "ws"),
                 h.url("/dumb-increment", "ws"), h.url("/chat/<room>", "ws"),
                 h.url("/sub/feed", "ws"), h.url("/monitor", "ws")))
        print("publish to the feed: curl -d 'hello' %s" % h.url("/pub/feed"))
        print("error log: %s   (Ctrl-C stops)" % h.error_log_path)
        sys.stdout.flush()
        while not stopping and h.running():
            time.sleep(0.2)
        if not h.running():
            print("httpd exited:\n" + h.error_log()[-4000:], file=sys.stderr)
            h.proc = None
            return 1
        print("stopping")
        h.stop()
        return 0
    except HttpdError as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        h.cleanup()


if __name__ == "__main__":
    sys.exit(main())
