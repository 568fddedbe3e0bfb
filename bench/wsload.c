/*
 * wsload - WebSocket (RFC 6455) load generator for mod_websocket benchmarks.
 *
 *   wsload [options] ws://HOST:PORT/PATH
 *   wsload --raw [options] HOST:PORT          (against bench/tcpecho)
 *
 * Echo mode (default): every connection keeps --depth messages in flight;
 * each echo is verified byte for byte, its round-trip time recorded and the
 * next message sent (closed loop).  Idle mode (--idle): open and hold
 * connections, optionally echo one message on each at the end.  Cycle
 * mode (--cycle, --raw-get PATH): a new connection per operation.
 * Reconnect mode (--reconnect): idle connections that come back when the
 * server closes them.
 *
 * --procs P forks P workers, each with its own epoll loop and share of the
 * connections; they report to the parent over pipes and the parent prints
 * exactly one key=value summary line on stdout.  Diagnostics go to stderr.
 *
 * Traffic is restricted to 127.0.0.0/8 by design.  See bench/README.md.
 *
 * This file: the command line and main(); wsload.h lists the other parts.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "wsload.h"

struct options opt = {
    .conns = 64, .size = 32, .depth = 1, .deflate_level = 1,
    .duration = 10, .warmup = 1, .hold = 5, .timeout = 10, .rate = 2000,
    .max_pending = 1000, .procs = 1, .src_bind = true, .retry_delay_ns = RETRY_DELAY_NS,
    .src_lo = 0x7f000101, .src_hi = 0x7f0001fa,   /* 127.0.1.1 .. 127.0.1.250 */
    .path = "/",
};

static void usage(FILE *f)
{
    fputs(
"usage: wsload [options] ws://HOST:PORT/PATH     (HOST in 127.0.0.0/8)\n"
"       wsload --raw [options] HOST:PORT          (bench/tcpecho)\n"
"  -c, --conns N        connections (default 64)\n"
"  -s, --size BYTES     message payload size, k/m suffixes (default 32)\n"
"  -t, --type T         text | binary | json (default text); json: realistic,\n"
"                       compressible JSON documents, -s 32 or more\n"
"  -d, --depth D        messages in flight per connection (default 1)\n"
"      --duration SECS  measured time (default 10)\n"
"      --warmup SECS    unmeasured time before it (default 1)\n"
"      --idle           hold connections instead of echoing\n"
"      --hold SECS      idle: how long to hold (default 5)\n"
"      --ping-after     idle: then echo one message on each connection\n"
"  -P, --procs P        worker processes (default 1)\n"
"      --src-range A-B  local addresses to cycle through, or 'none'\n"
"                       (default 127.0.1.1-127.0.1.250)\n"
"      --rate R         new connections per second per process (default 2000;\n"
"                       --cycle: operations started, default no limit but -c)\n"
"      --max-pending N  unfinished connects per process (default 1000)\n"
"      --timeout SECS   limit for one connect+handshake attempt and for an\n"
"                       echo to come back (default 10)\n"
"      --protocol NAME  send Sec-WebSocket-Protocol: NAME\n"
"      --deflate        offer permessage-deflate with client_ and\n"
"                       server_no_context_takeover; compress what we send,\n"
"                       inflate and verify what comes back\n"
"      --deflate-takeover  with --deflate: offer plain permessage-deflate\n"
"                       (both sides keep their window between messages)\n"
"      --deflate-level N  zlib level for what we send (default 1)\n"
"      --raw            plain TCP echo: S bytes out, the same S bytes back\n"
"      --cpu-pid PID[,PID...]  report CPU time of these processes\n"
"      --cpu-children   ... including all their descendants\n"
"      --ready-file PATH  create PATH when every connection is open or failed\n"
"      --cycle          -c slots each loop: connect, upgrade, echo one message,\n"
"                       Close, wait for the server to end TCP; operations/s\n"
"      --raw-get PATH   the same loop with 'GET PATH' and Connection: close\n"
"                       (a 200 with a body of its Content-Length)\n"
"      --reconnect      idle connections; one the server closes is reopened at\n"
"                       once and echoes a message; ends when all are back, or\n"
"                       after --hold; prints when (CLOCK_MONOTONIC)\n"
"      --retry-delay MS  wait before retrying a failed attempt (default 250)\n"
"Prints one key=value summary line; exit status 1 if errors > 0.\n", f);
}

static double parse_double(const char *s, double lo, double hi, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        die("bad %s '%s' (expected %g..%g)", what, s, lo, hi);
    return v;
}

static long parse_long(const char *s, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die("bad %s '%s' (expected %ld..%ld)", what, s, lo, hi);
    return v;
}

static size_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end == 'k' || *end == 'K')
        v <<= 10, end++;
    else if (*end == 'm' || *end == 'M')
        v <<= 20, end++;
    if (errno || end == s || *end || v < 1 || v > (16u << 20))
        die("bad size '%s' (expected 1..16m)", s);
    return (size_t)v;
}

