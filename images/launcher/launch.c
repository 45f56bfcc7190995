/*
 * clawbox launcher: the sandbox's main process (under docker-init, which stays PID 1 and reaps zombies).
 *
 * It waits for one message on stdin, then execs the tool in its own place, so the tool has the same PID, parent
 * and environment whether its sandbox was created just now (cold) or minutes ago (warm pool): a pooled sandbox is
 * indistinguishable from a cold one to the tool. stdin is then /dev/null, as for any sandbox.
 *
 * Message (all integers little-endian u32):
 *
 *   +-------+--------+------------------------+--------+------------------------+
 *   | magic | argc   | argc x (len, bytes)    | envc   | envc x (len, "K=V")    |
 *   +-------+--------+------------------------+--------+------------------------+
 *   magic = 0x31425843 ("CXB1"); at most 1 MiB in all, 4096 strings, each string without NUL.
 *
 * Any malformed message: exit 125 with a reason on stderr. exec failure: exit 127 (not found) or 126.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAGIC 0x31425843u
#define MAX_TOTAL (1u << 20)
#define MAX_STRINGS 4096u

static size_t total_read;

static void fail(const char *why) {
  fprintf(stderr, "clawbox launcher: %s\n", why);
  _exit(125);
}

static void read_exact(void *buf, size_t n) {
  char *p = buf;
  if (n > MAX_TOTAL - total_read) fail("message larger than 1 MiB");
  while (n > 0) {
    ssize_t got = read(0, p, n);
    if (got == 0) fail("message cut short");
    if (got < 0) {
      if (errno == EINTR) continue;
      fail("cannot read the message");
    }
    p += got;
    n -= (size_t)got;
    total_read += (size_t)got;
  }
}

static uint32_t read_u32(void) {
  unsigned char b[4];
  read_exact(b, 4);
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static char **read_strings(uint32_t count) {
  if (count > MAX_STRINGS) fail("too many strings");
  char **out = calloc((size_t)count + 1, sizeof *out);
  if (!out) fail("out of memory");
  for (uint32_t i = 0; i < count; i++) {
    uint32_t len = read_u32();
    if (len > MAX_TOTAL) fail("string longer than the message");
    out[i] = malloc((size_t)len + 1);
    if (!out[i]) fail("out of memory");
    read_exact(out[i], len);
    if (memchr(out[i], '\0', len)) fail("string contains NUL");
    out[i][len] = '\0';
  }
  return out;
}

int main(void) {
  if (read_u32() != MAGIC) fail("bad magic: not a clawbox launch message");
  uint32_t argc = read_u32();
  if (argc == 0) fail("no command");
  char **argv = read_strings(argc);
  uint32_t envc = read_u32();
  char **env = read_strings(envc);
  for (uint32_t i = 0; i < envc; i++) {
    if (!strchr(env[i], '=')) fail("environment entry without '='");
    if (putenv(env[i]) != 0) fail("cannot set the environment");
  }

  int devnull = open("/dev/null", O_RDONLY);
  if (devnull < 0 || dup2(devnull, 0) < 0) fail("cannot reopen stdin");
  if (devnull > 0) close(devnull);

  execvp(argv[0], argv);
  int err = errno;
  fprintf(stderr, "clawbox: cannot run %s: %s\n", argv[0], strerror(err));
  _exit(err == ENOENT ? 127 : 126);
}
