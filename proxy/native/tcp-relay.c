/*
 * The tunnels' data path (proxy/tcp-relay.ts): dials the checked upstream address and relays bytes between it and
 * the client without a call into JavaScript per chunk, and without a node:net socket for the upstream.
 *
 * Why: per tunnel, a node:net upstream socket (its construction, connect, stream machinery, destroy) and the
 * stream events of the relay were about 40 µs of the ~190 µs a minimal Node CONNECT proxy spends (bench/README.md,
 * *Tunnels relayed natively*). The decision, the audit lines, the CONNECT / SOCKS5 parsing, the SNI check of the first
 * bytes and every time-out stay in TypeScript; this file moves bytes and reports when a connection is made or ends.
 *
 * One epoll instance of its own (edge-triggered) holds every tunnel's two descriptors; libuv watches that epoll's
 * descriptor, so the event loop wakes once for a burst of tunnel events and JavaScript hears of them in one call.
 *
 *   open(events, onEvents)            once per process: events is a Float64Array of MAX_EVENTS * EVENT_STRIDE;
 *                                     onEvents(count) runs after a burst with `count` records filled in
 *   dial(family, address, port) -> id > 0, or -errno   a non-blocking connect to a numeric address; its outcome
 *                                     comes as an EV_CONNECTED record (error 0 or an errno)
 *   start(id, clientFd) -> 0 or -errno   relays the connected upstream's bytes to a duplicate of clientFd (a
 *                                     server that speaks first is heard at once); JavaScript must not write to
 *                                     clientFd after this. The end comes as an EV_CLOSED record.
 *   pass(id, head) -> 0 or -errno     relays the client's bytes too, `head` (a Buffer, or null) first: JavaScript read
 *                                     the first bytes (the SNI check) and must not read clientFd after this
 *   abort(id, counts) -> 0 or -ENOENT closes the upstream and the duplicate now (no record); counts gets the bytes
 *                                     moved up and down
 *   idleMs(id) -> ms since a byte was last read on either side (-1: unknown id)
 *   moved(id) -> bytes moved both ways so far (-1: unknown id)
 *   local(id) -> [address, port]      the upstream socket's own address (SOCKS5's reply carries it)
 *
 * A record: kind, id, bytes up (client to upstream), bytes down, errno (0: a clean end).
 * An id's low SLOT_BITS are its slot: a freed slot is reused before a new one, so JavaScript can index its own
 * per-tunnel state by them in arrays as long as the most tunnels open at once.
 * A tunnel ends (EV_CLOSED) once the upstream has sent its FIN and every byte of it reached the client, whose side
 * is then shut down (the client's FIN needs not be awaited, as squid does not); on any error of either socket; or
 * by abort(). A client's FIN is passed on to the upstream (a half-close), and the tunnel stays open for the answer.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#define MAX_EVENTS 64
#define EVENT_STRIDE 5
#define EV_CONNECTED 1
#define EV_CLOSED 2
/* One read's bytes; shared by every tunnel (one thread), so an idle tunnel holds no buffer. */
#define READ_BYTES (256 * 1024)
/* Reads per direction per turn: a fast pair of peers cannot keep the event loop to itself. */
#define READS_PER_TURN 8
#define SLOT_BITS 20
#define MAX_SLOTS (1u << SLOT_BITS)
#define GENERATIONS 2047u

enum { CLIENT = 0, UPSTREAM = 1 };
enum state { DIALING, CONNECTED, RELAYING };

typedef struct relay relay;

/* epoll's data for one descriptor: which tunnel, which side. */
typedef struct {
  relay *owner;
  int side;
} tag;

typedef struct {
  int fd;
  unsigned readable : 1; /* not known to be drained (edge-triggered: read until a short read or EAGAIN) */
  unsigned writable : 1;
  unsigned fin : 1;      /* a FIN (or an error) is known to be queued behind the data: read on to it */
} end;

/* One direction: from end[k] to end[1 - k]. */
typedef struct {
  unsigned char *pending; /* what the destination did not take yet */
  size_t length, offset;
  uint64_t bytes;
  unsigned eof : 1;  /* the source's FIN was read */
  unsigned done : 1; /* ... and passed on (shutdown of the destination's sending side) */
} flow;

struct relay {
  int32_t id;
  enum state state;
  end ends[2];
  flow flows[2];
  tag tags[2];
  uint64_t last_active; /* uv_now() of the last read */
  uint32_t seen;        /* the burst that last queued it, so that a burst runs it once */
  unsigned held : 1;    /* uploads wait for pass(): JavaScript reads the client's first bytes */
};

