/*
 * Batched datagram I/O for the gateway's DNS front (proxy/udp-batch.ts): recvmmsg(2) and sendmmsg(2) on a UDP
 * socket that node:dgram bound, so that a burst of queries costs one system call and one call into JavaScript
 * instead of one of each per datagram (Node 20's dgram has neither call).
 *
 * This file parses nothing: it moves datagrams between the socket and memory that JavaScript owns, and every
 * length it writes is bounded by the slot it wrote into. The DNS parsing and every decision stay in TypeScript.
 *
 *   attach(fd, inArena, inMeta, onBatch) -> handle   watch a dup of fd; each readable burst fills up to SLOTS
 *                                                      slots of inArena, describes them in inMeta and calls
 *                                                      onBatch(count) once per recvmmsg
 *   send(handle, outArena, outMeta, count) -> 0 or -errno   sendmmsg of the count datagrams described in outMeta;
 *                                                      one lost (-errno: the first loss's) does not stop the rest
 *   reading(handle, on)                               stop or resume watching (sends go on either way)
 *   close(handle, onClosed)                           stop watching; onClosed() once the dup is closed (so the
 *                                                      port is free when the dgram socket closes after it)
 *
 * inMeta, per slot (IN_STRIDE int32s): length, truncated (1 if the datagram was longer than the slot), family
 * (4 or 6), port, then the address: IPv4 as one host-order word; IPv6 as 16 bytes in four words, then its scope id,
 * and its text at the slot's end (TEXT_BYTES, NUL-terminated, `%interface` after a link-local address, as Node
 * writes it) so that JavaScript need not format it.
 * outMeta, per datagram (OUT_STRIDE int32s): offset in outArena, length, family, port, then the address words and
 * the scope id exactly as inMeta gave them.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <net/if.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#define SLOTS 64
#define SLOT_BYTES 4096
#define TEXT_BYTES 64
#define DATA_BYTES (SLOT_BYTES - TEXT_BYTES)
#define IN_STRIDE 9
#define OUT_STRIDE 9
/* recvmmsg rounds per readable event, so a flood on this socket cannot starve the rest of the event loop. */
#define ROUNDS_PER_EVENT 4

typedef struct {
  uv_poll_t poll;
  int fd;
  int closing;
  int paused; /* reading(handle, false): also ends the rounds of a read whose batch asked for it */
  /* The poll handle and JavaScript's external both point here: freed when the handle is closed and the external
   * collected, whichever is last, so that a stale handle from JavaScript reads "closed", not freed memory. */
  int owners;
  napi_env env;
  napi_ref on_batch;
  napi_ref on_closed; /* close()'s callback: the descriptor is closed when it runs */
  napi_ref in_arena_ref;
  napi_ref in_meta_ref;
  napi_async_context async_context;
  unsigned char *in_arena;
  int32_t *in_meta;
  struct mmsghdr msgs[SLOTS];
  struct iovec iov[SLOTS];
  struct sockaddr_storage addrs[SLOTS];
} batch_socket;

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", what, strerror(err));
  napi_throw_error(env, "ERR_UDP_BATCH", message);
  return NULL;
}

static void describe(batch_socket *s, int i) {
  int32_t *m = s->in_meta + i * IN_STRIDE;
  const struct sockaddr_storage *a = &s->addrs[i];
  m[0] = (int32_t)s->msgs[i].msg_len;
  m[1] = (s->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? 1 : 0;
  m[4] = m[5] = m[6] = m[7] = m[8] = 0;
  char *text = (char *)s->in_arena + i * SLOT_BYTES + DATA_BYTES;
  text[0] = '\0';
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)a;
    m[2] = 4;
    m[3] = ntohs(v4->sin_port);
    m[4] = (int32_t)ntohl(v4->sin_addr.s_addr);
  } else if (a->ss_family == AF_INET6) {
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)a;
    m[2] = 6;
    m[3] = ntohs(v6->sin6_port);
    memcpy(&m[4], &v6->sin6_addr, 16);
    m[8] = (int32_t)v6->sin6_scope_id;
    if (inet_ntop(AF_INET6, &v6->sin6_addr, text, TEXT_BYTES) != NULL && IN6_IS_ADDR_LINKLOCAL(&v6->sin6_addr) &&
        v6->sin6_scope_id != 0) {
      /* The answer goes back by the scope id; the text names the interface, as node:dgram's rinfo does. */
      size_t used = strlen(text);
      char name[IF_NAMESIZE];
      if (if_indextoname(v6->sin6_scope_id, name) != NULL) snprintf(text + used, TEXT_BYTES - used, "%%%s", name);
      else snprintf(text + used, TEXT_BYTES - used, "%%%u", (unsigned)v6->sin6_scope_id);
    }
  } else {
    m[2] = 0; /* no address: JavaScript drops it */
    m[3] = 0;
  }
}

