/*
 * grpcload: a gRPC unary load generator whose request bodies cycle through many different messages.
 *
 * h2load sends one request body (-d FILE) for every call. grpcload reads FILE as a concatenation of
 * gRPC length-prefixed messages exactly as they go on the wire (1 flag byte 0x00, 4-byte big-endian
 * length, the protobuf bytes; a file holding one such frame is also a valid h2load -d body) and gives
 * request k the body k mod N, counting k across all connections of the run (warm-up included), so no
 * body repeats before all N were sent. The JSON line reports "sent_total" and "distinct_sent".
 *
 * Plaintext HTTP/2 with prior knowledge (h2c), one thread, one nghttp2 client session per
 * connection on an epoll loop (like h2load's default of one thread). Each connection keeps up to
 * --streams calls in flight: closed loop, a new call as soon as one ends. Received DATA is consumed at
 * once, so nghttp2 sends the WINDOW_UPDATEs itself. A call counts as successful only with HTTP
 * status 200, at least one response DATA byte and grpc-status 0 (trailers, or a trailers-only answer);
 * anything else, a stream reset or a connection loss counts as an error. Latency: from the moment the
 * request is submitted to nghttp2 to the stream's close, per call, kept for every call that ended in
 * the measured window (after --warmup, until --duration later).
 *
 * --rate R paces the calls at R per second in total: call k is due at t0 + k/R (a fixed schedule,
 * open loop) and is sent when due on the next connection (round robin) with a free stream; if no
 * stream is free it waits for one ("late" counts calls sent more than 1 ms after their due time), and its latency is still measured from the
 * moment it was sent (like h2load --rps), not from the schedule. Calls of the warm-up still unsent when
 * the measured window opens are dropped ("skipped_after_warmup"), so no warm-up backlog is sent in a
 * burst into the window; a backlog built within the window is sent as fast as streams free up.
 *
 * Build: cc -O2 -o grpcload grpcload.c -lnghttp2    (Debian: apt-get install -y libnghttp2-dev)
 *
 *   grpcload --host 127.0.0.1 --port P --path /pkg.Service/Method --bodies FILE
 *            [--connections 8] [--streams 16] [--duration 10] [--warmup 2] [--rate R]
 *            [--header 'authorization: Bearer X']...
 *
 * Prints one JSON line on stdout; exits 1 if any call failed or nothing was measured, 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADERS 32
#define OUTBUF (256 * 1024)

typedef struct {
    const uint8_t *data;
    size_t len;
} body_t;

struct conn;

typedef struct {
    struct conn *conn;
    int used;
    double start;
    int32_t stream_id;
    const body_t *body;
    size_t offset;
    int http_status;
    int grpc_status; /* -1: none seen */
    size_t data_bytes;
} call_t;

typedef struct conn {
    int fd;
    int index;
    int alive;
    nghttp2_session *session;
    call_t *calls; /* streams slots */
    int inflight;
    uint8_t *out;
    size_t out_len, out_off;
    int want_out; /* EPOLLOUT registered */
} conn_t;

/* options */
static const char *opt_host = "127.0.0.1", *opt_port = NULL, *opt_path = NULL, *opt_bodies = NULL;
static int opt_conns = 8, opt_streams = 16;
static double opt_duration = 10, opt_warmup = 0, opt_rate = 0;
static nghttp2_nv headers[MAX_HEADERS];
static int n_headers = 0;
static char authority[300];

/* state */
static body_t *bodies;
static size_t n_bodies;
static uint64_t next_body = 0; /* sent_total */
static double t_start, t_measure, t_end;
static int running = 1;
static uint64_t ok = 0, errors = 0, http_errors = 0, grpc_errors = 0, reset_errors = 0, late = 0;
static uint64_t errors_total = 0, warm_calls = 0, data_bytes_total = 0;
static float *lat;
static size_t n_lat = 0, cap_lat = 0;
static conn_t *conns;
static uint64_t scheduled = 0; /* --rate: calls due so far */
static int rr = 0;
static int measuring = 0;
static uint64_t skipped = 0; /* --rate: calls of the warm-up never sent */
static int pace_blocked = 0;  /* --rate: a due call waits for a free stream (a stream end wakes the loop) */
static int epfd;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *msg) {
    fprintf(stderr, "grpcload: %s\n", msg);
    exit(2);
}

