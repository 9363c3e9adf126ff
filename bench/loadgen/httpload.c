/*
 * httpload: the HTTP/1.1 twin of grpcload (bench/loadgen/grpcload.c), for the HTTP/JSON gateway.
 *
 * It sends POST requests whose JSON bodies cycle through many different bodies, so the gateway's added
 * latency can be measured with the same kind of client as the gRPC service. FILE holds the bodies one
 * per line: each line (without its '\n') is one body, sent byte for byte; JSON can always be written on
 * one line, and an empty line is refused. Request k gets the body k mod N, counting k across all
 * connections of the run (warm-up included), so no body repeats before all N were sent. The JSON line
 * reports "sent_total" and "distinct_sent".
 *
 * Plain HTTP/1.1 over TCP, keep-alive, libc only: one thread, an epoll loop over --connections
 * connections. HTTP/1.1 without pipelining has exactly ONE request in flight per connection, so
 * there is no --streams (the JSON line says "streams": 1): closed loop, each connection sends its next
 * request as soon as the previous response has been read. Each request is
 *     POST <path> HTTP/1.1, Host: <host>:<port>, User-Agent, Connection: keep-alive, Content-Type:
 *     application/json, the --header lines, Content-Length, the body
 * (a --header Host or Content-Type replaces the default one; Content-Length, Transfer-Encoding and
 * Connection are refused). One write (sendmsg) per request; the bodies are not copied.
 * The response is parsed: status line, headers, then exactly the body, delimited by Content-Length or
 * by Transfer-Encoding: chunked (aiohttp uses Content-Length for a Response with a body); a response
 * delimited only by the end of the connection is not supported and counts as an error ("parse_errors").
 * A request succeeds only with status 200 and a non-empty body. Anything else counts as an error:
 * another status ("http_errors"), an empty body ("empty_errors"), the connection closed or reset with
 * the request in flight ("reset_errors"), a malformed response ("parse_errors"); after a reset or a
 * parse error the connection is reopened ("reconnects"), as it is after a "Connection: close" answer
 * or when the server closes an idle connection (neither counts as an error). A connection lost before
 * it got any response is reopened only after 50 ms, and a failed connect is retried every 50 ms
 * ("connect_errors", which also make the exit status 1), so a server that refuses or drops every
 * connection cannot make the generator spin. Latency: from the moment the request is written to the
 * moment the whole response has been read, per request, kept for every request that ended in the
 * measured window (after --warmup, until --duration later). Requests still in flight at the end are
 * not counted ("unfinished").
 *
 * --rate R paces the requests at R per second in total: request k is due at t0 + k/R (a fixed
 * schedule, open loop) and is sent when due on the next connection (round robin) with no request in
 * flight; if none is free it waits for one ("late" counts requests sent more than 1 ms after their due
 * time), and its latency is still measured from the moment it was sent, not from the schedule. Between
 * requests the loop sleeps in epoll until the next one is due (it never spins). Requests of the warm-up
 * still unsent when the measured window opens are dropped ("skipped_after_warmup"), so no warm-up
 * backlog is sent in a burst into the window; a backlog built within the window is sent as fast as
 * connections free up.
 *
 * Build: cc -O2 -Wall -o httpload httpload.c    (no library beyond libc)
 *
 *   httpload --host 127.0.0.1 --port P --path /v1/verify --bodies FILE
 *            [--connections 8] [--duration 10] [--warmup 2] [--rate R]
 *            [--header 'authorization: Bearer X']...
 *
 * Prints one JSON line on stdout, with the fields of grpcload's where they make sense; exits 1 if any
 * request failed (warm-up included), a connect failed or nothing was measured, 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADERS 32
#define IN_CAP (64 * 1024) /* per connection: the response head (and chunk-size lines) must fit */
#define RETRY_S 0.05

typedef struct {
    const uint8_t *data;
    size_t len;
} body_t;

enum { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };                               /* connection states */
enum { P_HEAD, P_BODY, P_CHUNK_SIZE, P_CHUNK_DATA, P_CHUNK_END, P_TRAILER }; /* response parser */
enum { OK, E_HTTP, E_EMPTY, E_RESET, E_PARSE, N_KINDS };                     /* how a request ended */