typedef struct {
  relay *relay;
  uint32_t generation;
} slot;

static struct {
  int ready;
  int epoll_fd;
  uv_loop_t *loop;
  uv_poll_t poll;
  uv_idle_t idle; /* runs tunnels whose reads stopped at READS_PER_TURN */
  napi_env env;
  napi_ref on_events;
  napi_ref events_ref;
  napi_async_context async_context;
  double *events;
  int event_count;
  slot *slots;
  uint32_t slot_count, slot_capacity;
  uint32_t *free_slots;
  uint32_t free_count;
  /* Ids of tunnels to run (this burst's, and those that reached READS_PER_TURN): `queued` fills while `running`
   * is worked through; the two swap at each run. */
  int32_t *queued, *running;
  uint32_t queued_count, queued_capacity, running_capacity;
  uint32_t burst;
  unsigned char read_buffer[READ_BYTES];
} g;

static relay *find(int32_t id) {
  if (id <= 0) return NULL;
  uint32_t index = (uint32_t)id & (MAX_SLOTS - 1);
  if (index >= g.slot_count) return NULL;
  relay *r = g.slots[index].relay;
  return r != NULL && r->id == id ? r : NULL;
}

/* A slot for a new tunnel; its id carries the slot's generation, so that a stale id never names a later tunnel. */
static relay *allocate(void) {
  uint32_t index;
  if (g.free_count > 0) {
    index = g.free_slots[--g.free_count];
  } else {
    if (g.slot_count == MAX_SLOTS) return NULL;
    if (g.slot_count == g.slot_capacity) {
      uint32_t capacity = g.slot_capacity == 0 ? 1024 : g.slot_capacity * 2;
      slot *slots = realloc(g.slots, capacity * sizeof *slots);
      if (slots == NULL) return NULL;
      g.slots = slots;
      uint32_t *free_slots = realloc(g.free_slots, capacity * sizeof *free_slots);
      if (free_slots == NULL) return NULL;
      g.free_slots = free_slots;
      g.slot_capacity = capacity;
    }
    index = g.slot_count++;
    g.slots[index].generation = 0;
  }
  relay *r = calloc(1, sizeof *r);
  if (r == NULL) {
    g.free_slots[g.free_count++] = index;
    return NULL;
  }
  slot *s = &g.slots[index];
  s->generation = s->generation % GENERATIONS + 1;
  s->relay = r;
  r->id = (int32_t)((s->generation << SLOT_BITS) | index);
  r->ends[CLIENT].fd = -1;
  r->ends[UPSTREAM].fd = -1;
  for (int k = 0; k < 2; k++) {
    r->tags[k].owner = r;
    r->tags[k].side = k;
  }
  r->last_active = uv_now(g.loop);
  return r;
}

/* Closes both descriptors and forgets the tunnel. The client's is a duplicate: out of the epoll first, since the
 * registration would outlive its close while node:net still holds the original. */
static void release(relay *r) {
  if (r->ends[CLIENT].fd >= 0) {
    epoll_ctl(g.epoll_fd, EPOLL_CTL_DEL, r->ends[CLIENT].fd, NULL);
    close(r->ends[CLIENT].fd);
  }
  if (r->ends[UPSTREAM].fd >= 0) close(r->ends[UPSTREAM].fd);
  for (int k = 0; k < 2; k++) free(r->flows[k].pending);
  uint32_t index = (uint32_t)r->id & (MAX_SLOTS - 1);
  g.slots[index].relay = NULL;
  g.free_slots[g.free_count++] = index;
  free(r);
}

static void record(int kind, int32_t id, double up, double down, int err) {
  double *e = g.events + g.event_count * EVENT_STRIDE;
  e[0] = kind;
  e[1] = id;
  e[2] = up;
  e[3] = down;
  e[4] = err;
  g.event_count++;
}

static void report_exception(napi_env env) {
  napi_value err;
  if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
}

/* Hands the records so far to JavaScript. Its calls (start, abort, dial) add no record, so none is lost here. */
static void flush(void) {
  if (g.event_count == 0) return;
  int count = g.event_count;
  napi_handle_scope scope;
  if (napi_open_handle_scope(g.env, &scope) != napi_ok) return;
  napi_value callback, receiver, arg, result;
  napi_get_reference_value(g.env, g.on_events, &callback);
  napi_get_global(g.env, &receiver);
  napi_create_int32(g.env, count, &arg);
  g.event_count = 0;
  if (napi_make_callback(g.env, g.async_context, receiver, callback, 1, &arg, &result) != napi_ok) report_exception(g.env);
  napi_close_handle_scope(g.env, scope);
}