static void record(call_t *c, int failed) {
    double t = now();
    if (t < t_measure) {
        warm_calls++;
        if (failed) errors_total++;
        return;
    }
    if (t > t_end) return;
    if (failed) {
        errors++;
        errors_total++;
        return;
    }
    ok++;
    if (n_lat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 1 << 16;
        lat = realloc(lat, cap_lat * sizeof *lat);
        if (!lat) die("out of memory");
    }
    lat[n_lat++] = (float)((t - c->start) * 1000.0);
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *ud) {
    (void)s; (void)id; (void)ud;
    call_t *c = source->ptr;
    size_t left = c->body->len - c->offset, n = left < length ? left : length;
    memcpy(buf, c->body->data + c->offset, n);
    c->offset += n;
    if (c->offset == c->body->len) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int submit(conn_t *cn) {
    call_t *c = NULL;
    for (int i = 0; i < opt_streams; i++)
        if (!cn->calls[i].used) { c = &cn->calls[i]; break; }
    if (!c) return -1;
    memset(c, 0, sizeof *c);
    c->conn = cn;
    c->used = 1;
    c->grpc_status = -1;
    c->body = &bodies[next_body % n_bodies];
    next_body++;
    nghttp2_data_provider prd = {.source.ptr = c, .read_callback = read_body};
    c->start = now();
    int32_t id = nghttp2_submit_request(cn->session, NULL, headers, n_headers, &prd, c);
    if (id < 0) {
        c->used = 0;
        fprintf(stderr, "grpcload: submit: %s\n", nghttp2_strerror(id));
        return -1;
    }
    c->stream_id = id;
    cn->inflight++;
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud) {
    (void)flags; (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    call_t *c = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!c) return 0;
    if (nlen == 7 && memcmp(name, ":status", 7) == 0) {
        c->http_status = atoi((const char *)value); /* value is NUL-terminated by nghttp2 */
    } else if (nlen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        c->grpc_status = (vlen == 1 && value[0] == '0') ? 0 : (int)strtol((const char *)value, NULL, 10);
        if (c->grpc_status == 0 && !(vlen == 1 && value[0] == '0')) c->grpc_status = 999;
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud) {
    (void)flags; (void)data; (void)ud;
    call_t *c = nghttp2_session_get_stream_user_data(s, id);
    if (c) c->data_bytes += len;
    data_bytes_total += len;
    return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud) {
    (void)ud;
    call_t *c = nghttp2_session_get_stream_user_data(s, id);
    if (!c) return 0;
    int failed = 0;
    if (error_code != NGHTTP2_NO_ERROR) { failed = 1; if (now() >= t_measure && now() <= t_end) reset_errors++; }
    else if (c->http_status != 200) { failed = 1; if (now() >= t_measure && now() <= t_end) http_errors++; }
    else if (c->grpc_status != 0 || c->data_bytes == 0) { failed = 1; if (now() >= t_measure && now() <= t_end) grpc_errors++; }
    if (failed && errors_total < 5)
        fprintf(stderr, "grpcload: call failed: reset %u, :status %d, grpc-status %d, %zu data bytes\n",
                error_code, c->http_status, c->grpc_status, c->data_bytes);
    record(c, failed);
    c->used = 0;
    c->conn->inflight--;
    return 0;
}

static void flush_out(conn_t *cn);

static void conn_fail(conn_t *cn, const char *why) {
    if (!cn->alive) return;
    if (running) fprintf(stderr, "grpcload: connection %d: %s\n", cn->index, why);
    cn->alive = 0;
    double t = now();
    if (t >= t_measure && t <= t_end) { errors += cn->inflight; reset_errors += cn->inflight; }
    errors_total += cn->inflight;
    epoll_ctl(epfd, EPOLL_CTL_DEL, cn->fd, NULL);
    close(cn->fd);
}

/* Serialise what nghttp2 wants to send into the connection's buffer and write it. */
static void flush_out(conn_t *cn) {
    for (;;) {
        if (cn->out_off < cn->out_len) {
            ssize_t w = write(cn->fd, cn->out + cn->out_off, cn->out_len - cn->out_off);
            if (w < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                if (errno == EINTR) continue;
                conn_fail(cn, strerror(errno));
                return;
            }
            cn->out_off += (size_t)w;
            if (cn->out_off < cn->out_len) break;
        }
        cn->out_off = cn->out_len = 0;
        while (cn->out_len < OUTBUF) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(cn->session, &p);
            if (n < 0) { conn_fail(cn, nghttp2_strerror((int)n)); return; }
            if (n == 0) break;
            if (cn->out_len + (size_t)n > OUTBUF) {
                /* rare: a chunk bigger than what is left; flush the buffer first */
                if (cn->out_len == 0) {
                    cn->out = realloc(cn->out, (size_t)n);
                }
                else {
                    uint8_t *bigger = realloc(cn->out, cn->out_len + (size_t)n);
                    if (!bigger) die("out of memory");
                    cn->out = bigger;
                }
                memcpy(cn->out + cn->out_len, p, (size_t)n);
                cn->out_len += (size_t)n;
                break;
            }
            memcpy(cn->out + cn->out_len, p, (size_t)n);
            cn->out_len += (size_t)n;
        }
        if (cn->out_len == 0) break;
    }
    int need = cn->out_off < cn->out_len;
    if (need != cn->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (need ? EPOLLOUT : 0), .data.ptr = cn};
        epoll_ctl(epfd, EPOLL_CTL_MOD, cn->fd, &ev);
        cn->want_out = need;
    }
}

