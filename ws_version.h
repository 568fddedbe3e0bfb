/*
 * ws_version.h - mod_websocket's version, in one place.
 *
 * The Debian changelog's version must be the same (debian/rules checks
 * it when it builds the package, t/test_deb.py when it tests it); the
 * module logs it at startup and docs/directives.html names it.
 */
#ifndef WS_VERSION_H
#define WS_VERSION_H

#define WS_VERSION "0.9.0"

#endif
