/*
 * Upstream servers for the clawbox bench, one per process, single-threaded epoll, so they are never the
 * bottleneck that a proxy is measured against ("direct" runs measure them).
 *
 *   upstreams echo   IP:PORT CLOSE_AFTER   echoes bytes; closes after echoing CLOSE_AFTER bytes (0 = never)
 *   upstreams source IP:PORT               reads an 8-byte big-endian count, sends that many bytes, closes
 *   upstreams http   IP:PORT               HTTP/1.1 keep-alive, fixed 13-byte body; honours Connection: close
 *   upstreams dns    IP:PORT               UDP authoritative stub: A -> 198.18.0.1 for every name, TTL 300
 *
 * Why the servers close first (echo after CLOSE_AFTER bytes, source after its count, http on Connection: close):
 * the side that closes first keeps TIME_WAIT. On the accepting side that costs nothing, but a proxy that closed
 * its upstream leg first would keep TIME_WAIT on its own ephemeral ports (28k per destination, 60 s each), and a
 * 10 s run at 10k tunnels/s would run out of ports and measure that instead of the proxy.
 *
 * Every server stops by itself after MAX_LIFETIME seconds, so a crashed harness cannot leave it running forever.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

#define MAX_LIFETIME 3600
#define MAX_EVENTS 512
#define BUF 65536

enum kind { ECHO, SOURCE, HTTP };

struct conn {
  int fd;
  enum kind kind;
  uint64_t done;   /* echo: bytes echoed; source: bytes sent */
  uint64_t want;   /* source: bytes to send */
  uint32_t hlen;   /* header bytes collected (source count, http request) */
  uint32_t plen;   /* pending output */
  uint32_t poff;
  int close_after_write;
  char head[4096];
  char *pending;
};

static uint64_t close_after;
static char zeros[1 << 20];

static void die(const char *what) {
  perror(what);
  exit(2);
}

static void close_conn(int ep, struct conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->pending);
  free(c);
}

/* Queues output that did not fit in the socket buffer; the caller then waits for EPOLLOUT. */
static int queue(int ep, struct conn *c, const char *data, uint32_t len) {
  char *p = realloc(c->pending, c->plen - c->poff + len);
  if (!p) return -1;
  if (c->poff > 0) memmove(p, p + c->poff, c->plen - c->poff);
  c->plen -= c->poff;
  c->poff = 0;
  memcpy(p + c->plen, data, len);
  c->pending = p;
  c->plen += len;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int send_all(int ep, struct conn *c, const char *data, uint32_t len) {
  if (c->plen > c->poff) return queue(ep, c, data, len);
  ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
  if (n < 0) {
    if (errno != EAGAIN) return -1;
    n = 0;
  }
  if ((uint32_t)n < len) return queue(ep, c, data + n, len - (uint32_t)n);
  return 0;
}

/* Returns 1 when the connection should be closed. */
static int flush_pending(int ep, struct conn *c) {
  while (c->poff < c->plen) {
    ssize_t n = send(c->fd, c->pending + c->poff, c->plen - c->poff, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN ? 0 : 1;
    c->poff += (uint32_t)n;
  }
  c->plen = c->poff = 0;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  return c->close_after_write;
}

/* Source: keep the socket buffer full until `want` bytes are out. Returns 1 when done (close). */
static int pump_source(int ep, struct conn *c) {
  while (c->done < c->want) {
    uint64_t left = c->want - c->done;
    ssize_t n = send(c->fd, zeros, left < sizeof zeros ? left : sizeof zeros, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno != EAGAIN) return 1;
      struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
      epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
      return 0;
    }
    c->done += (uint64_t)n;
  }
  return 1;
}

static const char HTTP_REPLY[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, bench\n";
static const char HTTP_REPLY_CLOSE[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nhello, bench\n";

/* Answers every complete request head in c->head (GET only: no bodies). Returns 1 to close. */
static int serve_http(int ep, struct conn *c) {
  for (;;) {
    c->head[c->hlen] = 0;
    char *end = strstr(c->head, "\r\n\r\n");
    if (!end) return c->hlen >= sizeof c->head - 1;
    size_t used = (size_t)(end + 4 - c->head);
    *end = 0;
    int close_it = strcasestr(c->head, "\nconnection: close") != NULL ||
                   (strstr(c->head, "HTTP/1.0") != NULL && strcasestr(c->head, "\nconnection: keep-alive") == NULL);
    const char *reply = close_it ? HTTP_REPLY_CLOSE : HTTP_REPLY;
    uint32_t len = (uint32_t)strlen(reply);
    if (send_all(ep, c, reply, len) < 0) return 1;
    memmove(c->head, c->head + used, c->hlen - used);
    c->hlen -= (uint32_t)used;
    if (close_it) {
      if (c->plen > c->poff) {
        c->close_after_write = 1;
        return 0;
      }
      return 1;
    }
  }
}

/* Returns 1 to close. */
static int on_readable(int ep, struct conn *c) {
  char buf[BUF];
  for (;;) {
    ssize_t n;
    if (c->kind == ECHO) {
      n = recv(c->fd, buf, sizeof buf, 0);
    } else {
      size_t room = (c->kind == SOURCE ? 8 : sizeof c->head - 1) - c->hlen;
      if (room == 0) n = recv(c->fd, buf, sizeof buf, 0); /* source: ignore anything after the count */
      else n = recv(c->fd, c->head + c->hlen, room, 0);
      if (n > 0 && room == 0) continue;
    }
    if (n == 0) return 1;
    if (n < 0) return errno == EAGAIN ? 0 : 1;
    switch (c->kind) {
      case ECHO:
        if (send_all(ep, c, buf, (uint32_t)n) < 0) return 1;
        c->done += (uint64_t)n;
        if (close_after > 0 && c->done >= close_after) {
          if (c->plen > c->poff) c->close_after_write = 1;
          else return 1;
        }
        break;
      case SOURCE:
        c->hlen += (uint32_t)n;
        if (c->hlen == 8 && c->want == 0) {
          uint64_t want = 0;
          for (int i = 0; i < 8; i++) want = (want << 8) | (uint8_t)c->head[i];
          c->want = want;
          if (want == 0 || pump_source(ep, c)) return 1;
        }
        break;
      case HTTP:
        c->hlen += (uint32_t)n;
        if (serve_http(ep, c)) return 1;
        break;
    }
  }
}

static int tcp_listener(struct sockaddr_in *sa) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)sa, sizeof *sa) < 0) die("bind");
  if (listen(fd, 4096) < 0) die("listen");
  return fd;
}

