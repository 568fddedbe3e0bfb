/*
 * ws_log.h - every line mod_websocket writes to the error log starts with
 * a number of its own, as httpd's own modules' lines do ("AH01234: "),
 * so that an admin can search for it and a line keeps its identity when
 * its wording changes.  The prefix is "WS", not httpd's "AH": httpd
 * hands out its numbers to its own modules only.
 *
 * Numbers are never reused.  tools/lognos.py gives the next free one to
 * every call that lacks it (--assign) and checks that each call has one
 * and that none appears twice (t/test_lognos.py runs it).
 */
#ifndef WS_LOG_H
#define WS_LOG_H

#define WSLOGNO(n) "WS" #n ": "

#endif /* WS_LOG_H */
