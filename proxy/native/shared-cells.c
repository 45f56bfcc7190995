/*
 * Memory shared by the gateway cluster's processes (proxy/worker-loads.ts): each worker publishes how many
 * connections it serves, and every worker reads the others' when it decides whether to hand a new one over.
 * Node 20 has no memory shared between processes (a SharedArrayBuffer is shared between threads), and an IPC
 * message per connection would cost more than the balance gains.
 *
 *   create(bytes) -> fd                  an anonymous memory file (memfd_create) of that size, for the primary
 *                                        to give its workers as an inherited descriptor; -errno on failure
 *   map(fd, bytes) -> ArrayBuffer        that memory, MAP_SHARED, as an ArrayBuffer JavaScript reads and writes
 *                                        with Atomics; a string naming the failing call on failure. The mapping
 *                                        lives as long as the process (it is never unmapped: the buffer may be
 *                                        referenced until exit), so map once.
 *
 * This file interprets nothing: the layout of the cells is worker-loads.ts's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <node_api.h>

/* 64 KiB: the loads of the most workers `clawbox proxy --workers` allows (999) fit. */
#define MAX_BYTES 65536

static int bytes_arg(napi_env env, napi_value value, int64_t *out) {
  if (napi_get_value_int64(env, value, out) != napi_ok || *out <= 0 || *out > MAX_BYTES) {
    napi_throw_range_error(env, NULL, "bytes must be a whole number from 1 to 65536");
    return 0;
  }
  return 1;
}

static napi_value Create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value result;
  int64_t bytes;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || !bytes_arg(env, argv[0], &bytes)) return NULL;
  int fd = memfd_create("clawbox-worker-loads", MFD_CLOEXEC);
  if (fd >= 0 && ftruncate(fd, (off_t)bytes) != 0) {
    int err = errno;
    close(fd);
    fd = -1;
    errno = err;
  }
  napi_create_int32(env, fd >= 0 ? fd : -errno, &result);
  return result;
}

static void never_unmapped(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  (void)hint;
}

static napi_value Map(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_value result;
  int32_t fd;
  int64_t bytes;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "map(fd, bytes): fd must be a descriptor number");
    return NULL;
  }
  if (!bytes_arg(env, argv[1], &bytes)) return NULL;
  void *memory = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (memory == MAP_FAILED) {
    char message[128];
    snprintf(message, sizeof message, "mmap of descriptor %d: %s", fd, strerror(errno));
    napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &result);
    return result;
  }
  if (napi_create_external_arraybuffer(env, memory, (size_t)bytes, never_unmapped, NULL, &result) != napi_ok) {
    munmap(memory, (size_t)bytes);
    napi_create_string_utf8(env, "napi_create_external_arraybuffer failed", NAPI_AUTO_LENGTH, &result);
  }
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    {"create", NULL, Create, NULL, NULL, NULL, napi_enumerable, NULL},
    {"map", NULL, Map, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
