/*
 * ws_io.h - moving one WebSocket's bytes without blocking the thread that
 * drives it; both engines use it.
 *
 * Two ways to move them:
 *  - through the connection's filters (mod_ssl, mod_logio, third-party
 *    connection filters): non-blocking reads, output passed in chunks the
 *    core output filter takes without blocking (it blocks above its
 *    FlushMaxThreshold), then pushed with an empty call when set aside;
 *  - directly on the socket, when the chain holds the core's filters alone
 *    (mod_logio's counter aside: its %I/%O are kept here): one recv and one
 *    writev per batch, no buckets.
 * Writing frees each frame once written and tells ws_conn how many bytes
 * left the connection, so WebSocketSendQueueLimit counts everything held.
 *
 * Budgets: a read or a write does at most 'budget' bytes, so that one
 * busy connection cannot hold the thread against its neighbours on an
 * event loop; ws_io_read says when more may be waiting without the socket
 * showing it (data the filters already hold).
 */
#ifndef WS_IO_H
#define WS_IO_H

#include "httpd.h"
#include "apr_buckets.h"

#include "ws_conn.h"

typedef struct ws_io {
    ws_conn *wc;
    conn_rec *c;
    int direct;                  /* socket I/O (see above) */
    int blocking_writes;         /* HTTP/2 streams: no POLLOUT, writes
                                    wait in mod_http2 */
    int fd;                      /* direct mode: the socket's descriptor */
    /* Detached (io->c NULL, ws_detach.c): mod_logio's counts are kept
     * here until the access log is written. */
    apr_off_t bytes_in, bytes_out;
    apr_bucket_brigade *in;      /* filter mode: what a read returned */
    apr_bucket_brigade *out;     /* filter mode: the chunk being passed */
    ws_out_frame *sending;       /* frames taken, being written */
    apr_size_t sent;             /* of the first of them */
    int filters_drained;         /* the last filter read found nothing */
    int upgrade_eos;             /* HTTP/2: the stream's first read may be
                                    an EOS that ends nothing (h2_c2.c) */
} ws_io;

/* Sets up filter mode (p: the connection's pool). */
apr_status_t ws_io_init(ws_io *io, ws_conn *wc, apr_pool_t *p);

/* Moves to direct mode when the filters allow it and hold nothing now
 * (call it after a read); 1 when in direct mode.  Also makes the socket
 * non-blocking. */
int ws_io_try_direct(ws_io *io);

/* Reads up to budget bytes (in reads of at most size; scratch holds
 * size + 1 bytes) and feeds them to the connection.  APR_SUCCESS, with
 * *more set when the filters may hold more than the socket shows;
 * APR_EOF when the peer has gone; another error when reading failed. */
apr_status_t ws_io_read(ws_io *io, uint8_t *scratch, apr_size_t size,
                        apr_size_t budget, int *more);

/* Writes queued output, at most budget bytes (0: no limit), until the
 * connection takes no more without blocking. */
apr_status_t ws_io_write(ws_io *io, apr_size_t budget);

/* While nothing is read from the connection (its plugin paused its
 * input, or a message is with the plugin on another thread), a peek at
 * the socket after it showed readable: the peer has gone (FIN or reset,
 * nothing left unread), or sent data that waits for the pause to end.
 * Only in direct mode; in filter mode (TLS) bytes on the socket say
 * nothing about the peer: always WS_IO_PEER_UNKNOWN. */
typedef enum {
    WS_IO_PEER_UNKNOWN,
    WS_IO_PEER_GONE,
    WS_IO_PEER_DATA_WAITS
} ws_io_peer_state;

ws_io_peer_state ws_io_peek_peer(ws_io *io);

/* Whether output waits for the connection to become writable. */
int ws_io_output_pending(const ws_io *io);

/* Drops output taken from the queue but never written: all of it when
 * the connection ends; with keep_partial, all but a frame whose start
 * was written (the connection goes on to a Close). */
void ws_io_discard(ws_io *io, int keep_partial);

/* A last frame (a Close on a hard stop), written at once when the socket
 * is ours alone and no frame is half written; 1 when it went out. */
int ws_io_send_now(ws_io *io, const uint8_t *frame, apr_size_t len);

/* The connection's pool is going (ws_detach.c): direct mode goes on with
 * fd alone, and counts the bytes itself. */
void ws_io_detach(ws_io *io, int fd);

/* child_init: mod_logio's counters, for direct mode. */
void ws_io_child_init(void);

#endif /* WS_IO_H */
