# mod_websocket - build, run, test.  See README.
#
#   make            the module and the example plugins, with apxs
#   make run        a private httpd on 127.0.0.1:$(PORT) serving the demo
#   make test       unit tests, integration tests, and the integration
#                   tests again against an ASan+UBSan build
#   make bench      benchmarks (docs/performance.md)
#   make fuzz       libFuzzer targets, FUZZ_SECONDS each (docs/performance.md)
#   make install    into apxs's LIBEXECDIR and /etc/apache2/mods-available
#                   (DESTDIR honoured; PLUGINDIR for the example plugins)
#   make deb        the Debian packages, into build/deb/ (debian/)
#   make docs       regenerate the directive table, reference and README
#                   entries from docs/directives.def (needs python3)

PYTHON  ?= /usr/bin/python3
APXS    ?= apxs
CC      ?= gcc
PORT    ?= 8080
CSTD    := -std=gnu99
WARN    := -Wall -Wextra

# Everything make run / make test use, from Debian 12; installed when missing.
# apache2-bin, not apache2: we never want the system service started.
# What make deb needs (debian/control's Build-Depends, and lintian).
DEB_BUILD_PACKAGES := apache2-dev zlib1g-dev libhiredis-dev build-essential debhelper \
                      dpkg-dev fakeroot lintian
DEB_PACKAGES := apache2-bin apache2-dev apache2-utils libssl-dev zlib1g-dev \
                python3-pytest python3-websockets openssl gcc clang \
                libclang-rt-14-dev chromium python3-h2 libhiredis-dev \
                redis-server $(DEB_BUILD_PACKAGES)

# permessage-deflate: sans-I/O, also built into the unit tests, fuzz
# targets and benchmarks.
DEFLATE_SRC := ws_deflate.c ws_deflate_negotiate.c ws_deflate_fast.c
DEFLATE_HDR := ws_deflate.h ws_deflate_int.h
MODULE_SRC := mod_websocket.c ws_config.c ws_conn.c ws_in.c ws_out.c ws_api.c \
              ws_topic.c ws_topic_deliver.c ws_topic_form.c ws_publish.c \
              ws_shm.c ws_ring.c ws_ring_history.c \
              ws_redis.c ws_redis_conn.c ws_redis_relay.c ws_redis_sub.c \
              ws_redis_interest.c ws_stats.c ws_limits.c \
              ws_io.c ws_sync.c ws_async.c ws_async_loop.c \
              ws_async_close.c ws_detach.c ws_watchdog.c ws_dispatch.c ws_timer.c ws_mem.c ws_thread.c \
              ws_blocks.c ws_frame.c $(DEFLATE_SRC) ws_handshake.c
MODULE_HDR := ws_config.h ws_conn.h ws_topic.h ws_publish.h ws_topic_int.h ws_shm.h ws_ring.h \
              ws_redis.h ws_redis_int.h ws_stats.h ws_limits.h \
              ws_ring_int.h ws_io.h ws_async.h ws_async_int.h ws_detach.h ws_dispatch.h ws_timer.h ws_mem.h ws_thread.h \
              ws_blocks.h \
              ws_frame.h $(DEFLATE_HDR) ws_handshake.h websocket_plugin.h ws_directives.h \
              ws_version.h ws_log.h