static void report_exception(napi_env env) {
  napi_value err;
  if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  batch_socket *s = handle->data;
  if (status < 0 || s->closing || s->paused) return;
  for (int round = 0; round < ROUNDS_PER_EVENT && !s->closing && !s->paused; round++) {
    for (int i = 0; i < SLOTS; i++) {
      s->iov[i].iov_base = s->in_arena + i * SLOT_BYTES;
      s->iov[i].iov_len = DATA_BYTES;
      memset(&s->msgs[i].msg_hdr, 0, sizeof(struct msghdr));
      s->msgs[i].msg_hdr.msg_iov = &s->iov[i];
      s->msgs[i].msg_hdr.msg_iovlen = 1;
      s->msgs[i].msg_hdr.msg_name = &s->addrs[i];
      s->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
    }
    int n = recvmmsg(s->fd, s->msgs, SLOTS, MSG_DONTWAIT, NULL);
    /* EAGAIN: drained. Any other error (ENOMEM, a queued ICMP error) was consumed by this call; epoll calls again. */
    if (n <= 0) return;
    for (int i = 0; i < n; i++) describe(s, i);

    napi_handle_scope scope;
    if (napi_open_handle_scope(s->env, &scope) != napi_ok) return;
    napi_value callback, receiver, count, result;
    napi_get_reference_value(s->env, s->on_batch, &callback);
    napi_get_global(s->env, &receiver); /* node::MakeCallback wants an object as `this` */
    napi_create_int32(s->env, n, &count);
    /* make_callback: promise jobs and process.nextTick queued by the batch run before it returns, as for dgram. */
    if (napi_make_callback(s->env, s->async_context, receiver, callback, 1, &count, &result) != napi_ok) report_exception(s->env);
    napi_close_handle_scope(s->env, scope);
    if (n < SLOTS) return;
  }
}

static void release(batch_socket *s) {
  if (--s->owners == 0) free(s);
}

/* What attach took from JavaScript: its references and the async context. */
static void drop_js(batch_socket *s) {
  napi_delete_reference(s->env, s->on_batch);
  napi_delete_reference(s->env, s->in_arena_ref);
  napi_delete_reference(s->env, s->in_meta_ref);
  napi_async_destroy(s->env, s->async_context);
}

static void on_closed(uv_handle_t *handle) {
  batch_socket *s = handle->data;
  close(s->fd);
  if (s->on_closed != NULL) {
    napi_handle_scope scope;
    if (napi_open_handle_scope(s->env, &scope) == napi_ok) {
      napi_value callback, receiver, result;
      napi_get_reference_value(s->env, s->on_closed, &callback);
      napi_get_global(s->env, &receiver);
      if (napi_make_callback(s->env, s->async_context, receiver, callback, 0, NULL, &result) != napi_ok) report_exception(s->env);
      napi_close_handle_scope(s->env, scope);
    }
    napi_delete_reference(s->env, s->on_closed);
  }
  drop_js(s);
  release(s);
}

static void on_collected(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  release(data);
}

static int arg_int32(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok;
}

static int arg_int32_array(napi_env env, napi_value v, int32_t **data, size_t *length) {
  bool is_typed;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) return 0;
  napi_typedarray_type type;
  void *raw;
  if (napi_get_typedarray_info(env, v, &type, length, &raw, NULL, NULL) != napi_ok || type != napi_int32_array) return 0;
  *data = raw;
  return 1;
}

static int arg_arraybuffer(napi_env env, napi_value v, unsigned char **data, size_t *length) {
  bool is_ab;
  if (napi_is_arraybuffer(env, v, &is_ab) != napi_ok || !is_ab) return 0;
  void *raw;
  if (napi_get_arraybuffer_info(env, v, &raw, length) != napi_ok) return 0;
  *data = raw;
  return 1;
}