static uint32_t parse_loopback(const char *s, const char *what)
{
    struct in_addr a;
    if (strcmp(s, "localhost") == 0)
        s = "127.0.0.1";
    if (inet_pton(AF_INET, s, &a) != 1)
        die("bad %s '%s' (need an IPv4 address)", what, s);
    uint32_t v = ntohl(a.s_addr);
    if ((v >> 24) != 127)
        die("%s %s is not in 127.0.0.0/8: wsload only talks to loopback", what, s);
    return v;
}

static void parse_src_range(const char *s)
{
    if (strcmp(s, "none") == 0) {
        opt.src_bind = false;
        return;
    }
    char lo[64];
    const char *dash = strchr(s, '-');
    if (!dash || (size_t)(dash - s) >= sizeof lo)
        die("bad --src-range '%s' (expected A-B or none)", s);
    memcpy(lo, s, (size_t)(dash - s));
    lo[dash - s] = '\0';
    opt.src_lo = parse_loopback(lo, "source address");
    opt.src_hi = parse_loopback(dash + 1, "source address");
    if (opt.src_lo > opt.src_hi)
        die("bad --src-range '%s' (first address above last)", s);
}

static void parse_cpu_pids(const char *s)
{
    char *copy = strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (opt.n_cpu_pids == MAX_CPU_PIDS)
            die("too many --cpu-pid values (max %d)", MAX_CPU_PIDS);
        opt.cpu_pids[opt.n_cpu_pids++] = (pid_t)parse_long(tok, 1, INT32_MAX, "--cpu-pid");
    }
    free(copy);
}

/* [ws://|tcp://|http://]HOST[:PORT][/PATH] */
static void parse_target(const char *url)
{
    const char *p = strstr(url, "://");
    if (p) {
        if (strncmp(url, "ws://", 5) != 0 && strncmp(url, "tcp://", 6) != 0 &&
            strncmp(url, "http://", 7) != 0)
            die("unsupported URL scheme in '%s' (ws://, http:// or tcp://; no TLS)", url);
        p += 3;
    } else {
        p = url;
    }
    size_t authority = strcspn(p, "/");
    if (authority == 0 || authority >= sizeof opt.host_header)
        die("bad target '%s'", url);
    memcpy(opt.host_header, p, authority);
    opt.host_header[authority] = '\0';
    if (p[authority] == '/') {
        if (strlen(p + authority) >= sizeof opt.path)
            die("path too long");
        strcpy(opt.path, p + authority);
    }
    char host[sizeof opt.host_header];
    long port = 80;
    strcpy(host, opt.host_header);
    char *colon = strrchr(host, ':');
    if (colon) {
        *colon = '\0';
        port = parse_long(colon + 1, 1, 65535, "port");
    }
    opt.dst.sin_family = AF_INET;
    opt.dst.sin_port = htons((uint16_t)port);
    opt.dst.sin_addr.s_addr = htonl(parse_loopback(host, "host"));
}

enum {
    OPT_DURATION = 256, OPT_WARMUP, OPT_IDLE, OPT_HOLD, OPT_PING_AFTER, OPT_SRC_RANGE,
    OPT_RATE, OPT_MAX_PENDING, OPT_TIMEOUT, OPT_PROTOCOL, OPT_RAW, OPT_CPU_PID,
    OPT_CPU_CHILDREN, OPT_READY_FILE, OPT_DEFLATE, OPT_DEFLATE_TAKEOVER, OPT_DEFLATE_LEVEL,
    OPT_CYCLE, OPT_RAW_GET, OPT_RECONNECT, OPT_RETRY_DELAY,
};