typedef struct conn {
    int fd;
    int index;
    int state;
    int want_out;     /* EPOLLOUT registered */
    int close_after;  /* the response said Connection: close (or HTTP/1.0 without keep-alive) */
    uint64_t served;  /* responses read since the connection was opened */
    double retry_at;  /* C_DOWN: when to reconnect */
    /* the request in flight */
    double start;
    const body_t *body;
    char length_line[64]; /* "Content-Length: N\r\n\r\n" */
    size_t length_len, out_total, out_off;
    /* the response */
    uint8_t *in;
    size_t in_len;
    int pstate, status;
    uint64_t left, body_bytes;
} conn_t;

/* options */
static const char *opt_host = "127.0.0.1", *opt_port = NULL, *opt_path = NULL, *opt_bodies = NULL;
static int opt_conns = 8;
static double opt_duration = 10, opt_warmup = 0, opt_rate = 0;
static char *head; /* the request head up to (not including) the Content-Length line */
static size_t head_len;

/* state */
static body_t *bodies;
static size_t n_bodies;
static uint64_t next_body = 0; /* sent_total */
static double t_start, t_measure, t_end;
static int running = 1;
static uint64_t ok = 0, errors = 0, kinds[N_KINDS], late = 0;
static uint64_t errors_total = 0, warm_calls = 0, data_bytes_total = 0, reconnects = 0, connect_errors = 0;
static float *lat;
static size_t n_lat = 0, cap_lat = 0;
static conn_t *conns;
static uint64_t scheduled = 0; /* --rate: requests due so far */
static int rr = 0;
static int measuring = 0;
static uint64_t skipped = 0; /* --rate: requests of the warm-up never sent */
static int pace_blocked = 0;  /* --rate: a due request waits for a free connection (an event wakes the loop) */
static int epfd;
static struct sockaddr_storage peer;
static socklen_t peer_len;
static int peer_family, peer_socktype, peer_protocol;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *msg) {
    fprintf(stderr, "httpload: %s\n", msg);
    exit(2);
}

static const char *kind_name(int kind) {
    switch (kind) {
    case E_HTTP: return "http status";
    case E_EMPTY: return "empty body";
    case E_RESET: return "connection lost";
    case E_PARSE: return "malformed response";
    default: return "ok";
    }
}

static void record(conn_t *cn, int kind) {
    double t = now();
    if (kind != OK && errors_total < 5)
        fprintf(stderr, "httpload: request failed (connection %d): %s, status %d, %llu body bytes\n", cn->index,
                kind_name(kind), cn->status, (unsigned long long)cn->body_bytes);
    if (t < t_measure) {
        warm_calls++;
        if (kind != OK) errors_total++;
        return;
    }
    if (t > t_end) return;
    if (kind != OK) {
        errors++;
        errors_total++;
        kinds[kind]++;
        return;
    }
    ok++;
    if (n_lat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 1 << 16;
        lat = realloc(lat, cap_lat * sizeof *lat);
        if (!lat) die("out of memory");
    }
    lat[n_lat++] = (float)((t - cn->start) * 1000.0);
}

static void set_events(conn_t *cn, int out) {
    if (out == cn->want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = cn};
    epoll_ctl(epfd, EPOLL_CTL_MOD, cn->fd, &ev);
    cn->want_out = out;
}

