"""Every log line of the module and its plugins carries its own number
(WSLOGNO, ws_log.h), as httpd's AH numbers: tools/lognos.py checks that
none lacks one and none is used twice."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_log_call_has_a_unique_number():
    p = subprocess.run([sys.executable, os.path.join(REPO, "tools", "lognos.py")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert " 0 problem(s)" in p.stdout, p.stdout