static void finish(relay *r, int err) {
  record(EV_CLOSED, r->id, (double)r->flows[CLIENT].bytes, (double)r->flows[UPSTREAM].bytes, err);
  release(r);
}

static int keep(flow *f, const unsigned char *bytes, size_t length) {
  f->pending = malloc(length);
  if (f->pending == NULL) return ENOMEM;
  memcpy(f->pending, bytes, length);
  f->length = length;
  f->offset = 0;
  return 0;
}

/* Moves what it can from end[k] to end[1 - k]. Returns an errno to end the tunnel with, or 0; sets *more when it
 * stopped at READS_PER_TURN with the source still readable. */
static int pump(relay *r, int k, int *more) {
  end *src = &r->ends[k], *dst = &r->ends[1 - k];
  flow *f = &r->flows[k];
  for (int reads = 0;;) {
    if (f->pending != NULL) {
      if (!dst->writable) return 0;
      ssize_t sent = send(dst->fd, f->pending + f->offset, f->length - f->offset, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent < 0) {
        if (errno == EAGAIN || errno == EINTR) {
          dst->writable = 0;
          return 0;
        }
        return errno;
      }
      f->offset += (size_t)sent;
      if (f->offset < f->length) {
        dst->writable = 0;
        return 0;
      }
      free(f->pending);
      f->pending = NULL;
    }
    if (f->done) return 0;
    if (f->eof) {
      /* ENOTCONN: the peer is gone already; its own error, if any, comes with the next read. */
      if (shutdown(dst->fd, SHUT_WR) < 0 && errno != ENOTCONN) return errno;
      f->done = 1;
      return 0;
    }
    if (!src->readable) return 0;
    if (reads == READS_PER_TURN) {
      *more = 1;
      return 0;
    }
    reads++;
    ssize_t n = recv(src->fd, g.read_buffer, READ_BYTES, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        src->readable = 0;
        return 0;
      }
      return errno;
    }
    if (n == 0) {
      f->eof = 1;
      continue;
    }
    r->last_active = uv_now(g.loop);
    f->bytes += (uint64_t)n;
    /* A short read took all there was; with a FIN or error signalled, read on to it. */
    if (n < READ_BYTES && !src->fin) src->readable = 0;
    ssize_t sent = 0;
    if (dst->writable) {
      sent = send(dst->fd, g.read_buffer, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent < 0) {
        if (errno != EAGAIN && errno != EINTR) return errno;
        sent = 0;
      }
    }
    if (sent < n) {
      dst->writable = 0;
      int err = keep(f, g.read_buffer + sent, (size_t)(n - sent));
      if (err != 0) return err;
      return 0;
    }
  }
}

/* Runs a relaying tunnel's two directions; ends it when due. Returns 1 if it wants another turn. */
static int run(relay *r) {
  int more = 0;
  int err = r->held ? 0 : pump(r, CLIENT, &more);
  if (err == 0) err = pump(r, UPSTREAM, &more);
  if (err != 0) {
    finish(r, err);
    return 0;
  }
  /* The upstream's FIN reached the client (its bytes before it), and nothing of the client's waits to go up. */
  if (r->flows[UPSTREAM].done && r->flows[CLIENT].pending == NULL) {
    finish(r, 0);
    return 0;
  }
  return more;
}

static void on_idle(uv_idle_t *handle);

/* Room in the queue for `extra` more ids: ENOMEM if there is none to be had. */
static int reserve(uint32_t extra) {
  if (g.queued_count + extra <= g.queued_capacity) return 0;
  uint32_t capacity = g.queued_capacity == 0 ? 256 : g.queued_capacity;
  while (capacity < g.queued_count + extra) capacity *= 2;
  int32_t *queued = realloc(g.queued, capacity * sizeof *queued);
  if (queued == NULL) return ENOMEM;
  g.queued = queued;
  g.queued_capacity = capacity;
  return 0;
}

static int queue(int32_t id) {
  if (reserve(1) != 0) return ENOMEM;
  g.queued[g.queued_count++] = id;
  return 0;
}

/* Runs the queued tunnels once each (ids, not pointers: one may have ended or been aborted since), re-queueing
 * those that want more, and hands JavaScript the records in groups of at most MAX_EVENTS. */