/* Open (or reopen) the connection, non-blocking; C_IDLE when connected, C_CONNECTING meanwhile. */
static void conn_open(conn_t *cn) {
    cn->in_len = 0;
    cn->close_after = 0;
    cn->served = 0;
    cn->fd = socket(peer_family, peer_socktype | SOCK_NONBLOCK, peer_protocol);
    if (cn->fd < 0) { perror("httpload: socket"); exit(2); }
    int one = 1;
    setsockopt(cn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rv = connect(cn->fd, (struct sockaddr *)&peer, peer_len);
    if (rv < 0 && errno != EINPROGRESS) {
        if (connect_errors < 5) fprintf(stderr, "httpload: connection %d: connect: %s\n", cn->index, strerror(errno));
        connect_errors++;
        errors_total++;
        close(cn->fd);
        cn->fd = -1;
        cn->state = C_DOWN;
        cn->retry_at = now() + RETRY_S;
        return;
    }
    cn->state = rv == 0 ? C_IDLE : C_CONNECTING;
    cn->want_out = rv != 0;
    struct epoll_event ev = {.events = EPOLLIN | (cn->want_out ? EPOLLOUT : 0), .data.ptr = cn};
    epoll_ctl(epfd, EPOLL_CTL_ADD, cn->fd, &ev);
}

/* Close the connection and reopen it. A request in flight ends with `kind` (an error); why != NULL
   is shown. A connection that got no response at all is reopened only after RETRY_S. */
static void conn_drop(conn_t *cn, int kind, const char *why) {
    if (cn->state == C_DOWN) return;
    if (why && running && reconnects < 5) fprintf(stderr, "httpload: connection %d: %s\n", cn->index, why);
    if (cn->state == C_BUSY) record(cn, kind);
    epoll_ctl(epfd, EPOLL_CTL_DEL, cn->fd, NULL);
    close(cn->fd);
    cn->fd = -1;
    cn->state = C_DOWN;
    if (!running) return;
    reconnects++;
    if (cn->served == 0) {
        cn->retry_at = now() + RETRY_S;
        return;
    }
    conn_open(cn);
}

/* Write what is left of the request: the head, the Content-Length line, the body. */
static void flush_out(conn_t *cn) {
    while (cn->out_off < cn->out_total) {
        struct iovec iov[3] = {{head, head_len},
                               {cn->length_line, cn->length_len},
                               {(void *)cn->body->data, cn->body->len}};
        size_t skip = cn->out_off;
        int first = 0;
        while (skip >= iov[first].iov_len) skip -= iov[first++].iov_len;
        iov[first].iov_base = (char *)iov[first].iov_base + skip;
        iov[first].iov_len -= skip;
        struct msghdr msg = {.msg_iov = iov + first, .msg_iovlen = (size_t)(3 - first)};
        ssize_t w = sendmsg(cn->fd, &msg, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            conn_drop(cn, E_RESET, strerror(errno));
            return;
        }
        cn->out_off += (size_t)w;
    }
    set_events(cn, cn->out_off < cn->out_total);
}

static void send_request(conn_t *cn) {
    cn->body = &bodies[next_body % n_bodies];
    next_body++;
    cn->length_len = (size_t)snprintf(cn->length_line, sizeof cn->length_line, "Content-Length: %zu\r\n\r\n",
                                      cn->body->len);
    cn->out_total = head_len + cn->length_len + cn->body->len;
    cn->out_off = 0;
    cn->pstate = P_HEAD;
    cn->status = 0;
    cn->left = cn->body_bytes = 0;
    cn->state = C_BUSY;
    cn->start = now();
    flush_out(cn);
}

static int header_is(const uint8_t *name, size_t nlen, const char *want) {
    return nlen == strlen(want) && strncasecmp((const char *)name, want, nlen) == 0;
}

/* a token among comma-separated values, case-insensitive (Connection: close, Transfer-Encoding: chunked) */
static int has_token(const uint8_t *v, size_t vlen, const char *token) {
    size_t tlen = strlen(token), i = 0;
    while (i < vlen) {
        while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        size_t s = i;
        while (i < vlen && v[i] != ',') i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
        if (e - s == tlen && strncasecmp((const char *)v + s, token, tlen) == 0) return 1;
    }
    return 0;
}

/* Parse the response head in[0, len) (without the final CRLF CRLF). Returns NULL or what is wrong. */
static const char *parse_head(conn_t *cn, const uint8_t *p, size_t len, int *chunked, int *has_length,
                              uint64_t *length) {
    const uint8_t *end = p + len, *eol = memmem(p, len, "\r\n", 2);
    if (!eol) eol = end;
    /* HTTP/1.x SSS reason */
    if (eol - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
        return "bad status line";
    for (int i = 9; i < 12; i++)
        if (p[i] < '0' || p[i] > '9') return "bad status code";
    if (eol - p > 12 && p[12] != ' ') return "bad status line";
    cn->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    int http10 = p[7] == '0', keep_alive = 0, te = 0;
    *chunked = *has_length = 0;
    *length = 0;
    for (p = eol + 2; p < end; p = eol + 2) {
        eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol) eol = end;
        const uint8_t *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p) return "bad header line";
        size_t nlen = (size_t)(colon - p);
        const uint8_t *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        size_t vlen = (size_t)(ve - v);
        if (header_is(p, nlen, "content-length")) {
            if (vlen == 0 || vlen > 18) return "bad Content-Length";
            uint64_t n = 0;
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9') return "bad Content-Length";
                n = n * 10 + (uint64_t)(v[i] - '0');
            }
            if (*has_length && n != *length) return "two different Content-Length";
            *has_length = 1;
            *length = n;
        } else if (header_is(p, nlen, "transfer-encoding")) {
            /* chunked must be the last coding; any other coding (gzip...) is not supported */
            if (te || !(vlen == 7 && strncasecmp((const char *)v, "chunked", 7) == 0))
                return "Transfer-Encoding other than chunked";
            te = *chunked = 1;
        } else if (header_is(p, nlen, "connection")) {
            if (has_token(v, vlen, "close")) cn->close_after = 1;
            if (has_token(v, vlen, "keep-alive")) keep_alive = 1;
        }
    }
    if (http10 && !keep_alive) cn->close_after = 1;
    if (*chunked && *has_length) cn->close_after = 1; /* RFC 9112 6.3: chunked wins, then close */
    return NULL;
}

