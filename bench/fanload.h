/*
 * fanload.h - what the parts of bench/fanload share: the options, and the
 * memory the subscriber processes and the publisher share.
 *
 *   fanload.c      the command line, the publisher, the figures
 *   fanload_sub.c  the subscriber processes (each an epoll loop)
 */
#ifndef FANLOAD_H
#define FANLOAD_H

#include <stdint.h>
#include <netinet/in.h>

/* Every message is 32 bytes: its seq in 10 digits, then dots. */
#define MSG_SIZE     32
#define MAX_PROCS    16

typedef enum { EP_WS, EP_RAW, EP_HTTP } endpoint_kind;

typedef struct endpoint {
    endpoint_kind kind;
    struct sockaddr_in addr;
    char host[64];                   /* "127.0.0.1:port" for Host: */
    char path[512];
} endpoint;

typedef struct options {
    endpoint sub, pub;
    int subs, procs, conns;
    long interval_us;                /* 0: as fast as possible */
    double duration, warmup, drain, rate;
    int echo;                        /* count the publisher's echoes */
    int get;                         /* GET instead of POST */
    int cpu_pids[8], ncpu_pids, cpu_children;
} options;

/* Per subscriber process, in shared memory. */
typedef struct proc_stats {
    uint64_t opened, failed, closed, delivered, errors;
    int ready;
} proc_stats;

/* The shared memory: a header, pub_ns[max_msgs], then per process
 * last_ns[max_msgs] (latest arrival of each message at any of its
 * connections) and count[max_msgs] (connections that got it). */
typedef struct shared {
    volatile int stop;
    volatile uint64_t measure_from;  /* first seq measured */
    uint64_t max_msgs;
    proc_stats procs[MAX_PROCS];
} shared;

extern options opt;
extern shared *sh;

uint64_t now_ns(void);
uint64_t *pub_ns(void);
uint64_t *last_ns(int proc);
uint32_t *counts(int proc);

/* fanload_sub.c: runs one subscriber process (forked) until sh->stop. */
void subscriber_process(int proc, int nconns);

/* The opening handshake of a WebSocket to ep (a fixed key: the figures
 * need no check of Sec-WebSocket-Accept). */
int ws_request(const endpoint *ep, char *out, size_t size);
/* The seq of a 32-byte message. */
uint64_t msg_seq(const uint8_t *payload);

#endif /* FANLOAD_H */