static napi_value Attach(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  unsigned char *arena;
  size_t arena_bytes, meta_length;
  int32_t *meta;
  napi_valuetype callback_type = napi_undefined;
  if (argc == 4) napi_typeof(env, argv[3], &callback_type);
  if (argc != 4 || !arg_int32(env, argv[0], &fd) || fd < 0 || !arg_arraybuffer(env, argv[1], &arena, &arena_bytes) ||
      !arg_int32_array(env, argv[2], &meta, &meta_length) || callback_type != napi_function) {
    napi_throw_type_error(env, "ERR_UDP_BATCH", "attach(fd, ArrayBuffer, Int32Array, function) expected");
    return NULL;
  }
  if (arena_bytes < (size_t)SLOTS * SLOT_BYTES || meta_length < (size_t)SLOTS * IN_STRIDE) {
    napi_throw_range_error(env, "ERR_UDP_BATCH", "attach: arena or meta smaller than the slots");
    return NULL;
  }
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return throw_errno(env, "attach: dup", errno);
  batch_socket *s = calloc(1, sizeof *s);
  if (s == NULL) {
    close(own);
    return throw_errno(env, "attach", ENOMEM);
  }
  s->fd = own;
  s->env = env;
  s->in_arena = arena;
  s->in_meta = meta;
  napi_create_reference(env, argv[3], 1, &s->on_batch);
  napi_create_reference(env, argv[1], 1, &s->in_arena_ref);
  napi_create_reference(env, argv[2], 1, &s->in_meta_ref);
  napi_value resource_name;
  napi_create_string_utf8(env, "clawbox.udpBatch", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, NULL, resource_name, &s->async_context);
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  int err = uv_poll_init(loop, &s->poll, own);
  if (err == 0) {
    s->poll.data = s;
    s->owners = 1;
    err = uv_poll_start(&s->poll, UV_READABLE, on_readable);
    if (err != 0) {
      s->closing = 1;
      uv_close((uv_handle_t *)&s->poll, on_closed);
      napi_throw_error(env, "ERR_UDP_BATCH", uv_strerror(err));
      return NULL;
    }
  } else {
    drop_js(s);
    close(own);
    free(s);
    napi_throw_error(env, "ERR_UDP_BATCH", uv_strerror(err));
    return NULL;
  }
  napi_value handle;
  if (napi_create_external(env, s, on_collected, NULL, &handle) == napi_ok) s->owners += 1;
  return handle;
}

static batch_socket *live_socket(napi_env env, napi_value v) {
  batch_socket *s = NULL;
  napi_valuetype type;
  if (napi_typeof(env, v, &type) != napi_ok || type != napi_external || napi_get_value_external(env, v, (void **)&s) != napi_ok ||
      s == NULL || s->closing) {
    napi_throw_error(env, "ERR_UDP_BATCH", "not an open batch socket");
    return NULL;
  }
  return s;
}

