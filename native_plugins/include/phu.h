/* phu.h: small helpers shared by this repository's plugins (header-only, static inline).
** Not part of the ABI: out-of-tree plugins need only plugin.h. Include after plugin.h and
** after defining _POSIX_C_SOURCE. */
#ifndef PLUGHOST_PHU_H
#define PLUGHOST_PHU_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

/* strdup for C11 (NULL when out of memory). */
static inline char *phu_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p != NULL) memcpy(p, s, n);
  return p;
}

/* RFC 9110 token characters (header field names, cookie names). */
static inline int phu_is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A non-empty token: a valid header or cookie name. */
static inline int phu_valid_token(const char *s) {
  if (*s == '\0') return 0;
  for (; *s != '\0'; s++)
    if (!phu_is_tchar((unsigned char)*s)) return 0;
  return 1;
}

/* A cookie attribute value: printable ASCII without ';' (RFC 6265 av-octet). */
static inline int phu_valid_cookie_attr(const char *s) {
  for (; *s != '\0'; s++)
    if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e || *s == ';') return 0;
  return 1;
}

/* A cookie domain: letters, digits, '.' and '-'. */
static inline int phu_valid_domain(const char *s) {
  for (; *s != '\0'; s++) {
    char c = *s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '.' || c == '-'))
      return 0;
  }
  return 1;
}

/* Random bytes from the kernel's CSPRNG, pooled per thread: no shared state, no lock, no
** system call for most requests; used bytes are wiped. Returns 0 or an errno value. */
static _Thread_local uint8_t phu_pool[4096];
static _Thread_local size_t phu_pool_left;

static inline int phu_random(uint8_t *out, size_t n) {
  if (n > sizeof phu_pool) return EINVAL;
  if (phu_pool_left < n) {
    size_t got = 0;
    while (got < sizeof phu_pool) {
      /* GRND_NONBLOCK: never wait for entropy (only possible very early after boot). */
      ssize_t r = getrandom(phu_pool + got, sizeof phu_pool - got, GRND_NONBLOCK);
      if (r < 0) {
        if (errno == EINTR) continue;
        return errno;
      }
      got += (size_t)r;
    }
    phu_pool_left = sizeof phu_pool;
  }
  uint8_t *from = phu_pool + (sizeof phu_pool - phu_pool_left);
  memcpy(out, from, n);
  memset(from, 0, n);
  phu_pool_left -= n;
  return 0;
}

#endif