/* A whole response was read: record it, then the connection takes the next request or is reopened. */
static void complete(conn_t *cn, size_t pos) {
    data_bytes_total += cn->body_bytes;
    /* bytes beyond the response: its framing is wrong (no request was pipelined), so it fails too */
    int beyond = pos < cn->in_len;
    record(cn, beyond ? E_PARSE : cn->status != 200 ? E_HTTP : cn->body_bytes == 0 ? E_EMPTY : OK);
    cn->state = C_IDLE;
    cn->served++;
    if (beyond) conn_drop(cn, OK, "bytes after the end of the response");
    else if (cn->close_after || cn->out_off < cn->out_total) conn_drop(cn, OK, NULL);
    else cn->in_len = 0;
}

/* Parse what was read. Returns 1 when the connection was dropped (reopened or waiting to be). */
static int parse(conn_t *cn) {
    size_t pos = 0;
    const char *bad = NULL;
    if (cn->state != C_BUSY) { /* bytes with no request in flight: e.g. a 408 before an idle close */
        conn_drop(cn, OK, "unsolicited bytes from the server");
        return 1;
    }
    for (;;) {
        uint8_t *p = cn->in + pos;
        size_t avail = cn->in_len - pos;
        switch (cn->pstate) {
        case P_HEAD: {
            uint8_t *e = memmem(p, avail, "\r\n\r\n", 4);
            if (!e) goto more;
            int chunked, has_length;
            uint64_t length;
            if ((bad = parse_head(cn, p, (size_t)(e - p), &chunked, &has_length, &length))) goto fail;
            pos += (size_t)(e - p) + 4;
            if (cn->status >= 100 && cn->status < 200) {
                if (cn->status == 101) { bad = "unexpected 101 Switching Protocols"; goto fail; }
                cn->close_after = 0;
                continue; /* an interim response: the real one follows */
            }
            if (chunked) cn->pstate = P_CHUNK_SIZE;
            else if (has_length) { cn->left = length; cn->pstate = P_BODY; }
            else if (cn->status == 204 || cn->status == 304) { complete(cn, pos); return cn->state == C_DOWN; }
            else { bad = "response without Content-Length or chunked encoding (read until close: not supported)"; goto fail; }
            continue;
        }
        case P_BODY:
        case P_CHUNK_DATA: {
            size_t n = avail < cn->left ? avail : (size_t)cn->left;
            pos += n;
            cn->left -= n;
            cn->body_bytes += n;
            if (cn->left) goto more;
            if (cn->pstate == P_CHUNK_DATA) { cn->pstate = P_CHUNK_END; continue; }
            complete(cn, pos);
            return cn->state == C_DOWN;
        }
        case P_CHUNK_SIZE: {
            uint8_t *e = memmem(p, avail, "\r\n", 2);
            if (!e) goto more;
            uint64_t n = 0;
            uint8_t *q = p;
            for (; q < e && q - p < 16; q++) {
                int d = *q >= '0' && *q <= '9' ? *q - '0' : *q >= 'a' && *q <= 'f' ? *q - 'a' + 10
                        : *q >= 'A' && *q <= 'F' ? *q - 'A' + 10 : -1;
                if (d < 0) break;
                n = n * 16 + (uint64_t)d;
            }
            if (q == p || (q < e && *q != ';' && *q != ' ' && *q != '\t')) { bad = "bad chunk size"; goto fail; }
            pos += (size_t)(e - p) + 2;
            cn->left = n;
            cn->pstate = n ? P_CHUNK_DATA : P_TRAILER;
            continue;
        }
        case P_CHUNK_END:
            if (avail < 2) goto more;
            if (p[0] != '\r' || p[1] != '\n') { bad = "no CRLF after a chunk"; goto fail; }
            pos += 2;
            cn->pstate = P_CHUNK_SIZE;
            continue;
        case P_TRAILER: {
            uint8_t *e = memmem(p, avail, "\r\n", 2);
            if (!e) goto more;
            pos += (size_t)(e - p) + 2;
            if (e == p) { complete(cn, pos); return cn->state == C_DOWN; }
            continue; /* a trailer field, ignored */
        }
        }
    }
more:
    memmove(cn->in, cn->in + pos, cn->in_len - pos);
    cn->in_len -= pos;
    if (cn->in_len < IN_CAP) return 0;
    bad = "response head larger than 64 KiB";
fail:
    if (cn->status == 0) cn->status = -1;
    conn_drop(cn, E_PARSE, bad);
    return 1;
}