static napi_value Send(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 4) {
    napi_throw_type_error(env, "ERR_UDP_BATCH", "send(handle, ArrayBuffer, Int32Array, count) expected");
    return NULL;
  }
  batch_socket *s = live_socket(env, argv[0]);
  if (s == NULL) return NULL;
  unsigned char *arena;
  size_t arena_bytes, meta_length;
  int32_t *meta;
  int32_t count;
  if (!arg_arraybuffer(env, argv[1], &arena, &arena_bytes) || !arg_int32_array(env, argv[2], &meta, &meta_length) ||
      !arg_int32(env, argv[3], &count) || count < 0 || (size_t)count * OUT_STRIDE > meta_length) {
    napi_throw_type_error(env, "ERR_UDP_BATCH", "send(handle, ArrayBuffer, Int32Array, count) expected, count within the meta");
    return NULL;
  }
  struct mmsghdr msgs[SLOTS];
  struct iovec iov[SLOTS];
  struct sockaddr_storage addrs[SLOTS];
  int32_t sent = 0;
  int32_t first_error = 0;
  while (sent < count) {
    int k = 0;
    /* Datagrams described out of bounds, or with no address family, are skipped, never sent. */
    for (; k < SLOTS && sent + k < count; k++) {
      const int32_t *m = meta + (size_t)(sent + k) * OUT_STRIDE;
      memset(&msgs[k].msg_hdr, 0, sizeof(struct msghdr));
      memset(&addrs[k], 0, sizeof addrs[k]);
      int in_bounds = m[0] >= 0 && m[1] >= 0 && (size_t)m[0] + (size_t)m[1] <= arena_bytes;
      socklen_t name_length = 0;
      if (m[2] == 4) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&addrs[k];
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)m[3]);
        v4->sin_addr.s_addr = htonl((uint32_t)m[4]);
        name_length = sizeof *v4;
      } else if (m[2] == 6) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&addrs[k];
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)m[3]);
        memcpy(&v6->sin6_addr, &m[4], 16);
        v6->sin6_scope_id = (uint32_t)m[8];
        name_length = sizeof *v6;
      }
      /* An unsendable entry goes out as an empty datagram to no address: sendmmsg fails it alone and we step past. */
      iov[k].iov_base = in_bounds ? arena + m[0] : arena;
      iov[k].iov_len = in_bounds && name_length != 0 ? (size_t)m[1] : 0;
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
      msgs[k].msg_hdr.msg_name = name_length != 0 && in_bounds ? &addrs[k] : NULL;
      msgs[k].msg_hdr.msg_namelen = name_length != 0 && in_bounds ? name_length : 0;
    }
    int n = sendmmsg(s->fd, msgs, k, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      /* This datagram failed (EAGAIN: the socket buffer is full; EDESTADDRREQ: an unsendable entry): it is lost,
       * as any datagram may be, and the rest still go. */
      if (first_error == 0) first_error = errno;
      sent += 1;
      continue;
    }
    sent += n;
  }
  napi_value result;
  napi_create_int32(env, first_error == 0 ? 0 : -first_error, &result);
  return result;
}

/* reading(handle, on): stop or resume reading (another process reads the shared socket meanwhile); sends go on. */
static napi_value Reading(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool on;
  if (argc != 2 || napi_get_value_bool(env, argv[1], &on) != napi_ok) {
    napi_throw_type_error(env, "ERR_UDP_BATCH", "reading(handle, boolean) expected");
    return NULL;
  }
  batch_socket *s = live_socket(env, argv[0]);
  if (s == NULL) return NULL;
  s->paused = !on;
  int err = on ? uv_poll_start(&s->poll, UV_READABLE, on_readable) : uv_poll_stop(&s->poll);
  if (err != 0) napi_throw_error(env, "ERR_UDP_BATCH", uv_strerror(err));
  return NULL;
}

static napi_value Close(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype callback_type = napi_undefined;
  if (argc == 2) napi_typeof(env, argv[1], &callback_type);
  if (argc != 2 || callback_type != napi_function) {
    napi_throw_type_error(env, "ERR_UDP_BATCH", "close(handle, function) expected");
    return NULL;
  }
  batch_socket *s = live_socket(env, argv[0]);
  if (s == NULL) return NULL;
  napi_create_reference(env, argv[1], 1, &s->on_closed);
  s->closing = 1;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, on_closed);
  return NULL;
}

static napi_value constant(napi_env env, int32_t value) {
  napi_value v;
  napi_create_int32(env, value, &v);
  return v;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    {"attach", NULL, Attach, NULL, NULL, NULL, napi_enumerable, NULL},
    {"send", NULL, Send, NULL, NULL, NULL, napi_enumerable, NULL},
    {"reading", NULL, Reading, NULL, NULL, NULL, napi_enumerable, NULL},
    {"close", NULL, Close, NULL, NULL, NULL, napi_enumerable, NULL},
    {"SLOTS", NULL, NULL, NULL, NULL, constant(env, SLOTS), napi_enumerable, NULL},
    {"SLOT_BYTES", NULL, NULL, NULL, NULL, constant(env, SLOT_BYTES), napi_enumerable, NULL},
    {"DATA_BYTES", NULL, NULL, NULL, NULL, constant(env, DATA_BYTES), napi_enumerable, NULL},
    {"IN_STRIDE", NULL, NULL, NULL, NULL, constant(env, IN_STRIDE), napi_enumerable, NULL},
    {"OUT_STRIDE", NULL, NULL, NULL, NULL, constant(env, OUT_STRIDE), napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
