"""make install with DESTDIR: the module, the example plugins and the
Debian mods-available files land where apxs and a2enmod expect them, and
the installed files make a configuration that httpd accepts."""
import os
import subprocess

import harness

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def apxs_libexecdir():
    return subprocess.check_output(["apxs", "-q", "LIBEXECDIR"], text=True).strip()


def test_make_install_destdir(tmp_path):
    dest = tmp_path / "root"
    subprocess.run(["make", "-s", "install", "DESTDIR=%s" % dest], cwd=REPO,
                   check=True, stdout=subprocess.DEVNULL)
    libexec = str(dest) + apxs_libexecdir()
    for name in ("mod_websocket.so", "mod_websocket_echo.so",
                 "mod_websocket_dumb_increment.so",
                 "mod_websocket_pubsub.so", "mod_websocket_chat.so"):
        assert os.path.isfile(os.path.join(libexec, name)), name
    avail = dest / "etc/apache2/mods-available"
    load = (avail / "websocket.load").read_text()
    assert load.strip() == ("LoadModule websocket_module %s/mod_websocket.so"
                            % apxs_libexecdir())
    conf = (avail / "websocket.conf").read_text()
    assert "<IfModule websocket_module>" in conf

    # The installed files, as a2enmod would include them, pass apache2 -t.
    h = harness.Httpd(load_module=False)
    try:
        installed_so = os.path.join(libexec, "mod_websocket.so")
        h.write_conf("LoadModule websocket_module %s\nInclude %s\n"
                     "<Location /echo>\n  SetHandler websocket-handler\n"
                     "  WebSocketHandler %s echo_init\n</Location>\n"
                     % (installed_so, avail / "websocket.conf",
                        os.path.join(libexec, "mod_websocket_echo.so")))
        rc, out = h.configtest()
        assert rc == 0, out
    finally:
        h.cleanup()


def test_make_install_plugindir(tmp_path):
    """PLUGINDIR moves the example plugins, and websocket.conf's commented
    examples name them there (the Debian package uses this)."""
    dest = tmp_path / "root"
    plugindir = "/usr/lib/apache2/websocket"
    subprocess.run(["make", "-s", "install", "DESTDIR=%s" % dest,
                    "PLUGINDIR=%s" % plugindir], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    plugins = sorted(os.path.basename(p)[:-2] for p in
                     os.listdir(os.path.join(REPO, "plugins"))
                     if p.endswith(".c"))
    for name in plugins:
        so = "mod_websocket_%s.so" % name
        assert os.path.isfile(str(dest) + plugindir + "/" + so), so
        assert not os.path.exists(os.path.join(
            str(dest) + apxs_libexecdir(), so)), so
    conf = (dest / "etc/apache2/mods-available/websocket.conf").read_text()
    assert "%s/mod_websocket_echo.so echo_init" % plugindir in conf
    assert "/modules/mod_websocket_echo.so" not in conf


def test_the_topics_configuration_works_as_written(tmp_path):
    """The issue's configuration, word for word, with the plugins where
    make install puts them (ServerRoot/modules is LIBEXECDIR)."""
    from topics import publish, subscribe
    from wsraw import WSClient, OP_TEXT
    dest = tmp_path / "root"
    subprocess.run(["make", "-s", "install", "DESTDIR=%s" % dest], cwd=REPO,
                   check=True, stdout=subprocess.DEVNULL)
    libexec = str(dest) + apxs_libexecdir()
    h = harness.Httpd(load_module=False)
    try:
        os.symlink(libexec, os.path.join(h.root, "modules"))
        h.write_conf("""\
LoadModule websocket_module modules/mod_websocket.so
<Location /sub>
    SetHandler websocket-handler
    WebSocketHandler modules/mod_websocket_pubsub.so pubsub_init
</Location>
<Location /pub>
    SetHandler websocket-publish
    Require ip 127.0.0.1
</Location>
<Location /chat>
    SetHandler websocket-handler
    WebSocketHandler modules/mod_websocket_chat.so chat_init
</Location>
""")
        h.start()
        with subscribe(h, "news") as c:
            assert publish(h, "news", "as written")["subscribers"] == 1
            assert c.recv_message() == (OP_TEXT, b"as written")
        with WSClient(h.port, "/chat/r") as a, WSClient(h.port, "/chat/r") as b:
            a.send_text("hi")
            assert b.recv_message() == (OP_TEXT, b"hi")
        h.stop()
    finally:
        h.cleanup()