static void on_readable(conn_t *cn) {
    for (;;) {
        size_t space = IN_CAP - cn->in_len;
        ssize_t r = read(cn->fd, cn->in + cn->in_len, space);
        if (r > 0) {
            cn->in_len += (size_t)r;
            if (parse(cn)) return;
            if ((size_t)r < space) return;
            continue;
        }
        if (r == 0) {
            if (cn->state == C_BUSY) conn_drop(cn, E_RESET, "closed by the server");
            else conn_drop(cn, OK, NULL); /* an idle connection closed (keep-alive timeout): reopen */
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR) continue;
        conn_drop(cn, E_RESET, strerror(errno));
        return;
    }
}

static void on_connected(conn_t *cn) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(cn->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err) {
        if (connect_errors < 5) fprintf(stderr, "httpload: connection %d: connect: %s\n", cn->index, strerror(err));
        connect_errors++;
        errors_total++;
        epoll_ctl(epfd, EPOLL_CTL_DEL, cn->fd, NULL);
        close(cn->fd);
        cn->fd = -1;
        cn->state = C_DOWN;
        cn->retry_at = now() + RETRY_S;
        return;
    }
    cn->state = C_IDLE;
    set_events(cn, 0);
}

static void fill(conn_t *cn) {
    if (running && opt_rate <= 0 && cn->state == C_IDLE) send_request(cn);
}

/* --rate: send every request that is due, round robin over connections with no request in flight. */
static void pace(void) {
    if (!running || opt_rate <= 0) return;
    if (!measuring && now() >= t_measure) {
        /* a backlog left from the warm-up is dropped, not sent in a burst into the measured window */
        uint64_t at_measure = (uint64_t)(opt_warmup * opt_rate);
        if (scheduled < at_measure) { skipped = at_measure - scheduled; scheduled = at_measure; }
        measuring = 1;
    }
    uint64_t due = (uint64_t)((now() - t_start) * opt_rate) + 1;
    while (scheduled < due) {
        int sent = 0;
        double due_at = t_start + (double)scheduled / opt_rate;
        for (int k = 0; k < opt_conns; k++) {
            conn_t *cn = &conns[(rr + k) % opt_conns];
            if (cn->state == C_IDLE) {
                rr = (rr + k + 1) % opt_conns;
                send_request(cn);
                sent = 1;
                break;
            }
        }
        pace_blocked = !sent;
        if (!sent) return; /* retried as soon as a connection is free */
        if (now() - due_at > 0.001) late++; /* sent more than 1 ms after its due time */
        scheduled++;
    }
}