static void run_queued(void) {
  uint32_t count = g.queued_count;
  int32_t *ids = g.queued;
  uint32_t capacity = g.queued_capacity;
  g.queued = g.running;
  g.queued_capacity = g.running_capacity;
  g.queued_count = 0;
  g.running = ids;
  g.running_capacity = capacity;
  for (uint32_t i = 0; i < count; i++) {
    relay *r = find(ids[i]);
    if (r == NULL || r->state != RELAYING) continue;
    /* A run adds at most one record: hand over a full set first. */
    if (g.event_count == MAX_EVENTS) flush();
    if (run(r)) {
      int err = queue(r->id);
      if (err != 0) finish(r, err);
    }
  }
  flush();
  if (g.queued_count > 0) uv_idle_start(&g.idle, on_idle);
  else uv_idle_stop(&g.idle);
}

static void on_connect_event(relay *r, uint32_t events) {
  int err = 0;
  socklen_t length = sizeof err;
  if (getsockopt(r->ends[UPSTREAM].fd, SOL_SOCKET, SO_ERROR, &err, &length) < 0) err = errno;
  if (err == 0 && !(events & EPOLLOUT)) {
    if (!(events & (EPOLLERR | EPOLLHUP))) return; /* not decided yet */
    err = ECONNREFUSED;
  }
  if (err != 0) {
    record(EV_CONNECTED, r->id, 0, 0, err);
    release(r);
    return;
  }
  r->state = CONNECTED;
  r->ends[UPSTREAM].writable = 1;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) r->ends[UPSTREAM].readable = 1;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) r->ends[UPSTREAM].fin = 1;
  record(EV_CONNECTED, r->id, 0, 0, 0);
}

static void on_idle(uv_idle_t *handle) {
  (void)handle;
  run_queued();
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  (void)handle;
  (void)status;
  (void)events;
  struct epoll_event ready[MAX_EVENTS];
  /* Room to queue every tunnel this burst may name, before the events are taken: an edge-triggered event taken
   * cannot be put back, and a tunnel ended inside the loop could still be named by a later event of it. Without the
   * room, the events stay in the epoll for the next turn. */
  if (reserve(MAX_EVENTS) != 0) return;
  int n = epoll_wait(g.epoll_fd, ready, MAX_EVENTS, 0);
  g.burst++;
  for (int i = 0; i < n; i++) {
    tag *t = ready[i].data.ptr;
    relay *r = t->owner;
    uint32_t ev = ready[i].events;
    if (r->state == DIALING) {
      on_connect_event(r, ev);
      continue;
    }
    end *e = &r->ends[t->side];
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) e->readable = 1;
    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) e->fin = 1;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) e->writable = 1;
    /* A connected upstream waits for start(); the client's duplicate is only registered by start(). */
    if (r->state == RELAYING && r->seen != g.burst) {
      r->seen = g.burst;
      g.queued[g.queued_count++] = r->id; /* reserved above */
    }
  }
  /* The burst's connection records (at most one per event) and its tunnels' ends go to JavaScript together. */
  run_queued();
}

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", what, strerror(err));
  napi_throw_error(env, "ERR_TCP_RELAY", message);
  return NULL;
}

static napi_value int32_value(napi_env env, int32_t value) {
  napi_value v;
  napi_create_int32(env, value, &v);
  return v;
}

static napi_value double_value(napi_env env, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  return v;
}

static int args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, "ERR_TCP_RELAY", "missing arguments");
    return 0;
  }
  return 1;
}

static int arg_int32(napi_env env, napi_value v, int32_t *out) {
  if (napi_get_value_int32(env, v, out) == napi_ok) return 1;
  napi_throw_type_error(env, "ERR_TCP_RELAY", "expected an integer");
  return 0;
}

/* The arguments, the first of them a tunnel's id: *r is its tunnel, or NULL for one that has ended. 0 when an
 * argument was wrong (an exception is pending). */
static int relay_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, relay **r) {
  int32_t id;
  if (!args(env, info, want, argv) || !arg_int32(env, argv[0], &id)) return 0;
  *r = find(id);
  return 1;
}

static int arg_float64_array(napi_env env, napi_value v, double **data, size_t length) {
  bool is_typed;
  napi_typedarray_type type;
  size_t actual;
  void *raw;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, v, &type, &actual, &raw, NULL, NULL) != napi_ok || type != napi_float64_array || actual < length) {
    napi_throw_type_error(env, "ERR_TCP_RELAY", "expected a large enough Float64Array");
    return 0;
  }
  *data = raw;
  return 1;
}