static void parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "conns", required_argument, NULL, 'c' },
        { "size", required_argument, NULL, 's' },
        { "type", required_argument, NULL, 't' },
        { "depth", required_argument, NULL, 'd' },
        { "procs", required_argument, NULL, 'P' },
        { "help", no_argument, NULL, 'h' },
        { "duration", required_argument, NULL, OPT_DURATION },
        { "warmup", required_argument, NULL, OPT_WARMUP },
        { "idle", no_argument, NULL, OPT_IDLE },
        { "hold", required_argument, NULL, OPT_HOLD },
        { "ping-after", no_argument, NULL, OPT_PING_AFTER },
        { "src-range", required_argument, NULL, OPT_SRC_RANGE },
        { "rate", required_argument, NULL, OPT_RATE },
        { "max-pending", required_argument, NULL, OPT_MAX_PENDING },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "protocol", required_argument, NULL, OPT_PROTOCOL },
        { "raw", no_argument, NULL, OPT_RAW },
        { "cpu-pid", required_argument, NULL, OPT_CPU_PID },
        { "cpu-children", no_argument, NULL, OPT_CPU_CHILDREN },
        { "ready-file", required_argument, NULL, OPT_READY_FILE },
        { "deflate", no_argument, NULL, OPT_DEFLATE },
        { "deflate-takeover", no_argument, NULL, OPT_DEFLATE_TAKEOVER },
        { "deflate-level", required_argument, NULL, OPT_DEFLATE_LEVEL },
        { "cycle", no_argument, NULL, OPT_CYCLE },
        { "raw-get", required_argument, NULL, OPT_RAW_GET },
        { "reconnect", no_argument, NULL, OPT_RECONNECT },
        { "retry-delay", required_argument, NULL, OPT_RETRY_DELAY },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:s:t:d:P:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': opt.conns = parse_long(optarg, 1, 10000000, "--conns"); break;
        case 's': opt.size = parse_size(optarg); break;
        case 't':
            if (strcmp(optarg, "text") != 0 && strcmp(optarg, "binary") != 0 &&
                strcmp(optarg, "json") != 0)
                die("--type must be text, binary or json");
            opt.binary = optarg[0] == 'b';
            opt.json = optarg[0] == 'j';
            break;
        case 'd': opt.depth = (int)parse_long(optarg, 1, 4096, "--depth"); break;
        case 'P': opt.procs = (int)parse_long(optarg, 1, MAX_PROCS, "--procs"); break;
        case OPT_DURATION: opt.duration = parse_double(optarg, 0.1, 3600, "--duration"); break;
        case OPT_WARMUP: opt.warmup = parse_double(optarg, 0, 600, "--warmup"); break;
        case OPT_IDLE: opt.idle = true; break;
        case OPT_HOLD: opt.hold = parse_double(optarg, 0, 3600, "--hold"); break;
        case OPT_PING_AFTER: opt.ping_after = true; break;
        case OPT_SRC_RANGE: parse_src_range(optarg); break;
        case OPT_RATE:
            opt.rate = parse_double(optarg, 1, 1e6, "--rate");
            opt.rate_given = true;
            break;
        case OPT_MAX_PENDING:
            opt.max_pending = parse_long(optarg, 1, 1000000, "--max-pending");
            break;
        case OPT_TIMEOUT: opt.timeout = parse_double(optarg, 0.1, 300, "--timeout"); break;
        case OPT_PROTOCOL:
            if (strlen(optarg) >= sizeof opt.protocol || strpbrk(optarg, "\r\n"))
                die("bad --protocol");
            strcpy(opt.protocol, optarg);
            break;
        case OPT_RAW: opt.raw = true; break;
        case OPT_CPU_PID: parse_cpu_pids(optarg); break;
        case OPT_CPU_CHILDREN: opt.cpu_children = true; break;
        case OPT_READY_FILE: opt.ready_file = optarg; break;
        case OPT_DEFLATE: opt.deflate = true; break;
        case OPT_DEFLATE_TAKEOVER: opt.deflate = opt.deflate_takeover = true; break;
        case OPT_DEFLATE_LEVEL:
            opt.deflate_level = (int)parse_long(optarg, 0, 9, "--deflate-level");
            break;
        case OPT_CYCLE: opt.cycle = true; break;
        case OPT_RAW_GET:
            if (optarg[0] != '/' || strlen(optarg) >= sizeof opt.get_path ||
                strpbrk(optarg, " \r\n"))
                die("bad --raw-get path '%s' (/..., no spaces)", optarg);
            strcpy(opt.get_path, optarg);
            opt.cycle = true;
            break;
        case OPT_RECONNECT: opt.reconnect = true; break;
        case OPT_RETRY_DELAY:
            opt.retry_delay_ns = secs_to_ns(parse_double(optarg, 0, 60000, "--retry-delay") / 1e3);
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        exit(2);
    }
    parse_target(argv[optind]);
    if (opt.conns < opt.procs)
        die("--conns (%ld) must be at least --procs (%d)", opt.conns, opt.procs);
    if (opt.idle)
        opt.depth = 1;
    if (opt.json && opt.size < JSON_MIN_SIZE)
        die("-t json needs -s %d or more", JSON_MIN_SIZE);
    if (opt.deflate && opt.raw)
        die("--deflate is for WebSocket, not --raw");
    if (opt.cycle + opt.reconnect + opt.idle + opt.raw > 1)
        die("--cycle/--raw-get, --reconnect, --idle and --raw exclude each other");
    if (opt.get_path[0] && opt.deflate)
        die("--deflate is for WebSocket, not --raw-get");
    if (opt.reconnect)
        opt.depth = 1;
}

/* 100k sockets need every descriptor the hard limit allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit: %s", strerror(errno));
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    long per_proc = opt.conns / opt.procs + 1;
    if ((rlim_t)per_proc + 32 > rl.rlim_cur)
        die("%ld connections per process exceed the open-file limit %llu: use --procs %ld",
            per_proc, (unsigned long long)rl.rlim_cur,
            (opt.conns + (long)rl.rlim_cur - 33) / ((long)rl.rlim_cur - 32));
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    check_accept_computation();
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    return run();
}
