# mod_websocket - build, run, test.  See README.
#
#   make            the module and the example plugins, with apxs
#   make run        a private httpd on 127.0.0.1:$(PORT) serving the demo
#   make test       unit tests, integration tests, and the integration
#                   tests again against an ASan+UBSan build
#   make bench      benchmarks (docs/performance.md)
#   make install    into apxs's LIBEXECDIR and /etc/apache2/mods-available
#                   (DESTDIR honoured)

PYTHON  ?= /usr/bin/python3
APXS    ?= apxs
CC      ?= gcc
PORT    ?= 8080
CSTD    := -std=gnu99
WARN    := -Wall -Wextra

# Everything make run / make test use, from Debian 12; installed when missing.
# apache2-bin, not apache2: we never want the system service started.
DEB_PACKAGES := apache2-bin apache2-dev apache2-utils libssl-dev zlib1g-dev \
                python3-pytest python3-websockets openssl gcc clang \
                libclang-rt-14-dev chromium

MODULE_SRC := mod_websocket.c ws_conn.c ws_sync.c ws_async.c ws_frame.c ws_deflate.c \
              ws_handshake.c
MODULE_HDR := ws_conn.h ws_async.h ws_frame.h ws_deflate.h ws_handshake.h \
              websocket_plugin.h
PLUGINS    := echo dumb_increment
PLUGIN_SO  := $(PLUGINS:%=plugins/.libs/mod_websocket_%.so)
TEST_PLUGINS   := $(patsubst t/plugins/%.c,%,$(wildcard t/plugins/*.c))
TEST_PLUGIN_SO := $(TEST_PLUGINS:%=t/plugins/.libs/%.so)
UNIT_TESTS := t/test_frame t/test_deflate

# Extra compiler/linker flags for apxs (the ASan build sets them).
SAN_CFLAGS  ?=
SAN_LDFLAGS ?=
APXS_FLAGS = -Wc,$(CSTD) -Wc,-Wall -Wc,-Wextra -Wc,-O2 -Wc,-g $(SAN_CFLAGS) $(SAN_LDFLAGS)

LIBEXECDIR := $(shell $(APXS) -q LIBEXECDIR 2>/dev/null)

.PHONY: all build deps run test unit itest asan bench install clean warnings

all: deps build

build: .libs/mod_websocket.so $(PLUGIN_SO) $(TEST_PLUGIN_SO)

deps:
	@sh .ci/deps.sh $(DEB_PACKAGES)

.libs/mod_websocket.so: $(MODULE_SRC) $(MODULE_HDR)
	$(APXS) -c $(APXS_FLAGS) -o mod_websocket.la $(MODULE_SRC) -lz

plugins/.libs/mod_websocket_%.so: plugins/%.c websocket_plugin.h
	cd plugins && $(APXS) -c $(APXS_FLAGS) -Wc,-I.. -Wl,-lpthread \
	    -o mod_websocket_$*.la $*.c

t/plugins/.libs/%.so: t/plugins/%.c websocket_plugin.h
	cd t/plugins && $(APXS) -c $(APXS_FLAGS) -Wc,-I../.. -Wl,-lpthread \
	    -o $*.la $*.c

# The same build with AddressSanitizer and UBSan, in build/asan (apxs puts
# objects beside the sources, so the sources are copied there first).
ASAN_DIR := build/asan
asan: deps
	@mkdir -p $(ASAN_DIR)/plugins $(ASAN_DIR)/t/plugins
	@cp -p $(MODULE_SRC) $(MODULE_HDR) Makefile $(ASAN_DIR)/
	@mkdir -p $(ASAN_DIR)/.ci $(ASAN_DIR)/bench
	@cp -p .ci/deps.sh $(ASAN_DIR)/.ci/ && cp -p bench/Makefile.inc $(ASAN_DIR)/bench/
	@cp -p plugins/*.c $(ASAN_DIR)/plugins/
	@cp -p t/plugins/*.c $(ASAN_DIR)/t/plugins/ 2>/dev/null || true
	$(MAKE) -C $(ASAN_DIR) build \
	    SAN_CFLAGS="-Wc,-fsanitize=address,undefined -Wc,-fno-omit-frame-pointer -Wc,-fno-sanitize-recover=undefined" \
	    SAN_LDFLAGS="-Wl,-fsanitize=address,undefined"

# ---- tests ----------------------------------------------------------------

# Every C file, with gcc and with clang, -Wall -Wextra, warnings as errors.
APACHE_INC = -I$(shell $(APXS) -q INCLUDEDIR) $(shell apr-1-config --cppflags --includes) \
             $(shell apu-1-config --includes)
APACHE_C = $(MODULE_SRC) $(wildcard plugins/*.c) $(wildcard t/plugins/*.c)
PLAIN_C  = $(wildcard t/*.c) $(wildcard bench/*.c)
warnings: deps
	@for cc in gcc clang; do \
	    for f in $(APACHE_C); do \
	        $$cc $(CSTD) $(WARN) -Werror -O2 -fsyntax-only -I. $(APACHE_INC) $$f || exit 1; \
	    done; \
	    for f in $(PLAIN_C); do \
	        $$cc $(CSTD) $(WARN) -Werror -O2 -fsyntax-only -I. $$f || exit 1; \
	    done; \
	done; echo "warnings: none (gcc and clang, -Wall -Wextra)"

t/test_deflate: t/test_deflate.c ws_deflate.c ws_deflate.h
	$(CC) $(CSTD) $(WARN) -O2 -g -pthread -o $@ t/test_deflate.c ws_deflate.c -lz

t/test_frame: t/test_frame.c ws_frame.c ws_frame.h
	$(CC) $(CSTD) $(WARN) -O2 -g -o $@ t/test_frame.c ws_frame.c

t/fuzz_frame_replay: t/fuzz_frame.c ws_frame.c ws_frame.h
	$(CC) $(CSTD) $(WARN) -O1 -g -DFUZZ_STANDALONE -fsanitize=address,undefined \
	    -fno-sanitize-recover=undefined -o $@ t/fuzz_frame.c ws_frame.c

unit: deps $(UNIT_TESTS) t/fuzz_frame_replay
	@for t in $(UNIT_TESTS); do echo "== $$t"; ./$$t || exit 1; done
	@echo "== t/fuzz_frame_replay (seeded random inputs under ASan+UBSan)"
	@./t/fuzz_frame_replay && echo "fuzz replay: no sanitizer report"

itest: all
	$(PYTHON) -m pytest -q -p no:cacheprovider t

# The summary line pytest prints last is the suite's verdict.
test: warnings unit all asan
	WS_ASAN=1 $(PYTHON) -m pytest -q -p no:cacheprovider -m "not noasan" t
	@echo "== the conformance suite on prefork (synchronous engine)"
	WS_CONFORMANCE_MPM=prefork $(PYTHON) -m pytest -q -p no:cacheprovider t/test_conformance_*.py
	$(PYTHON) -m pytest -q -p no:cacheprovider t

run: all
	$(PYTHON) t/harness.py run --port $(PORT)

# ---- benchmarks (docs/performance.md) -----------------------------------------

include bench/Makefile.inc

bench: all $(BENCH_TOOLS)
	$(PYTHON) bench/run.py

# ---- install ----------------------------------------------------------------

install: build
	install -d $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)/etc/apache2/mods-available
	install -m 644 .libs/mod_websocket.so $(DESTDIR)$(LIBEXECDIR)/mod_websocket.so
	for p in $(PLUGINS); do \
	    install -m 644 plugins/.libs/mod_websocket_$$p.so \
	        $(DESTDIR)$(LIBEXECDIR)/mod_websocket_$$p.so || exit 1; \
	done
	echo "LoadModule websocket_module $(LIBEXECDIR)/mod_websocket.so" \
	    > $(DESTDIR)/etc/apache2/mods-available/websocket.load
	install -m 644 mod_websocket.conf $(DESTDIR)/etc/apache2/mods-available/websocket.conf

clean:
	rm -rf .libs *.la *.lo *.slo *.o build \
	       plugins/.libs plugins/*.la plugins/*.lo plugins/*.slo plugins/*.o \
	       t/plugins/.libs t/plugins/*.la t/plugins/*.lo t/plugins/*.slo \
	       t/plugins/*.o $(UNIT_TESTS) t/fuzz_frame_replay $(BENCH_TOOLS)