static void run_tcp(enum kind kind, struct sockaddr_in *sa) {
  int lfd = tcp_listener(sa);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event events[MAX_EVENTS];
  time_t stop_at = time(NULL) + MAX_LIFETIME;
  fprintf(stderr, "ready\n");
  while (time(NULL) < stop_at) {
    int n = epoll_wait(ep, events, MAX_EVENTS, 1000);
    for (int i = 0; i < n; i++) {
      struct conn *c = events[i].data.ptr;
      if (c == NULL) {
        for (;;) {
          int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
          if (fd < 0) break;
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct conn *nc = calloc(1, sizeof *nc);
          if (!nc) {
            close(fd);
            continue;
          }
          nc->fd = fd;
          nc->kind = kind;
          struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
        }
        continue;
      }
      int close_it = 0;
      if (events[i].events & (EPOLLERR | EPOLLHUP)) close_it = 1;
      if (!close_it && (events[i].events & EPOLLOUT)) {
        if (c->kind == SOURCE) close_it = pump_source(ep, c);
        else close_it = flush_pending(ep, c);
      }
      if (!close_it && (events[i].events & EPOLLIN)) close_it = on_readable(ep, c);
      if (close_it) close_conn(ep, c);
    }
  }
}

/* DNS stub: answers in batches (recvmmsg/sendmmsg) so one core serves far more than any resolver under test. */
#define BATCH 64
static size_t dns_answer(const uint8_t *q, size_t qlen, uint8_t *out) {
  if (qlen < 12 + 5 || qlen > 512) return 0;
  if (q[2] & 0x80) return 0; /* a response: ignore */
  size_t p = 12;
  while (p < qlen && q[p] != 0) {
    if ((q[p] & 0xc0) != 0) return 0;
    p += (size_t)q[p] + 1;
  }
  if (p + 5 > qlen) return 0;
  p += 1;
  uint16_t qtype = (uint16_t)(q[p] << 8 | q[p + 1]);
  uint16_t qclass = (uint16_t)(q[p + 2] << 8 | q[p + 3]);
  p += 4;
  memcpy(out, q, p);
  out[2] = 0x84 | (q[2] & 0x01); /* QR, AA, keep RD */
  out[3] = 0x00;                 /* NOERROR */
  out[4] = 0; out[5] = 1;        /* QDCOUNT 1 */
  out[6] = 0; out[7] = 0;        /* ANCOUNT */
  memset(out + 8, 0, 4);         /* no NS, no additional (an EDNS OPT in the query is dropped) */
  if (qtype == 1 && qclass == 1) {
    static const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4, 198, 18, 0, 1};
    memcpy(out + p, rr, sizeof rr);
    p += sizeof rr;
    out[7] = 1;
  }
  return p;
}

static void run_dns(struct sockaddr_in *sa) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) die("socket");
  int size = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  if (bind(fd, (struct sockaddr *)sa, sizeof *sa) < 0) die("bind");
  struct timeval tv = {.tv_sec = 1};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  static uint8_t in[BATCH][512], out[BATCH][600];
  struct sockaddr_in from[BATCH];
  struct iovec iov[BATCH], oiov[BATCH];
  struct mmsghdr msgs[BATCH], replies[BATCH];
  time_t stop_at = time(NULL) + MAX_LIFETIME;
  fprintf(stderr, "ready\n");
  while (time(NULL) < stop_at) {
    for (int i = 0; i < BATCH; i++) {
      iov[i] = (struct iovec){in[i], sizeof in[i]};
      msgs[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i], .msg_iov = &iov[i], .msg_iovlen = 1};
    }
    int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
    if (n <= 0) continue;
    int m = 0;
    for (int i = 0; i < n; i++) {
      size_t len = dns_answer(in[i], msgs[i].msg_len, out[m]);
      if (len == 0) continue;
      oiov[m] = (struct iovec){out[m], len};
      replies[m].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = msgs[i].msg_hdr.msg_namelen, .msg_iov = &oiov[m], .msg_iovlen = 1};
      m++;
    }
    for (int sent = 0; sent < m;) {
      int k = sendmmsg(fd, replies + sent, (unsigned)(m - sent), 0);
      if (k <= 0) break;
      sent += k;
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: upstreams echo|source|http|dns IP:PORT [CLOSE_AFTER]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  struct sockaddr_in sa;
  parse_addr(argv[2], &sa);
  if (strcmp(argv[1], "echo") == 0) {
    close_after = argc > 3 ? strtoull(argv[3], NULL, 10) : 0;
    run_tcp(ECHO, &sa);
  } else if (strcmp(argv[1], "source") == 0) {
    run_tcp(SOURCE, &sa);
  } else if (strcmp(argv[1], "http") == 0) {
    run_tcp(HTTP, &sa);
  } else if (strcmp(argv[1], "dns") == 0) {
    run_dns(&sa);
  } else {
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
  }
  return 0;
}