static void cleanup(void *arg) {
  (void)arg;
  for (uint32_t i = 0; i < g.slot_count; i++) {
    if (g.slots[i].relay != NULL) release(g.slots[i].relay);
  }
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args(env, info, 2, argv)) return NULL;
  if (g.ready) {
    napi_throw_error(env, "ERR_TCP_RELAY", "already open in this process");
    return NULL;
  }
  double *events;
  if (!arg_float64_array(env, argv[0], &events, MAX_EVENTS * EVENT_STRIDE)) return NULL;
  napi_valuetype type;
  if (napi_typeof(env, argv[1], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, "ERR_TCP_RELAY", "onEvents must be a function");
    return NULL;
  }
  g.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (g.epoll_fd < 0) return throw_errno(env, "epoll_create1", errno);
  if (napi_get_uv_event_loop(env, &g.loop) != napi_ok || uv_poll_init(g.loop, &g.poll, g.epoll_fd) != 0 ||
      uv_idle_init(g.loop, &g.idle) != 0) {
    close(g.epoll_fd);
    napi_throw_error(env, "ERR_TCP_RELAY", "cannot watch the relay's epoll descriptor");
    return NULL;
  }
  g.env = env;
  g.events = events;
  napi_create_reference(env, argv[0], 1, &g.events_ref);
  napi_create_reference(env, argv[1], 1, &g.on_events);
  napi_value name;
  napi_create_string_utf8(env, "clawbox:tcp-relay", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &g.async_context);
  uv_poll_start(&g.poll, UV_READABLE, on_poll);
  /* The tunnels' node:net client sockets keep the process alive while tunnels are open; this watcher does not. */
  uv_unref((uv_handle_t *)&g.poll);
  uv_unref((uv_handle_t *)&g.idle);
  napi_add_env_cleanup_hook(env, cleanup, NULL);
  g.ready = 1;
  return NULL;
}

static napi_value js_dial(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args(env, info, 3, argv)) return NULL;
  int32_t family, port;
  char address[INET6_ADDRSTRLEN];
  size_t length;
  if (!arg_int32(env, argv[0], &family) || !arg_int32(env, argv[2], &port)) return NULL;
  if (!g.ready) return int32_value(env, -EBADF);
  if (napi_get_value_string_utf8(env, argv[1], address, sizeof address, &length) != napi_ok || length + 1 >= sizeof address ||
      port < 1 || port > 65535 || (family != 4 && family != 6)) {
    return int32_value(env, -EINVAL);
  }
  struct sockaddr_storage to;
  socklen_t to_length;
  memset(&to, 0, sizeof to);
  if (family == 4) {
    struct sockaddr_in *in = (struct sockaddr_in *)&to;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, address, &in->sin_addr) != 1) return int32_value(env, -EINVAL);
    to_length = sizeof *in;
  } else {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&to;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, address, &in6->sin6_addr) != 1) return int32_value(env, -EINVAL);
    to_length = sizeof *in6;
  }
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return int32_value(env, -errno);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&to, to_length) < 0 && errno != EINPROGRESS) {
    int err = errno;
    close(fd);
    return int32_value(env, -err);
  }
  relay *r = allocate();
  if (r == NULL) {
    close(fd);
    return int32_value(env, -ENOMEM);
  }
  r->state = DIALING;
  r->ends[UPSTREAM].fd = fd;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &r->tags[UPSTREAM]};
  if (epoll_ctl(g.epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
    int err = errno;
    release(r);
    return int32_value(env, -err);
  }
  return int32_value(env, r->id);
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  relay *r;
  int32_t client_fd;
  if (!relay_args(env, info, 2, argv, &r) || !arg_int32(env, argv[1], &client_fd)) return NULL;
  if (r == NULL || r->state != CONNECTED) return int32_value(env, -ENOENT);
  int fd = fcntl(client_fd, F_DUPFD_CLOEXEC, 3);
  if (fd < 0) return int32_value(env, -errno);
  r->ends[CLIENT].fd = fd;
  r->ends[CLIENT].writable = 1;
  r->ends[CLIENT].readable = 1;
  r->held = 1;
  r->state = RELAYING;
  /* Registered edge-triggered while ready, the descriptor is reported at once: the next burst runs the tunnel. */
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &r->tags[CLIENT]};
  if (epoll_ctl(g.epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
    int err = errno;
    close(fd);
    r->ends[CLIENT].fd = -1;
    r->state = CONNECTED;
    return int32_value(env, -err);
  }
  r->last_active = uv_now(g.loop);
  return int32_value(env, 0);
}