static void fill(conn_t *cn) {
    if (!running || !cn->alive || opt_rate > 0) return;
    while (cn->inflight < opt_streams)
        if (submit(cn) < 0) break;
}

/* --rate: send every call that is due, round robin over connections with a free stream. */
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
            if (cn->alive && cn->inflight < opt_streams && submit(cn) == 0) {
                rr = (rr + k + 1) % opt_conns;
                sent = 1;
                flush_out(cn);
                break;
            }
        }
        pace_blocked = !sent;
        if (!sent) return; /* retried as soon as a stream ends */
        if (now() - due_at > 0.001) late++; /* sent more than 1 ms after its due time */
        scheduled++;
    }
}

static int connect_to(const char *host, const char *port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    int rv = getaddrinfo(host, port, &hints, &res);
    if (rv) { fprintf(stderr, "grpcload: %s: %s\n", host, gai_strerror(rv)); exit(2); }
    int fd = -1;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) { perror("grpcload: connect"); exit(2); }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
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
        if ((size_t)size - pos < 5) die("bodies file: truncated frame header");
        if (buf[pos] != 0) die("bodies file: a frame with flag != 0 (compressed messages are not supported)");
        size_t len = ((size_t)buf[pos + 1] << 24) | ((size_t)buf[pos + 2] << 16) | ((size_t)buf[pos + 3] << 8) |
                     buf[pos + 4];
        if (pos + 5 + len > (size_t)size) die("bodies file: truncated message");
        if (n_bodies == cap) bodies = realloc(bodies, (cap *= 2) * sizeof *bodies);
        bodies[n_bodies].data = buf + pos;
        bodies[n_bodies].len = 5 + len;
        n_bodies++;
        pos += 5 + len;
    }
    if (n_bodies == 0) die("bodies file: no message");
}

