/* curfew-uv-echo: a TCP echo server on libuv that shuts down cleanly on
 * SIGTERM or Ctrl-C (S1, S4).
 *
 * SPDX-License-Identifier: MIT
 *
 *   curfew-uv-echo [--port N] [--record PATH]
 *
 * It listens on 127.0.0.1 (port 0: one the system picks) and prints
 * "listening on 127.0.0.1:PORT". Every connection is one blocker of the
 * phase "drain". When the shutdown begins:
 *   stop-accepting  the listening socket is closed;
 *   drain           every open connection gets what it was sent echoed
 *                   back, then a FIN (uv_shutdown), and is closed.
 * Then curfew closes its own handles and uv_run() returns: nothing is left
 * in the loop. A second Ctrl-C exits at once (status 130). Under systemd
 * (NOTIFY_SOCKET set) it says READY=1 and reports the shutdown's progress.
 */
#define _POSIX_C_SOURCE 200809L
#include <curfew.h>
#include <curfew/uv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct conn {
    uv_tcp_t tcp;
    curfew_blocker blocker;
    int closing;
    uv_shutdown_t shutdown;
} conn;

static uv_tcp_t server;
static curfew *cf;
static unsigned long connections;

static void on_event(const curfew_event *ev, void *arg)
{
    (void)arg;
    if (ev->type == CURFEW_EV_PHASE_BEGIN)
        fprintf(stderr, "uv-echo: phase %s\n", ev->phase);
    else if (ev->type == CURFEW_EV_COMPLETE)
        fprintf(stderr, "uv-echo: shutdown complete in %lld ms\n",
                (long long)ev->duration_ms);
}

static void free_conn(uv_handle_t *h)
{
    free(h->data);
}

static void on_conn_closed(uv_handle_t *h)
{
    conn *c = h->data;
    /* The connection is gone: its blocker is finished, whether the
     * shutdown asked for it (drain) or the client left first. */
    curfew_blocker_done(c->blocker);
    free(c);
}

static void close_conn(conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(hint);
    buf->len = buf->base ? hint : 0;
}

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
    free(req);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn *c = s->data;
    if (n > 0) {
        uv_write_t *req = malloc(sizeof(*req));
        if (req) {
            uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
            req->data = buf->base;
            if (uv_write(req, s, &out, 1, on_written) == 0)
                return;
            free(req);
        }
    } else if (n < 0) {
        close_conn(c); /* the client left, or an error */
    }
    free(buf->base);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    close_conn(req->data);
}

/* drain: stop reading, let the queued echoes go out, send a FIN, close. */
static int drain_conn(curfew_blocker self, void *arg)
{
    (void)self;
    conn *c = arg;
    if (c->closing)
        return CURFEW_PENDING; /* on_conn_closed() finishes the blocker */
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        close_conn(c);
    return CURFEW_PENDING;
}

static void on_connection(uv_stream_t *srv, int status)
{
    if (status < 0)
        return;
    conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, free_conn);
        return;
    }
    char name[48];
    snprintf(name, sizeof(name), "connection %lu", ++connections);
    int rc = curfew_add_blocker(curfew_phase(cf, "drain"), name, drain_conn, c,
                                &c->blocker);
    if (rc != 0) { /* the drain is over: no new connection now */
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, free_conn);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_server_closed(uv_handle_t *h)
{
    curfew_blocker *b = h->data;
    curfew_blocker_done(*b);
}

/* stop-accepting: close the listening socket. */
static int stop_accepting(curfew_blocker self, void *arg)
{
    static curfew_blocker me;
    (void)arg;
    me = self;
    server.data = &me;
    uv_close((uv_handle_t *)&server, on_server_closed);
    return CURFEW_PENDING;
}

int main(int argc, char **argv)
{
    int port = 0;
    const char *record = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--record") == 0 && i + 1 < argc)
            record = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--port N] [--record PATH]\n", argv[0]);
            return 2;
        }
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    curfew_config cfg = {0};
    cfg.process_name = "uv-echo";
    cfg.record_path = record;
    cfg.on_event = on_event;
    int rc = curfew_create(&cf, &cfg);
    if (rc != 0) {
        fprintf(stderr, "curfew_create: %s\n", curfew_strerror(rc));
        return 1;
    }
    curfew_add_blocker(curfew_phase(cf, "stop-accepting"), "listener",
                       stop_accepting, NULL, NULL);

    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_init(&loop, &server);
    rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, 128, on_connection);
    if (rc != 0) {
        fprintf(stderr, "listen: %s\n", uv_strerror(rc));
        return 1;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&server, (struct sockaddr *)&ss, &len);

    if ((rc = curfew_uv_attach(cf, &loop)) != 0 ||
        (rc = curfew_signals_install(cf, CURFEW_SIGNALS_QUIT)) != 0) {
        fprintf(stderr, "curfew: %s\n", curfew_strerror(rc));
        return 1;
    }
    if (curfew_notify_attach(cf) == 0)
        curfew_notify_send("READY=1");
    printf("listening on 127.0.0.1:%d\n",
           ntohs(((struct sockaddr_in *)&ss)->sin_port));
    fflush(stdout);

    /* Returns when every handle is closed: the listener and the
     * connections by the shutdown's phases, curfew's own at its end. */
    uv_run(&loop, UV_RUN_DEFAULT);

    curfew_signals_uninstall(cf);
    rc = uv_loop_close(&loop);
    if (rc != 0)
        fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rc));
    int clean = curfew_is_complete(cf);
    curfew_destroy(cf);
    printf("served %lu connections, shut down %s\n", connections,
           clean ? "cleanly" : "early");
    return clean && rc == 0 ? 0 : 1;
}