static napi_value js_pass(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  relay *r;
  if (!relay_args(env, info, 2, argv, &r)) return NULL;
  if (r == NULL || r->state != RELAYING || !r->held) return int32_value(env, -ENOENT);
  napi_valuetype head_type;
  napi_typeof(env, argv[1], &head_type);
  if (head_type != napi_null && head_type != napi_undefined) {
    void *data;
    size_t length;
    if (napi_get_buffer_info(env, argv[1], &data, &length) != napi_ok) {
      napi_throw_type_error(env, "ERR_TCP_RELAY", "head must be a Buffer or null");
      return NULL;
    }
    if (length > 0) {
      if (keep(&r->flows[CLIENT], data, length) != 0) return int32_value(env, -ENOMEM);
      r->flows[CLIENT].bytes += length;
    }
  }
  r->held = 0;
  /* JavaScript consumed the readiness that epoll reported: the client may hold more, or its FIN. Run it soon. */
  r->ends[CLIENT].readable = 1;
  if (queue(r->id) != 0) return int32_value(env, -ENOMEM);
  uv_idle_start(&g.idle, on_idle);
  return int32_value(env, 0);
}

static napi_value js_abort(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  relay *r;
  double *counts;
  if (!relay_args(env, info, 2, argv, &r) || !arg_float64_array(env, argv[1], &counts, 2)) return NULL;
  if (r == NULL) return int32_value(env, -ENOENT);
  counts[0] = (double)r->flows[CLIENT].bytes;
  counts[1] = (double)r->flows[UPSTREAM].bytes;
  release(r);
  return int32_value(env, 0);
}

static napi_value js_idle_ms(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  relay *r;
  if (!relay_args(env, info, 1, argv, &r)) return NULL;
  return double_value(env, r == NULL ? -1 : (double)(uv_now(g.loop) - r->last_active));
}

static napi_value js_moved(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  relay *r;
  if (!relay_args(env, info, 1, argv, &r)) return NULL;
  return double_value(env, r == NULL ? -1 : (double)(r->flows[CLIENT].bytes + r->flows[UPSTREAM].bytes));
}

static napi_value js_local(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  relay *r;
  if (!relay_args(env, info, 1, argv, &r)) return NULL;
  if (r == NULL) return throw_errno(env, "local", ENOENT);
  struct sockaddr_storage self;
  socklen_t length = sizeof self;
  if (getsockname(r->ends[UPSTREAM].fd, (struct sockaddr *)&self, &length) < 0) return throw_errno(env, "getsockname", errno);
  char text[INET6_ADDRSTRLEN] = "";
  int port = 0;
  if (self.ss_family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)&self;
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    port = ntohs(in->sin_port);
  } else {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&self;
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    port = ntohs(in6->sin6_port);
  }
  napi_value pair, address;
  napi_create_array_with_length(env, 2, &pair);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &address);
  napi_set_element(env, pair, 0, address);
  napi_set_element(env, pair, 1, int32_value(env, port));
  return pair;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"dial", NULL, js_dial, NULL, NULL, NULL, napi_default, NULL},
      {"start", NULL, js_start, NULL, NULL, NULL, napi_default, NULL},
      {"pass", NULL, js_pass, NULL, NULL, NULL, napi_default, NULL},
      {"abort", NULL, js_abort, NULL, NULL, NULL, napi_default, NULL},
      {"idleMs", NULL, js_idle_ms, NULL, NULL, NULL, napi_default, NULL},
      {"moved", NULL, js_moved, NULL, NULL, NULL, napi_default, NULL},
      {"local", NULL, js_local, NULL, NULL, NULL, napi_default, NULL},
      {"MAX_EVENTS", NULL, NULL, NULL, NULL, int32_value(env, MAX_EVENTS), napi_default, NULL},
      {"EVENT_STRIDE", NULL, NULL, NULL, NULL, int32_value(env, EVENT_STRIDE), napi_default, NULL},
      {"EV_CONNECTED", NULL, NULL, NULL, NULL, int32_value(env, EV_CONNECTED), napi_default, NULL},
      {"EV_CLOSED", NULL, NULL, NULL, NULL, int32_value(env, EV_CLOSED), napi_default, NULL},
      {"SLOT_BITS", NULL, NULL, NULL, NULL, int32_value(env, SLOT_BITS), napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