static void add_header(const char *name, const char *value) {
    if (n_headers == MAX_HEADERS) die("too many headers");
    headers[n_headers++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                                        NGHTTP2_NV_FLAG_NONE};
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
            "usage: grpcload --port P --path /pkg.Service/Method --bodies FILE [--host H] [--connections C]\n"
            "                [--streams M] [--duration S] [--warmup S] [--rate R] [--header 'name: value']...\n");
    exit(2);
}

int main(int argc, char **argv) {
    static struct option longopts[] = {
        {"host", 1, 0, 'h'},     {"port", 1, 0, 'p'},    {"path", 1, 0, 'P'},   {"bodies", 1, 0, 'b'},
        {"connections", 1, 0, 'c'}, {"streams", 1, 0, 'm'}, {"duration", 1, 0, 'D'}, {"warmup", 1, 0, 'w'},
        {"rate", 1, 0, 'r'},     {"header", 1, 0, 'H'},  {0, 0, 0, 0}};
    const char *extra[MAX_HEADERS];
    int n_extra = 0, o;
    while ((o = getopt_long(argc, argv, "h:p:P:b:c:m:D:w:r:H:", longopts, NULL)) != -1) {
        switch (o) {
        case 'h': opt_host = optarg; break;
        case 'p': opt_port = optarg; break;
        case 'P': opt_path = optarg; break;
        case 'b': opt_bodies = optarg; break;
        case 'c': opt_conns = atoi(optarg); break;
        case 'm': opt_streams = atoi(optarg); break;
        case 'D': opt_duration = atof(optarg); break;
        case 'w': opt_warmup = atof(optarg); break;
        case 'r': opt_rate = atof(optarg); break;
        case 'H':
            if (n_extra == MAX_HEADERS - 8) die("too many headers");
            extra[n_extra++] = optarg;
            break;
        default: usage();
        }
    }
    if (!opt_port || !opt_path || !opt_bodies || opt_conns < 1 || opt_streams < 1 || opt_duration <= 0) usage();
    load_bodies(opt_bodies);

    snprintf(authority, sizeof authority, "%s:%s", opt_host, opt_port);
    add_header(":method", "POST");
    add_header(":scheme", "http");
    add_header(":path", opt_path);
    add_header(":authority", authority);
    add_header("content-type", "application/grpc");
    add_header("te", "trailers");
    add_header("user-agent", "grpcload");
    for (int i = 0; i < n_extra; i++) {
        char *h = strdup(extra[i]), *colon = strchr(h + 1, ':'); /* h+1: allow ":name: value" */
        if (!colon) die("--header needs 'name: value'");
        *colon = 0;
        char *v = colon + 1;
        while (*v == ' ') v++;
        for (char *q = h; *q; q++)
            if (*q >= 'A' && *q <= 'Z') *q += 32; /* HTTP/2 header names are lower case */
        add_header(h, v);
    }

    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);

    epfd = epoll_create1(0);
    conns = calloc((size_t)opt_conns, sizeof *conns);
    nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                         {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (1U << 30) - 1}};
    for (int i = 0; i < opt_conns; i++) {
        conn_t *cn = &conns[i];
        cn->index = i;
        cn->fd = connect_to(opt_host, opt_port);
        cn->alive = 1;
        cn->calls = calloc((size_t)opt_streams, sizeof *cn->calls);
        cn->out = malloc(OUTBUF);
        nghttp2_session_client_new(&cn->session, cbs, cn);
        nghttp2_submit_settings(cn->session, NGHTTP2_FLAG_NONE, settings, 2);
        nghttp2_session_set_local_window_size(cn->session, NGHTTP2_FLAG_NONE, 0, (1 << 30) - 1);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = cn};
        epoll_ctl(epfd, EPOLL_CTL_ADD, cn->fd, &ev);
    }

    t_start = now();
    t_measure = t_start + opt_warmup;
    t_end = t_measure + opt_duration;
    for (int i = 0; i < opt_conns; i++) { fill(&conns[i]); flush_out(&conns[i]); }
    pace();

    static uint8_t rbuf[64 * 1024];
    struct epoll_event evs[256];
    while (running) {
        double t = now();
        if (t >= t_end) break;
        /* Sleep until the next call is due (nanosecond timeout: a millisecond one would either spin
           below 1 ms or send late), or until the end; a call blocked on streams waits for an event. */
        double wait_s = t_end - t;
        if (opt_rate > 0 && !pace_blocked) {
            double next_due = t_start + (double)scheduled / opt_rate;
            if (next_due - t < wait_s) wait_s = next_due - t;
        }
        if (wait_s < 0) wait_s = 0;
        struct timespec ts = {.tv_sec = (time_t)wait_s, .tv_nsec = (long)((wait_s - (double)(time_t)wait_s) * 1e9)};
        int n = epoll_pwait2(epfd, evs, 256, &ts, NULL);
        if (n < 0 && errno != EINTR) { perror("epoll_pwait2"); break; }
        for (int i = 0; i < n; i++) {
            conn_t *cn = evs[i].data.ptr;
            if (!cn->alive) continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                for (;;) {
                    ssize_t r = read(cn->fd, rbuf, sizeof rbuf);
                    if (r > 0) {
                        ssize_t used = nghttp2_session_mem_recv(cn->session, rbuf, (size_t)r);
                        if (used < 0) { conn_fail(cn, nghttp2_strerror((int)used)); break; }
                        if ((size_t)r < sizeof rbuf) break;
                        continue;
                    }
                    if (r == 0) { conn_fail(cn, "closed by the server"); break; }
                    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                    if (errno == EINTR) continue;
                    conn_fail(cn, strerror(errno));
                    break;
                }
            }
            if (!cn->alive) continue;
            fill(cn);
            flush_out(cn);
        }
        pace();
        int alive = 0;
        for (int i = 0; i < opt_conns; i++) alive += conns[i].alive;
        if (!alive) { fprintf(stderr, "grpcload: every connection was lost\n"); break; }
    }
    running = 0;
    double measured = now() - t_measure;
    if (measured > opt_duration) measured = opt_duration;

    qsort(lat, n_lat, sizeof *lat, cmp_float);
    uint64_t distinct = next_body < n_bodies ? next_body : n_bodies;
    printf("{\"requests\": %llu, \"errors\": %llu, \"rps\": %.1f, \"p50_ms\": %.3f, \"p90_ms\": %.3f, "
           "\"p99_ms\": %.3f, \"max_ms\": %.3f, \"bodies\": %zu, \"sent_total\": %llu, \"distinct_sent\": %llu, "
           "\"repeats\": %s, \"http_errors\": %llu, \"grpc_errors\": %llu, \"reset_errors\": %llu, "
           "\"warmup_calls\": %llu, \"late\": %llu, \"skipped_after_warmup\": %llu, \"response_bytes\": %llu, \"connections\": %d, "
           "\"streams\": %d, \"duration_s\": %.3f, \"warmup_s\": %.3f, \"rate\": %.1f}\n",
           (unsigned long long)ok, (unsigned long long)errors, measured > 0 ? ok / measured : 0.0, pct(0.50),
           pct(0.90), pct(0.99), n_lat ? lat[n_lat - 1] : 0.0, n_bodies, (unsigned long long)next_body,
           (unsigned long long)distinct, next_body > n_bodies ? "true" : "false", (unsigned long long)http_errors,
           (unsigned long long)grpc_errors, (unsigned long long)reset_errors, (unsigned long long)warm_calls,
           (unsigned long long)late, (unsigned long long)skipped, (unsigned long long)data_bytes_total, opt_conns, opt_streams, measured,
           opt_warmup, opt_rate);
    fflush(stdout);
    for (int i = 0; i < opt_conns; i++)
        if (conns[i].alive) { close(conns[i].fd); }
    return (ok == 0 || errors_total) ? 1 : 0;
}