/* Resolve and connect once, blocking (exit 2 if the server cannot be reached); keep the address. */
static void first_connect(conn_t *cn) {
    static int resolved = 0;
    if (!resolved) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
        int rv = getaddrinfo(opt_host, opt_port, &hints, &res);
        if (rv) { fprintf(stderr, "httpload: %s: %s\n", opt_host, gai_strerror(rv)); exit(2); }
        for (ai = res; ai; ai = ai->ai_next) {
            int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
            if (fd < 0) continue;
            int c = connect(fd, ai->ai_addr, ai->ai_addrlen);
            close(fd);
            if (c == 0) {
                memcpy(&peer, ai->ai_addr, ai->ai_addrlen);
                peer_len = ai->ai_addrlen;
                peer_family = ai->ai_family;
                peer_socktype = ai->ai_socktype;
                peer_protocol = ai->ai_protocol;
                resolved = 1;
                break;
            }
        }
        freeaddrinfo(res);
        if (!resolved) { perror("httpload: connect"); exit(2); }
    }
    conn_open(cn);
    if (cn->state == C_CONNECTING) { /* wait for this one, as grpcload's blocking connect does */
        struct pollfd pfd = {.fd = cn->fd, .events = POLLOUT};
        if (poll(&pfd, 1, 10000) == 1) on_connected(cn);
    }
    if (cn->state != C_IDLE) { fprintf(stderr, "httpload: cannot connect to %s:%s\n", opt_host, opt_port); exit(2); }
}

static void load_bodies(const char *file) {
    FILE *f = fopen(file, "rb");
    if (!f) { perror(file); exit(2); }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) die("cannot read the bodies file");
    fclose(f);
    size_t cap = 1024, pos = 0;
    bodies = malloc(cap * sizeof *bodies);
    while (pos < (size_t)size) {
        uint8_t *nl = memchr(buf + pos, '\n', (size_t)size - pos);
        size_t len = nl ? (size_t)(nl - (buf + pos)) : (size_t)size - pos;
        if (len == 0) {
            fprintf(stderr, "httpload: bodies file: line %zu is empty\n", n_bodies + 1);
            exit(2);
        }
        if (n_bodies == cap) bodies = realloc(bodies, (cap *= 2) * sizeof *bodies);
        if (!bodies) die("out of memory");
        bodies[n_bodies].data = buf + pos;
        bodies[n_bodies].len = len;
        n_bodies++;
        pos += len + 1;
    }
    if (n_bodies == 0) die("bodies file: no body");
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double pct(double q) {
    if (n_lat == 0) return 0;
    size_t i = (size_t)(q * (n_lat - 1) + 0.5);
    return lat[i < n_lat ? i : n_lat - 1];
}

static void usage(void) {
    fprintf(stderr,
            "usage: httpload --port P --path /v1/verify --bodies FILE [--host H] [--connections C]\n"
            "                [--duration S] [--warmup S] [--rate R] [--header 'name: value']...\n"
            "  (HTTP/1.1 keep-alive, one request in flight per connection: there is no --streams)\n");
    exit(2);
}

static double number(const char *s, double min) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < min || v != v) usage();
    return v;
}

static void append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        while (*len + n + 1 > *cap) *cap *= 2;
        *buf = realloc(*buf, *cap);
        if (!*buf) die("out of memory");
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
}

