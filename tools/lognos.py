#!/usr/bin/python3
"""Log line numbers of mod_websocket (ws_log.h): every ap_log_*error() and
WS_CONN_LOG() call of the module's sources carries WSLOGNO(nnnnn) in front
of its format, and
no number appears twice.

    /usr/bin/python3 tools/lognos.py            check; exit 1 on a problem
    /usr/bin/python3 tools/lognos.py --assign   give the next numbers to
                                                the calls that lack one

The next number is kept in tools/lognos.next so that numbers are never
reused, even when a line is deleted.
"""

import glob
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEXT = os.path.join(REPO, "tools", "lognos.next")
CALL = re.compile(r"\b(?:ap_log_(?:r|c|p)?error|WS_CONN_LOG)\s*\(")
NUMBER = re.compile(r"WSLOGNO\((\d{5})\)")


def sources():
    """The module's C files and the plugins' (what runs inside httpd)."""
    out = sorted(glob.glob(os.path.join(REPO, "*.c")))
    out += sorted(glob.glob(os.path.join(REPO, "plugins", "*.c")))
    out += sorted(glob.glob(os.path.join(REPO, "plugins", "*", "*.c")))
    return out


def calls(text):
    """(start of call, index of the format's first string literal) of
    every call in text."""
    for m in CALL.finditer(text):
        # The format is the first string literal after the call's start
        # (APLOG_MARK, the level, the status and the context come first).
        q = text.find('"', m.end())
        w = text.find("WSLOGNO(", m.end())
        if 0 <= w < q:
            q = w
        yield m.start(), q


def check():
    seen, problems = {}, []
    for path in sources():
        text = open(path).read()
        for start, fmt in calls(text):
            line = text.count("\n", 0, start) + 1
            where = "%s:%d" % (os.path.relpath(path, REPO), line)
            m = NUMBER.match(text, fmt)
            if not m:
                problems.append("%s: log call without WSLOGNO()" % where)
                continue
            if m.group(1) in seen:
                problems.append("%s: WSLOGNO(%s) also at %s"
                                % (where, m.group(1), seen[m.group(1)]))
            seen[m.group(1)] = where
    return seen, problems


def assign():
    with open(NEXT) as f:
        n = int(f.read().strip())
    for path in sources():
        text = open(path).read()
        out, last = [], 0
        for start, fmt in calls(text):
            if NUMBER.match(text, fmt):
                continue
            out.append(text[last:fmt])
            out.append("WSLOGNO(%05d) " % n)
            last = fmt
            n += 1
        if out:
            out.append(text[last:])
            new = "".join(out)
            if '#include "ws_log.h"' not in new:
                new = add_include(new)
            with open(path, "w") as f:
                f.write(new)
    with open(NEXT, "w") as f:
        f.write("%d\n" % n)


def add_include(text):
    """After the last #include "..." of the file."""
    last = None
    for m in re.finditer(r'^#include "[^"]+"\n', text, re.M):
        last = m
    if not last:
        return '#include "ws_log.h"\n' + text
    return text[:last.end()] + '#include "ws_log.h"\n' + text[last.end():]


def main(argv):
    if "--assign" in argv:
        assign()
    seen, problems = check()
    for p in problems:
        print(p)
    print("%d log calls numbered, %d problem(s)" % (len(seen), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
