/* Helpers shared by loadgen.c and upstreams.c (both single-file C programs built by bench/build.ts). */
#ifndef CLAWBOX_BENCH_NET_COMMON_H
#define CLAWBOX_BENCH_NET_COMMON_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* "a.b.c.d:port" into a sockaddr; exits with a message on anything else. */
static void parse_addr(const char *text, struct sockaddr_in *sa) {
  char host[64];
  const char *colon = strrchr(text, ':');
  if (!colon || (size_t)(colon - text) >= sizeof host) {
    fprintf(stderr, "bad address %s\n", text);
    exit(2);
  }
  memcpy(host, text, (size_t)(colon - text));
  host[colon - text] = 0;
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
    fprintf(stderr, "bad address %s\n", text);
    exit(2);
  }
}

/* As many descriptors as the hard limit allows: the idle scenario holds thousands of sockets. */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

#endif