PLUGINS    := $(patsubst plugins/%.c,%,$(wildcard plugins/*.c))
PLUGIN_SO  := $(PLUGINS:%=plugins/.libs/mod_websocket_%.so)
TEST_PLUGINS   := $(patsubst t/plugins/%.c,%,$(wildcard t/plugins/*.c))
TEST_PLUGIN_SO := $(TEST_PLUGINS:%=t/plugins/.libs/%.so)
# Apache modules the tests load beside ours (t/modules/mod_*.c).
TEST_MODULES   := $(patsubst t/modules/%.c,%,$(wildcard t/modules/*.c))
TEST_MODULE_SO := $(TEST_MODULES:%=t/modules/.libs/%.so)
UNIT_TESTS := t/test_frame t/test_deflate t/test_deflate_negotiate t/test_deflate_fast t/test_handshake \
              t/test_dispatch t/test_timer t/test_blocks t/test_ring

# Extra compiler/linker flags for apxs (the ASan build sets them).
SAN_CFLAGS  ?=
SAN_LDFLAGS ?=
APXS_FLAGS = -Wc,$(CSTD) -Wc,-Wall -Wc,-Wextra -Wc,-O2 -Wc,-g $(SAN_CFLAGS) $(SAN_LDFLAGS)

LIBEXECDIR := $(shell $(APXS) -q LIBEXECDIR 2>/dev/null)
# Where make install puts the example plugins (the Debian package: its own
# directory, since everything in LIBEXECDIR is taken for an Apache module).
PLUGINDIR  ?= $(LIBEXECDIR)

.PHONY: all build module deps run test unit itest asan bench install clean \
        warnings deb docs fuzz fuzz-merge

all: deps build

build: module $(TEST_PLUGIN_SO) $(TEST_MODULE_SO)

# What is installed: the module and the example plugins.
module: .libs/mod_websocket.so $(PLUGIN_SO)

deps:
	@sh .ci/deps.sh $(DEB_PACKAGES)

.libs/mod_websocket.so: $(MODULE_SRC) $(MODULE_HDR)
	$(APXS) -c $(APXS_FLAGS) -o mod_websocket.la $(MODULE_SRC) -lz -lhiredis

plugins/.libs/mod_websocket_%.so: plugins/%.c websocket_plugin.h
	cd plugins && $(APXS) -c $(APXS_FLAGS) -Wc,-I.. -Wl,-lpthread \
	    -o mod_websocket_$*.la $*.c

# The exec plugin is made of several files (plugins/exec/exec.h lists them).
EXEC_SRC := plugins/exec.c $(wildcard plugins/exec/*.c)
EXEC_HDR := $(wildcard plugins/exec/*.h)
plugins/.libs/mod_websocket_exec.so: $(EXEC_SRC) $(EXEC_HDR) websocket_plugin.h
	cd plugins && $(APXS) -c $(APXS_FLAGS) -Wc,-I.. -Wl,-lpthread \
	    -o mod_websocket_exec.la $(EXEC_SRC:plugins/%=%)

t/plugins/.libs/%.so: t/plugins/%.c t/plugins/test_log.h websocket_plugin.h
	cd t/plugins && $(APXS) -c $(APXS_FLAGS) -Wc,-I../.. -Wl,-lpthread \
	    -o $*.la $*.c

t/modules/.libs/%.so: t/modules/%.c
	cd t/modules && $(APXS) -c $(APXS_FLAGS) -o $*.la $*.c

# The same build with AddressSanitizer and UBSan, in build/asan (apxs puts
# objects beside the sources, so the sources are copied there first).
ASAN_DIR := build/asan
asan: deps
	@mkdir -p $(ASAN_DIR)/plugins $(ASAN_DIR)/t/plugins $(ASAN_DIR)/t/modules
	@cp -p $(MODULE_SRC) $(MODULE_HDR) Makefile $(ASAN_DIR)/
	@mkdir -p $(ASAN_DIR)/.ci $(ASAN_DIR)/bench
	@cp -p .ci/deps.sh $(ASAN_DIR)/.ci/ && cp -p bench/Makefile.inc $(ASAN_DIR)/bench/
	@cp -p plugins/*.c $(ASAN_DIR)/plugins/
	@mkdir -p $(ASAN_DIR)/plugins/exec && cp -p plugins/exec/*.[ch] $(ASAN_DIR)/plugins/exec/
	@cp -p t/plugins/*.c t/plugins/*.h $(ASAN_DIR)/t/plugins/ 2>/dev/null || true
	@cp -p t/modules/*.c $(ASAN_DIR)/t/modules/ 2>/dev/null || true
	$(MAKE) -C $(ASAN_DIR) build \
	    SAN_CFLAGS="-Wc,-fsanitize=address,undefined -Wc,-fno-omit-frame-pointer -Wc,-fno-sanitize-recover=undefined" \
	    SAN_LDFLAGS="-Wl,-fsanitize=address,undefined"

# ---- tests ----------------------------------------------------------------

# Every C file, with gcc and with clang, -Wall -Wextra, warnings as errors.
APACHE_INC = -I$(shell $(APXS) -q INCLUDEDIR) $(shell apr-1-config --cppflags --includes) \
             $(shell apu-1-config --includes)
APACHE_C = $(MODULE_SRC) $(wildcard plugins/*.c) $(wildcard plugins/exec/*.c) $(wildcard t/plugins/*.c) \
           $(wildcard t/modules/*.c) t/test_blocks.c
# Sans-Apache sources are checked without the Apache include paths too.
PLAIN_C  = ws_ring.c ws_ring_history.c $(filter-out t/test_blocks.c,$(wildcard t/*.c)) \
           $(wildcard bench/*.c)
warnings: deps
	@for cc in gcc clang; do \
	    for f in $(APACHE_C); do \
	        $$cc $(CSTD) $(WARN) -Werror -O2 -fsyntax-only -I. $(APACHE_INC) $$f || exit 1; \
	    done; \
	    for f in $(PLAIN_C); do \
	        $$cc $(CSTD) $(WARN) -Werror -O2 -fsyntax-only -I. $$f || exit 1; \
	    done; \
	done; echo "warnings: none (gcc and clang, -Wall -Wextra)"

t/test_deflate: t/test_deflate.c t/check.h $(DEFLATE_SRC) $(DEFLATE_HDR)
	$(CC) $(CSTD) $(WARN) -O2 -g -pthread -o $@ t/test_deflate.c $(DEFLATE_SRC) -lz

t/test_deflate_negotiate: t/test_deflate_negotiate.c t/check.h $(DEFLATE_SRC) $(DEFLATE_HDR)
	$(CC) $(CSTD) $(WARN) -O2 -g -pthread -o $@ t/test_deflate_negotiate.c $(DEFLATE_SRC) -lz

t/test_deflate_fast: t/test_deflate_fast.c t/check.h bench/json_doc.c bench/json_doc.h \
                     $(DEFLATE_SRC) $(DEFLATE_HDR)
	$(CC) $(CSTD) $(WARN) -O2 -g -pthread -o $@ t/test_deflate_fast.c bench/json_doc.c \
	    $(DEFLATE_SRC) -lz

t/test_handshake: t/test_handshake.c t/check.h ws_handshake.c ws_handshake.h $(DEFLATE_SRC) $(DEFLATE_HDR)
	$(CC) $(CSTD) $(WARN) -O2 -g -pthread -o $@ t/test_handshake.c ws_handshake.c \
	    $(DEFLATE_SRC) -lz

t/test_frame: t/test_frame.c ws_frame.c ws_frame.h
	$(CC) $(CSTD) $(WARN) -O2 -g -o $@ t/test_frame.c ws_frame.c

t/test_dispatch: t/test_dispatch.c ws_dispatch.c ws_dispatch.h ws_thread.c ws_thread.h
	$(CC) $(CSTD) $(WARN) -O2 -g -pthread -o $@ t/test_dispatch.c ws_thread.c

t/test_timer: t/test_timer.c ws_timer.c ws_timer.h
	$(CC) $(CSTD) $(WARN) -O2 -g -o $@ t/test_timer.c ws_timer.c

t/test_blocks: t/test_blocks.c ws_blocks.c ws_blocks.h
	$(CC) $(CSTD) $(WARN) -O2 -g -pthread $(APACHE_INC) -o $@ t/test_blocks.c \
	    $(shell apr-1-config --link-ld)

# The ring's tests need its test hooks (kill a writer mid-copy, publish
# while a reader copies); t/test_ring_asan is the same under ASan+UBSan.
RING_SRC      := ws_ring.c ws_ring_history.c
RING_HDR      := ws_ring.h ws_ring_int.h
RING_TEST_SRC := t/test_ring.c t/test_ring_procs.c $(RING_SRC)
RING_TEST_DEP := $(RING_TEST_SRC) t/test_ring.h $(RING_HDR)
t/test_ring: $(RING_TEST_DEP)
	$(CC) $(CSTD) $(WARN) -O2 -g -pthread -DWS_RING_TEST_HOOKS -o $@ $(RING_TEST_SRC)

t/test_ring_asan: $(RING_TEST_DEP)
	$(CC) $(CSTD) $(WARN) -O1 -g -pthread -DWS_RING_TEST_HOOKS -fsanitize=address,undefined \
	    -fno-omit-frame-pointer -fno-sanitize-recover=undefined -o $@ $(RING_TEST_SRC)

# ---- fuzzing -----------------------------------------------------------------
# Each libFuzzer target t/fuzz_X.c, with the sources it exercises.  Its
# committed corpus is t/fuzz/corpus/fuzz_X/; make unit replays it (and the
# frame target's seeded random inputs) with a gcc ASan+UBSan build.
FUZZ_TARGETS := fuzz_frame fuzz_handshake fuzz_extensions fuzz_inflate fuzz_deflate_fast
FUZZ_SRC_fuzz_frame      := ws_frame.c
FUZZ_SRC_fuzz_handshake  := ws_handshake.c $(DEFLATE_SRC)
FUZZ_SRC_fuzz_extensions := $(DEFLATE_SRC)
FUZZ_SRC_fuzz_inflate    := $(DEFLATE_SRC)
FUZZ_SRC_fuzz_deflate_fast := $(DEFLATE_SRC)
FUZZ_LIBS := -lz -pthread
FUZZ_REPLAY := $(FUZZ_TARGETS:%=t/%_replay)
FUZZ_DIR := build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_CORPUS = t/fuzz/corpus/$(1)

t/%_replay: t/%.c t/fuzz.h t/fuzz_standalone.c ws_frame.h $(DEFLATE_HDR) ws_handshake.h \
            ws_frame.c $(DEFLATE_SRC) ws_handshake.c
	$(CC) $(CSTD) $(WARN) -O1 -g -DFUZZ_STANDALONE -fsanitize=address,undefined \
	    -fno-sanitize-recover=undefined -o $@ t/$*.c t/fuzz_standalone.c \
	    $(FUZZ_SRC_$*) $(FUZZ_LIBS)

$(FUZZ_DIR)/%: t/%.c t/fuzz.h ws_frame.h $(DEFLATE_HDR) ws_handshake.h \
               ws_frame.c $(DEFLATE_SRC) ws_handshake.c
	@mkdir -p $(FUZZ_DIR)
	clang $(CSTD) $(WARN) -O1 -g -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -o $@ t/$*.c $(FUZZ_SRC_$*) $(FUZZ_LIBS)

# make fuzz FUZZ_SECONDS=N: each target for N seconds, starting from its
# committed corpus; what it finds new goes to build/fuzz/corpus/X (make
# fuzz-merge minimizes it into the committed one).  Stops at a finding,
# leaving the input in build/fuzz/X-crash-* (replay it with t/X_replay).
# FUZZ_RUNS=N stops each target after N executions instead.
FUZZ_RUNS ?= -1
fuzz: deps $(FUZZ_TARGETS:%=$(FUZZ_DIR)/%)
	@for t in $(FUZZ_TARGETS); do \
	    case $$t in fuzz_inflate) opts=-max_len=32768;; \
	        fuzz_deflate_fast) opts=-max_len=65537;; *) opts=;; esac; \
	    mkdir -p $(FUZZ_DIR)/corpus/$$t $(call FUZZ_CORPUS,$$t); \
	    echo "== $$t"; \
	    (cd $(FUZZ_DIR) && ./$$t -max_total_time=$(FUZZ_SECONDS) \
	        -runs=$(FUZZ_RUNS) $$opts -print_final_stats=1 \
	        -artifact_prefix=$$t- corpus/$$t ../../$(call FUZZ_CORPUS,$$t)) \
	        > $(FUZZ_DIR)/$$t.log 2>&1 || { tail -40 $(FUZZ_DIR)/$$t.log; exit 1; }; \
	    awk -v t=$$t '/^stat::number_of_executed_units/ { n = $$2 } \
	        /^stat::average_exec_per_sec/ { r = $$2 } \
	        /^stat::new_units_added/ { u = $$2 } \
	        END { printf "%s: %d executions (%d/s), %d new inputs, " \
	              "no finding\n", t, n, r, u }' $(FUZZ_DIR)/$$t.log; \
	done

# make fuzz-merge: the committed corpora become the smallest sets that keep
# every feature (edges and hit counts) of what they and build/fuzz/corpus
# reach; a target for which that is more than FUZZ_CORPUS_MAX files keeps
# every edge only.
FUZZ_CORPUS_MAX ?= 400
fuzz-merge: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/%)
	@for t in $(FUZZ_TARGETS); do \
	    out=$(FUZZ_DIR)/merged/$$t; \
	    for counters in 1 0; do \
	        rm -rf $$out && mkdir -p $$out $(FUZZ_DIR)/corpus/$$t; \
	        $(FUZZ_DIR)/$$t -merge=1 -use_counters=$$counters $$out \
	            $(call FUZZ_CORPUS,$$t) $(FUZZ_DIR)/corpus/$$t \
	            > $(FUZZ_DIR)/$$t.merge.log 2>&1 || exit 1; \
	        [ $$(ls $$out | wc -l) -le $(FUZZ_CORPUS_MAX) ] && break; \
	    done; \
	    rm -f $(call FUZZ_CORPUS,$$t)/* && cp $$out/* $(call FUZZ_CORPUS,$$t)/; \
	    echo "$$t: $$(ls $(call FUZZ_CORPUS,$$t) | wc -l) files, $$(cat \
	        $(call FUZZ_CORPUS,$$t)/* | wc -c) bytes$$([ $$counters = 0 ] \
	        && echo ', edges only')"; \
	done

unit: deps $(UNIT_TESTS) $(FUZZ_REPLAY) t/test_ring_asan
	@for t in $(UNIT_TESTS); do echo "== $$t"; ./$$t || exit 1; done
	@echo "== t/test_ring_asan (the ring's tests under ASan+UBSan)"
	@./t/test_ring_asan
	@echo "== t/fuzz_frame_replay (seeded random inputs under ASan+UBSan)"
	@./t/fuzz_frame_replay
	@for t in $(FUZZ_TARGETS); do \
	    echo "== t/$${t}_replay $(call FUZZ_CORPUS,$$t) (ASan+UBSan)"; \
	    ./t/$${t}_replay $(call FUZZ_CORPUS,$$t) || exit 1; \
	done; echo "fuzz replay: no sanitizer report"

itest: all
	$(PYTHON) -m pytest -q -p no:cacheprovider t

# The summary line pytest prints last is the suite's verdict.
test: warnings unit all deb asan
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

# websocket.conf is the sample mod_websocket.conf, its example plugins'
# paths made those of PLUGINDIR.
install: module
	install -d $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(PLUGINDIR) \
	    $(DESTDIR)/etc/apache2/mods-available
	install -m 644 .libs/mod_websocket.so $(DESTDIR)$(LIBEXECDIR)/mod_websocket.so
	for p in $(PLUGINS); do \
	    install -m 644 plugins/.libs/mod_websocket_$$p.so \
	        $(DESTDIR)$(PLUGINDIR)/mod_websocket_$$p.so || exit 1; \
	done
	echo "LoadModule websocket_module $(LIBEXECDIR)/mod_websocket.so" \
	    > $(DESTDIR)/etc/apache2/mods-available/websocket.load
	sed $(foreach p,$(PLUGINS),-e 's|/usr/lib/apache2/modules/mod_websocket_$(p).so|$(PLUGINDIR)/mod_websocket_$(p).so|') \
	    mod_websocket.conf > $(DESTDIR)/etc/apache2/mods-available/websocket.conf
	chmod 644 $(DESTDIR)/etc/apache2/mods-available/websocket.conf

# ---- Debian packages (debian/) -------------------------------------------------

# Built from a copy of the tree in build/deb/src, so that the packaging's
# files never land in the source tree; the .deb files end in build/deb/.
DEB_DIR := build/deb
DEB_SRC := $(DEB_DIR)/src/mod-websocket
deb:
	@sh .ci/deps.sh $(DEB_BUILD_PACKAGES)
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_SRC)
	tar -c --exclude=./.git --exclude=./build --exclude=.libs --exclude='*.la' \
	    --exclude='*.lo' --exclude='*.slo' --exclude='*.o' . | tar -x -C $(DEB_SRC)
	cd $(DEB_SRC) && dpkg-buildpackage -us -uc -b > ../build.log 2>&1 \
	    || { tail -40 ../build.log; exit 1; }
	cp $(DEB_DIR)/src/*.deb $(DEB_DIR)/
	lintian --fail-on error $(DEB_DIR)/*.deb
	@ls $(DEB_DIR)/*.deb

docs:
	$(PYTHON) docs/gen_directives.py

clean:
	rm -rf .libs *.la *.lo *.slo *.o build \
	       plugins/.libs plugins/*.la plugins/*.lo plugins/*.slo plugins/*.o \
	       plugins/exec/*.lo plugins/exec/*.slo plugins/exec/*.o plugins/exec/.libs \
	       t/plugins/.libs t/plugins/*.la t/plugins/*.lo t/plugins/*.slo \
	       t/plugins/*.o t/modules/.libs t/modules/*.la t/modules/*.lo \
	       t/modules/*.slo t/modules/*.o $(UNIT_TESTS) $(FUZZ_REPLAY) \
	       t/test_ring_asan $(BENCH_TOOLS)
