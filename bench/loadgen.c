/*
 * Load generator for the clawbox bench: one thread, epoll, so it uses at most one core and reports how much of
 * that core it used (getrusage) - the table shows it was not the limit.
 *
 *   loadgen MODE key=value...
 *     MODE   rate   conc clients loop {tunnel, write payload, read echo, close} for duration s (or count tunnels)
 *            bulk   streams tunnels each ask the byte source for bytes bytes and read them
 *            http   conc clients send absolute-URI GETs with keep-alive for duration s
 *            idle   open count tunnels, print {"phase":"open"}, wait for a line on stdin (at most hold s),
 *                   then check that each still echoes
 *     proto  connect | socks | direct (direct: straight to target, the physical limit)
 *     proxy  IP:PORT of the proxy; target IP:PORT of the upstream
 *
 * A tunnel: TCP connect; CONNECT host:port HTTP/1.1 and a 200 reply, or SOCKS5 no-auth CONNECT and 05 00; then
 * the payload. After the echo (or the bulk bytes) a client waits for EOF and only then closes: the upstreams close
 * first (see upstreams.c), the proxy passes that on, so TIME_WAIT never lands on a connecting side's ephemeral
 * ports (28k per destination, 60 s each: a 10 s run would measure port exhaustion). The close path through the
 * proxy is part of each tunnel's cycle; latency is taken when the echo arrives. Runs that end mid-tunnel abort
 * with SO_LINGER 0.
 *
 * Results: one JSON object on stdout; rate mode adds the p50/p99 of each tunnel's setup (TCP connect to the proxy's
 * reply) and exchange (payload to echo). Every run is bounded: duration + a 30 s grace, per-operation timeouts.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net-common.h"

enum mode { RATE, BULK, HTTP, IDLE };
enum proto { P_CONNECT, P_SOCKS, P_DIRECT };
enum state { S_CONNECTING, S_PROXY_REPLY, S_SOCKS_METHOD, S_SOCKS_REPLY, S_PAYLOAD, S_BULK, S_DRAIN, S_HTTP, S_IDLE, S_DONE };
enum err { E_CONNECT, E_REPLY, E_DATA, E_TIMEOUT, E_COUNT };
static const char *ERR_NAMES[E_COUNT] = {"connect", "reply", "data", "timeout"};

/* Options */
static enum mode mode = RATE;
static enum proto proto = P_DIRECT;
static struct sockaddr_in proxy_sa, target_sa;
static char target_text[64];
static int conc = 64;
static double duration = 10;
static long count_limit = 0;
static int payload = 64;
static uint64_t bulk_bytes = 1 << 20;
static double hold = 60;
static double op_timeout = 10;

/* Histograms: 64 sub-buckets per power of two of microseconds (about 1.5 % resolution). */
#define SUB 64
#define HBUCKETS (40 * SUB)
struct histogram {
  uint64_t bucket[HBUCKETS];
  uint64_t n, max;
};
/* Each tunnel's (or request's) whole time, and a rate tunnel's two parts: setup (the proxy's reply, from the TCP
   connect to it) and exchange (the payload's echo through the open tunnel). Direct tunnels have no setup. */
static struct histogram total_hist, setup_hist, exchange_hist;

static void record(struct histogram *h, uint64_t us) {
  if (us > h->max) h->max = us;
  h->n++;
  int idx;
  if (us < SUB) idx = (int)us;
  else {
    int msb = 63 - __builtin_clzll(us);
    int shift = msb - 6;
    idx = (shift + 1) * SUB + (int)((us >> shift) - SUB);
  }
  if (idx >= HBUCKETS) idx = HBUCKETS - 1;
  h->bucket[idx]++;
}

static uint64_t bucket_value(int idx) {
  if (idx < SUB) return (uint64_t)idx;
  int shift = idx / SUB - 1;
  return ((uint64_t)(idx % SUB + SUB) << shift) + ((1ull << shift) >> 1);
}