int main(int argc, char **argv) {
    static struct option longopts[] = {
        {"host", 1, 0, 'h'},        {"port", 1, 0, 'p'},     {"path", 1, 0, 'P'},   {"bodies", 1, 0, 'b'},
        {"connections", 1, 0, 'c'}, {"duration", 1, 0, 'D'}, {"warmup", 1, 0, 'w'}, {"rate", 1, 0, 'r'},
        {"header", 1, 0, 'H'},      {0, 0, 0, 0}};
    const char *extra[MAX_HEADERS];
    int n_extra = 0, o;
    while ((o = getopt_long(argc, argv, "h:p:P:b:c:D:w:r:H:", longopts, NULL)) != -1) {
        switch (o) {
        case 'h': opt_host = optarg; break;
        case 'p': opt_port = optarg; break;
        case 'P': opt_path = optarg; break;
        case 'b': opt_bodies = optarg; break;
        case 'c': opt_conns = (int)number(optarg, 1); break;
        case 'D': opt_duration = number(optarg, 0); break;
        case 'w': opt_warmup = number(optarg, 0); break;
        case 'r': opt_rate = number(optarg, 0); break;
        case 'H':
            if (n_extra == MAX_HEADERS) die("too many headers");
            extra[n_extra++] = optarg;
            break;
        default: usage();
        }
    }
    if (optind < argc || !opt_port || !opt_path || !opt_bodies || opt_conns < 1 || opt_duration <= 0) usage();
    if (opt_path[0] != '/' || strpbrk(opt_path, " \t\r\n")) die("--path must start with / and hold no space");

    /* the request head, up to the Content-Length line */
    size_t cap = 1024;
    head = malloc(cap);
    head_len = 0;
    const char *content_type = "application/json";
    int has_host = 0;
    char line[4096];
    for (int i = 0; i < n_extra; i++) {
        const char *h = extra[i], *colon = strchr(h, ':');
        if (!colon || colon == h || strpbrk(h, "\r\n") || strcspn(h, " \t") < (size_t)(colon - h))
            die("--header needs 'name: value'");
        size_t nlen = (size_t)(colon - h);
        if (nlen == 14 && strncasecmp(h, "content-length", 14) == 0) die("--header: Content-Length is set per body");
        if ((nlen == 17 && strncasecmp(h, "transfer-encoding", 17) == 0) ||
            (nlen == 10 && strncasecmp(h, "connection", 10) == 0))
            die("--header: Transfer-Encoding and Connection are httpload's own");
        if (nlen == 12 && strncasecmp(h, "content-type", 12) == 0) content_type = NULL;
        if (nlen == 4 && strncasecmp(h, "host", 4) == 0) has_host = 1;
    }
    int n = snprintf(line, sizeof line, "POST %s HTTP/1.1\r\n", opt_path);
    if (n < 0 || (size_t)n >= sizeof line) die("--path too long");
    append(&head, &head_len, &cap, line, (size_t)n);
    if (!has_host) {
        int v6 = strchr(opt_host, ':') != NULL;
        n = snprintf(line, sizeof line, "Host: %s%s%s:%s\r\n", v6 ? "[" : "", opt_host, v6 ? "]" : "", opt_port);
        if (n < 0 || (size_t)n >= sizeof line) die("--host too long");
        append(&head, &head_len, &cap, line, (size_t)n);
    }
    const char *fixed = "User-Agent: httpload\r\nConnection: keep-alive\r\n";
    append(&head, &head_len, &cap, fixed, strlen(fixed));
    if (content_type) {
        n = snprintf(line, sizeof line, "Content-Type: %s\r\n", content_type);
        append(&head, &head_len, &cap, line, (size_t)n);
    }
    for (int i = 0; i < n_extra; i++) {
        const char *h = extra[i], *colon = strchr(h, ':'), *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        append(&head, &head_len, &cap, h, (size_t)(colon - h));
        append(&head, &head_len, &cap, ": ", 2);
        append(&head, &head_len, &cap, v, strlen(v));
        append(&head, &head_len, &cap, "\r\n", 2);
    }
    load_bodies(opt_bodies);

    epfd = epoll_create1(0);
    conns = calloc((size_t)opt_conns, sizeof *conns);
    for (int i = 0; i < opt_conns; i++) {
        conn_t *cn = &conns[i];
        cn->index = i;
        cn->in = malloc(IN_CAP);
        if (!cn->in) die("out of memory");
        first_connect(cn);
    }

    t_start = now();
    t_measure = t_start + opt_warmup;
    t_end = t_measure + opt_duration;
    for (int i = 0; i < opt_conns; i++) fill(&conns[i]);

    struct epoll_event evs[256];
    int have_pwait2 = 1;
    for (;;) {
        double t = now();
        if (t >= t_end) break;
        /* reopen the connections whose retry is due; closed loop: a request on every idle connection
           (one reopened at once after a failed write is idle and would get no event) */
        double wait_s = t_end - t;
        for (int i = 0; i < opt_conns; i++) {
            conn_t *cn = &conns[i];
            if (cn->state == C_DOWN && cn->retry_at <= t) conn_open(cn);
            fill(cn);
            if (cn->state == C_DOWN && cn->retry_at - t < wait_s) wait_s = cn->retry_at - t;
        }
        pace();
        /* Sleep until the next request is due (nanosecond timeout: a millisecond one would either spin
           below 1 ms or send late), a reconnection, or the end; a request waiting for a free connection
           waits for an event. */
        t = now();
        if (t_end - t < wait_s) wait_s = t_end - t;
        if (opt_rate > 0 && !pace_blocked) {
            double next_due = t_start + (double)scheduled / opt_rate;
            if (next_due - t < wait_s) wait_s = next_due - t;
        }
        if (wait_s < 0) wait_s = 0;
        int nev;
        if (have_pwait2) {
            struct timespec ts = {.tv_sec = (time_t)wait_s,
                                  .tv_nsec = (long)((wait_s - (double)(time_t)wait_s) * 1e9)};
            nev = epoll_pwait2(epfd, evs, 256, &ts, NULL);
            if (nev < 0 && errno == ENOSYS) { have_pwait2 = 0; continue; } /* kernel < 5.11 */
        } else {
            nev = epoll_wait(epfd, evs, 256, (int)(wait_s * 1000.0 + 0.999)); /* rounded up: no spin */
        }
        if (nev < 0) {
            if (errno == EINTR) continue;
            perror("httpload: epoll_wait");
            break;
        }
        for (int i = 0; i < nev; i++) {
            conn_t *cn = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if (cn->state == C_DOWN) continue;
            if (cn->state == C_CONNECTING) {
                if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(cn);
                fill(cn);
                continue;
            }
            if ((e & EPOLLOUT) && cn->state == C_BUSY) flush_out(cn);
            if (cn->state != C_DOWN && (e & (EPOLLIN | EPOLLERR | EPOLLHUP))) on_readable(cn);
            fill(cn);
        }
    }
    running = 0;
    double measured = now() - t_measure;
    if (measured > opt_duration) measured = opt_duration;
    int unfinished = 0;
    for (int i = 0; i < opt_conns; i++) unfinished += conns[i].state == C_BUSY;

    if (n_lat) qsort(lat, n_lat, sizeof *lat, cmp_float);
    uint64_t distinct = next_body < n_bodies ? next_body : n_bodies;
    printf("{\"requests\": %llu, \"errors\": %llu, \"rps\": %.1f, \"p50_ms\": %.3f, \"p90_ms\": %.3f, "
           "\"p99_ms\": %.3f, \"max_ms\": %.3f, \"bodies\": %zu, \"sent_total\": %llu, \"distinct_sent\": %llu, "
           "\"repeats\": %s, \"http_errors\": %llu, \"empty_errors\": %llu, \"reset_errors\": %llu, "
           "\"parse_errors\": %llu, \"connect_errors\": %llu, \"reconnects\": %llu, \"unfinished\": %d, "
           "\"warmup_calls\": %llu, \"late\": %llu, \"skipped_after_warmup\": %llu, \"response_bytes\": %llu, "
           "\"connections\": %d, \"streams\": 1, \"duration_s\": %.3f, \"warmup_s\": %.3f, \"rate\": %.1f}\n",
           (unsigned long long)ok, (unsigned long long)errors, measured > 0 ? ok / measured : 0.0, pct(0.50),
           pct(0.90), pct(0.99), n_lat ? lat[n_lat - 1] : 0.0, n_bodies, (unsigned long long)next_body,
           (unsigned long long)distinct, next_body > n_bodies ? "true" : "false", (unsigned long long)kinds[E_HTTP],
           (unsigned long long)kinds[E_EMPTY], (unsigned long long)kinds[E_RESET], (unsigned long long)kinds[E_PARSE],
           (unsigned long long)connect_errors, (unsigned long long)reconnects, unfinished,
           (unsigned long long)warm_calls, (unsigned long long)late, (unsigned long long)skipped,
           (unsigned long long)data_bytes_total, opt_conns, measured, opt_warmup, opt_rate);
    fflush(stdout);
    for (int i = 0; i < opt_conns; i++)
        if (conns[i].state != C_DOWN) close(conns[i].fd);
    return (ok == 0 || errors_total) ? 1 : 0;
}