static uint64_t percentile(const struct histogram *h, double p) {
  if (h->n == 0) return 0;
  uint64_t want = (uint64_t)(p * (double)h->n);
  if (want >= h->n) want = h->n - 1;
  uint64_t seen = 0;
  for (int i = 0; i < HBUCKETS; i++) {
    seen += h->bucket[i];
    if (seen > want) return bucket_value(i) < h->max ? bucket_value(i) : h->max;
  }
  return h->max;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct conn {
  int fd;
  enum state state;
  double started;  /* of the current tunnel or request */
  double connected; /* the TCP connect (to the proxy, or direct) completed */
  double opened;    /* the tunnel is open: the proxy's reply came (direct: at the connect) */
  double deadline; /* of the current operation */
  uint64_t got;    /* bytes of the current reply */
  uint64_t total;  /* bulk: bytes received */
  int idx;
  char buf[4096];
  uint32_t blen;
};

static int ep;
static struct conn *conns;
static uint64_t ok_count, err_count[E_COUNT], bytes_total, started_count;
static int stopping;
static char out_payload[65536];
static char http_req[512];
static char connect_req[256];
static char *bulk_buf;

/* Abortive close: no TIME_WAIT on the client side (see the header comment). */
static void drop(struct conn *c) {
  if (c->fd >= 0) {
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  c->fd = -1;
  c->state = S_DONE;
}

static int send_small(struct conn *c, const void *data, size_t len) {
  /* Requests and payloads are small and the socket buffer is empty at that point: a short write is an error. */
  ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
  return n == (ssize_t)len ? 0 : -1;
}

static void watch(struct conn *c, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int start_conn(struct conn *c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) return -1;
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (mode == BULK) {
    int size = 4 << 20;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  struct sockaddr_in *sa = proto == P_DIRECT ? &target_sa : &proxy_sa;
  c->started = now_s();
  c->deadline = c->started + op_timeout;
  c->got = c->total = c->blen = 0;
  c->state = S_CONNECTING;
  started_count++;
  struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
  if (connect(c->fd, (struct sockaddr *)sa, sizeof *sa) < 0 && errno != EINPROGRESS) {
    close(c->fd);
    c->fd = -1;
    return -1;
  }
  epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
  return 0;
}

/* The tunnel is open: start the mode's traffic. */
static int tunnel_open(struct conn *c) {
  c->blen = 0;
  c->opened = now_s();
  switch (mode) {
    case RATE:
      c->state = S_PAYLOAD;
      c->got = 0;
      watch(c, EPOLLIN);
      return send_small(c, out_payload, (size_t)payload);
    case BULK: {
      uint8_t req[8];
      for (int i = 0; i < 8; i++) req[i] = (uint8_t)(bulk_bytes >> (56 - 8 * i));
      c->state = S_BULK;
      c->deadline = now_s() + 600;
      watch(c, EPOLLIN);
      return send_small(c, req, 8);
    }
    case HTTP:
      c->state = S_HTTP;
      c->started = now_s();
      watch(c, EPOLLIN);
      return send_small(c, http_req, strlen(http_req));
    case IDLE:
      c->state = S_IDLE;
      c->deadline = 1e18;
      watch(c, EPOLLIN);
      return 0;
  }
  return -1;
}

static void fail(struct conn *c, enum err e);
static void restart(struct conn *c);

static int on_connected(struct conn *c) {
  c->connected = now_s();
  int soerr = 0;
  socklen_t len = sizeof soerr;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
  if (soerr != 0) return -1;
  /* Plain HTTP through a proxy is absolute-URI requests on the proxy connection itself, each one parsed and
     forwarded by the proxy: no CONNECT first (that would measure a tunnel carrying HTTP). */
  if (mode == HTTP) return tunnel_open(c);
  switch (proto) {
    case P_DIRECT:
      return tunnel_open(c);
    case P_CONNECT:
      c->state = S_PROXY_REPLY;
      watch(c, EPOLLIN);
      return send_small(c, connect_req, strlen(connect_req));
    case P_SOCKS: {
      static const uint8_t hello[] = {5, 1, 0};
      c->state = S_SOCKS_METHOD;
      watch(c, EPOLLIN);
      return send_small(c, hello, sizeof hello);
    }
  }
  return -1;
}

/* The tunnel did its work: count it, then wait for the close to come through (S_DRAIN). */
static void finish_tunnel(struct conn *c, double t) {
  ok_count++;
  record(&total_hist, (uint64_t)((t - c->started) * 1e6));
  if (mode == RATE) {
    if (proto != P_DIRECT) record(&setup_hist, (uint64_t)((c->opened - c->connected) * 1e6));
    record(&exchange_hist, (uint64_t)((t - c->opened) * 1e6));
  }
  c->state = S_DRAIN;
  c->deadline = t + op_timeout;
}

/* Orderly close after EOF: the peer closed first, so no TIME_WAIT here. */
static void close_after_eof(struct conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->fd = -1;
  c->state = S_DONE;
  restart(c);
}

/* Reads what is available into c->buf (bounded). Returns bytes read, 0 on EOF, -1 on EAGAIN, -2 on error. */
static ssize_t read_some(struct conn *c) {
  if (c->blen >= sizeof c->buf) return -2;
  ssize_t n = recv(c->fd, c->buf + c->blen, sizeof c->buf - c->blen, 0);
  if (n < 0) return errno == EAGAIN ? -1 : -2;
  c->blen += (uint32_t)n;
  return n;
}

static int http_response_complete(struct conn *c, int *close_after) {
  c->buf[c->blen < sizeof c->buf ? c->blen : sizeof c->buf - 1] = 0;
  char *end = memmem(c->buf, c->blen, "\r\n\r\n", 4);
  if (!end) return 0;
  size_t head = (size_t)(end + 4 - c->buf);
  *end = 0;
  if (strncmp(c->buf, "HTTP/1.", 7) != 0 || strncmp(c->buf + 9, "200", 3) != 0) return -1;
  *close_after = strcasestr(c->buf, "\nconnection: close") != NULL || strncmp(c->buf, "HTTP/1.0", 8) == 0;
  int complete;
  char *cl = strcasestr(c->buf, "\ncontent-length:");
  if (cl) {
    size_t want = (size_t)strtoul(cl + 16, NULL, 10);
    complete = c->blen - head >= want;
    if (complete && c->blen - head > want) return -1; /* we never pipeline */
  } else if (strcasestr(c->buf, "\ntransfer-encoding: chunked")) {
    complete = c->blen - head >= 5 && memcmp(c->buf + c->blen - 5, "0\r\n\r\n", 5) == 0;
  } else {
    return -1;
  }
  *end = '\r';
  return complete;
}

static void on_event(struct conn *c, uint32_t events) {
  double t;
  if (c->state == S_CONNECTING) {
    if (events & (EPOLLERR | EPOLLHUP) || on_connected(c) < 0) fail(c, E_CONNECT);
    return;
  }
  for (;;) {
    switch (c->state) {
      case S_PROXY_REPLY: {
        ssize_t n = read_some(c);
        if (n == -1) return;
        if (n <= 0) return fail(c, E_REPLY);
        char *end = memmem(c->buf, c->blen, "\r\n\r\n", 4);
        if (!end) continue;
        if (c->blen < 12 || strncmp(c->buf, "HTTP/1.", 7) != 0 || strncmp(c->buf + 9, "200", 3) != 0) return fail(c, E_REPLY);
        if ((size_t)(end + 4 - c->buf) != c->blen) return fail(c, E_REPLY); /* upstream spoke first? */
        if (tunnel_open(c) < 0) return fail(c, E_DATA);
        continue;
      }
      case S_SOCKS_METHOD: {
        ssize_t n = read_some(c);
        if (n == -1) return;
        if (n <= 0) return fail(c, E_REPLY);
        if (c->blen < 2) continue;
        if (c->blen != 2 || c->buf[0] != 5 || c->buf[1] != 0) return fail(c, E_REPLY);
        uint8_t req[10] = {5, 1, 0, 1};
        memcpy(req + 4, &target_sa.sin_addr, 4);
        memcpy(req + 8, &target_sa.sin_port, 2);
        c->blen = 0;
        c->state = S_SOCKS_REPLY;
        if (send_small(c, req, sizeof req) < 0) return fail(c, E_REPLY);
        continue;
      }
      case S_SOCKS_REPLY: {
        ssize_t n = read_some(c);
        if (n == -1) return;
        if (n <= 0) return fail(c, E_REPLY);
        if (c->blen < 5) continue;
        if (c->buf[0] != 5 || c->buf[1] != 0) return fail(c, E_REPLY);
        uint32_t want = c->buf[3] == 1 ? 10 : c->buf[3] == 4 ? 22 : c->buf[3] == 3 ? 7u + (uint8_t)c->buf[4] : 0;
        if (want == 0 || c->blen > want) return fail(c, E_REPLY);
        if (c->blen < want) continue;
        if (tunnel_open(c) < 0) return fail(c, E_DATA);
        continue;
      }
      case S_PAYLOAD: {
        char tmp[4096];
        ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) return fail(c, E_DATA);
        c->got += (uint64_t)n;
        if (c->got < (uint64_t)payload) continue;
        if (c->got > (uint64_t)payload) return fail(c, E_DATA);
        finish_tunnel(c, now_s());
        continue;
      }
      case S_DRAIN: {
        char tmp[256];
        ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
        if (n < 0 && errno == EAGAIN) return;
        if (n > 0) return fail(c, E_DATA); /* nothing may follow the echo */
        return close_after_eof(c);          /* EOF, or a reset after the work was done */
      }
      case S_BULK: {
        ssize_t n = recv(c->fd, bulk_buf, 1 << 20, 0);
        if (n < 0 && errno == EAGAIN) return;
        if (n < 0) return fail(c, E_DATA);
        if (n == 0) return fail(c, E_DATA); /* EOF before all bytes */
        c->total += (uint64_t)n;
        bytes_total += (uint64_t)n;
        if (c->total == bulk_bytes) finish_tunnel(c, now_s());
        continue;
      }
      case S_HTTP: {
        ssize_t n = read_some(c);
        if (n == -1) return;
        if (n <= 0) return fail(c, E_DATA);
        int close_after = 0;
        int done = http_response_complete(c, &close_after);
        if (done < 0) return fail(c, E_REPLY);
        if (done == 0) continue;
        t = now_s();
        ok_count++;
        record(&total_hist, (uint64_t)((t - c->started) * 1e6));
        if (close_after || stopping) {
          drop(c);
          restart(c);
          return;
        }
        c->blen = 0;
        c->started = t;
        c->deadline = t + op_timeout;
        if (send_small(c, http_req, strlen(http_req)) < 0) return fail(c, E_DATA);
        continue;
      }
      case S_IDLE: {
        /* Nothing may arrive while idle: data or EOF means the proxy (or upstream) dropped the tunnel. */
        char tmp[256];
        ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
        if (n < 0 && errno == EAGAIN) return;
        return fail(c, E_DATA);
      }
      case S_CONNECTING:
      case S_DONE:
        return;
    }
  }
}

static void fail(struct conn *c, enum err e) {
  err_count[e]++;
  drop(c);
  restart(c);
}

static void restart(struct conn *c) {
  if (stopping || mode == BULK || mode == IDLE) return;
  if (count_limit > 0 && (long)started_count >= count_limit) return;
  if (start_conn(c) < 0) {
    err_count[E_CONNECT]++;
    c->state = S_DONE;
  }
}

static int active(void) {
  int n = 0;
  for (int i = 0; i < conc; i++) n += conns[i].state != S_DONE && conns[i].state != S_IDLE;
  return n;
}

static void sweep_timeouts(double t) {
  for (int i = 0; i < conc; i++) {
    struct conn *c = &conns[i];
    if (c->state != S_DONE && c->state != S_IDLE && t > c->deadline) fail(c, E_TIMEOUT);
  }
}

static void pump(double until) {
  struct epoll_event events[1024];
  double next_sweep = now_s() + 0.1;
  while (active() > 0) {
    double t = now_s();
    if (t >= until) break;
    int n = epoll_wait(ep, events, 1024, 50);
    for (int i = 0; i < n; i++) on_event(events[i].data.ptr, events[i].events);
    t = now_s();
    if (t >= next_sweep) {
      sweep_timeouts(t);
      next_sweep = t + 0.1;
    }
    /* Stop a run against a dead proxy quickly instead of spinning on refusals for the whole duration. */
    uint64_t errs = err_count[E_CONNECT] + err_count[E_REPLY] + err_count[E_DATA] + err_count[E_TIMEOUT];
    if (errs > 2000 && ok_count < errs / 10) break;
  }
}

static double cpu_used(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec / 1e6;
}

/* A histogram's p50 and p99 as JSON fields named PREFIX_p50_us and PREFIX_p99_us; null when it holds nothing. */
static void print_percentiles(const char *prefix, const struct histogram *h) {
  if (h->n == 0) printf(",\"%s_p50_us\":null,\"%s_p99_us\":null", prefix, prefix);
  else
    printf(",\"%s_p50_us\":%llu,\"%s_p99_us\":%llu", prefix, (unsigned long long)percentile(h, 0.5), prefix,
           (unsigned long long)percentile(h, 0.99));
}

static void print_result(const char *phase, double elapsed, double cpu, long extra_open) {
  printf("{\"phase\":\"%s\",\"mode\":\"%s\",\"ok\":%llu,\"elapsed_s\":%.6f,\"per_s\":%.1f,\"bytes\":%llu,"
         "\"p50_us\":%llu,\"p99_us\":%llu,\"max_us\":%llu,\"cpu_s\":%.4f,\"cpu_share\":%.4f,\"open\":%ld",
         phase, mode == RATE ? "rate" : mode == BULK ? "bulk" : mode == HTTP ? "http" : "idle",
         (unsigned long long)ok_count, elapsed, elapsed > 0 ? (double)ok_count / elapsed : 0.0,
         (unsigned long long)bytes_total, (unsigned long long)percentile(&total_hist, 0.5),
         (unsigned long long)percentile(&total_hist, 0.99), (unsigned long long)total_hist.max, cpu,
         elapsed > 0 ? cpu / elapsed : 0.0, extra_open);
  print_percentiles("setup", &setup_hist);
  print_percentiles("exchange", &exchange_hist);
  printf(",\"errors\":{");
  for (int e = 0; e < E_COUNT; e++) printf("%s\"%s\":%llu", e ? "," : "", ERR_NAMES[e], (unsigned long long)err_count[e]);
  printf("}}\n");
  fflush(stdout);
}

/* Idle: open `conc` tunnels at most 256 handshakes at a time, hold, then check each one echoes. */
static int run_idle(void) {
  double t0 = now_s();
  double cpu0 = cpu_used();
  int next = 0;
  struct epoll_event events[1024];
  double open_until = t0 + 120;
  for (;;) {
    int inflight = 0;
    for (int i = 0; i < next; i++) inflight += conns[i].state != S_DONE && conns[i].state != S_IDLE;
    while (next < conc && inflight < 256) {
      if (start_conn(&conns[next]) < 0) {
        err_count[E_CONNECT]++;
        conns[next].state = S_DONE;
      } else inflight++;
      next++;
    }
    if ((next == conc && inflight == 0) || now_s() > open_until) break;
    int n = epoll_wait(ep, events, 1024, 50);
    for (int i = 0; i < n; i++) on_event(events[i].data.ptr, events[i].events);
    sweep_timeouts(now_s());
  }
  long open = 0;
  for (int i = 0; i < conc; i++) open += conns[i].state == S_IDLE;
  print_result("open", now_s() - t0, cpu_used() - cpu0, open);

  /* Hold: wait for the harness (it measures the proxy's memory now), while noticing tunnels that drop. */
  double hold_until = now_s() + hold;
  struct pollfd in = {.fd = 0, .events = POLLIN};
  while (now_s() < hold_until) {
    if (poll(&in, 1, 0) > 0) break;
    int n = epoll_wait(ep, events, 1024, 100);
    for (int i = 0; i < n; i++) on_event(events[i].data.ptr, events[i].events);
  }

  /* Check: 256 at a time, each sends the payload and must get it back. */
  ok_count = 0;
  memset(&total_hist, 0, sizeof total_hist);
  int cursor = 0;
  double check_until = now_s() + 120;
  while (now_s() < check_until) {
    int busy = 0;
    for (int i = 0; i < conc; i++) busy += conns[i].state == S_PAYLOAD || conns[i].state == S_DRAIN;
    while (busy < 256 && cursor < conc) {
      struct conn *c = &conns[cursor++];
      if (c->state != S_IDLE) continue;
      c->state = S_PAYLOAD;
      c->got = 0;
      c->started = now_s();
      c->deadline = c->started + op_timeout;
      if (send_small(c, out_payload, (size_t)payload) < 0) fail(c, E_DATA);
      else busy++;
    }
    if (busy == 0 && cursor >= conc) break;
    int n = epoll_wait(ep, events, 1024, 50);
    for (int i = 0; i < n; i++) on_event(events[i].data.ptr, events[i].events);
    sweep_timeouts(now_s());
  }
  print_result("check", now_s() - t0, cpu_used() - cpu0, open);
  for (int i = 0; i < conc; i++) drop(&conns[i]);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: loadgen rate|bulk|http|idle key=value...\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  if (strcmp(argv[1], "rate") == 0) mode = RATE;
  else if (strcmp(argv[1], "bulk") == 0) mode = BULK;
  else if (strcmp(argv[1], "http") == 0) mode = HTTP;
  else if (strcmp(argv[1], "idle") == 0) mode = IDLE;
  else {
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
  }
  const char *proxy_text = NULL;
  for (int i = 2; i < argc; i++) {
    char *eq = strchr(argv[i], '=');
    if (!eq) {
      fprintf(stderr, "bad option %s\n", argv[i]);
      return 2;
    }
    *eq = 0;
    const char *k = argv[i], *v = eq + 1;
    if (strcmp(k, "proto") == 0) {
      if (strcmp(v, "connect") == 0) proto = P_CONNECT;
      else if (strcmp(v, "socks") == 0) proto = P_SOCKS;
      else if (strcmp(v, "direct") == 0) proto = P_DIRECT;
      else {
        // An unknown name must not quietly measure a direct connection as if it went through a proxy.
        fprintf(stderr, "proto=%s: expected connect, socks or direct\n", v);
        return 2;
      }
    }
    else if (strcmp(k, "proxy") == 0) proxy_text = v;
    else if (strcmp(k, "target") == 0) {
      snprintf(target_text, sizeof target_text, "%s", v);
      parse_addr(v, &target_sa);
    } else if (strcmp(k, "conc") == 0 || strcmp(k, "streams") == 0 || (strcmp(k, "count") == 0 && mode == IDLE)) conc = atoi(v);
    else if (strcmp(k, "count") == 0) count_limit = atol(v);
    else if (strcmp(k, "duration") == 0) duration = atof(v);
    else if (strcmp(k, "payload") == 0) payload = atoi(v);
    else if (strcmp(k, "bytes") == 0) bulk_bytes = strtoull(v, NULL, 10);
    else if (strcmp(k, "hold") == 0) hold = atof(v);
    else if (strcmp(k, "timeout") == 0) op_timeout = atof(v);
    else {
      fprintf(stderr, "unknown option %s\n", k);
      return 2;
    }
  }
  if (target_text[0] == 0 || (proto != P_DIRECT && proxy_text == NULL) || conc < 1 || payload < 1 ||
      payload > (int)sizeof out_payload) {
    fprintf(stderr, "need target=, proxy= (unless proto=direct), conc>=1, 1<=payload<=65536\n");
    return 2;
  }
  if (proxy_text) parse_addr(proxy_text, &proxy_sa);
  memset(out_payload, 'x', sizeof out_payload);
  snprintf(connect_req, sizeof connect_req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target_text, target_text);
  if (proto == P_DIRECT)
    snprintf(http_req, sizeof http_req, "GET /bench HTTP/1.1\r\nHost: %s\r\nUser-Agent: clawbox-bench\r\n\r\n", target_text);
  else
    snprintf(http_req, sizeof http_req, "GET http://%s/bench HTTP/1.1\r\nHost: %s\r\nUser-Agent: clawbox-bench\r\n\r\n",
             target_text, target_text);
  if (mode == HTTP && proto == P_SOCKS) {
    fprintf(stderr, "http mode needs proto=connect (an HTTP proxy) or direct\n");
    return 2;
  }
  bulk_buf = malloc(1 << 20);
  conns = calloc((size_t)conc, sizeof *conns);
  if (!bulk_buf || !conns) return 2;
  for (int i = 0; i < conc; i++) {
    conns[i].fd = -1;
    conns[i].idx = i;
    conns[i].state = S_DONE;
  }
  ep = epoll_create1(0);

  if (mode == IDLE) return run_idle();

  double t0 = now_s();
  double cpu0 = cpu_used();
  for (int i = 0; i < conc; i++) {
    if (count_limit > 0 && (long)started_count >= count_limit) break;
    if (start_conn(&conns[i]) < 0) err_count[E_CONNECT]++;
  }
  /* Bulk and count-limited runs end when all work is done; duration is then only the upper bound. */
  double limit = mode == BULK ? t0 + 600 : t0 + (count_limit > 0 ? 600 : duration);
  pump(limit);
  double elapsed = now_s() - t0;
  stopping = 1;
  double cpu = cpu_used() - cpu0;
  print_result("done", elapsed, cpu, 0);
  for (int i = 0; i < conc; i++) drop(&conns[i]);
  return 0;
}
