/*
** memory: an in-process key-value storage for plughost.
**
** Storage plugins.memory.storages.MemoryStorage
**   maxEntries     int, default 100000   most keys held at once
**   maxValueBytes  int, default 1048576  largest value accepted by set
**
** A hash table (separate chaining, SipHash-2-4 with a per-instance random key so that
** client-chosen keys cannot force collisions) guarded by one mutex per instance. Expiry
** uses CLOCK_MONOTONIC: an expired key is dropped when it is next touched, and every
** expired key is purged when the table is full. A full table never evicts live data: the
** set/incr of a new key fails with an error that says what to do.
**
** Data lives in the process: several gateway processes each see their own store. Use the
** valkey storage to share counters between instances.
*/
#define _POSIX_C_SOURCE 200809L

#include "plugin.h"
#include "phu.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define MEM_DEFAULT_MAX_ENTRIES 100000
#define MEM_DEFAULT_MAX_VALUE_BYTES (1024 * 1024)
#define MEM_INITIAL_BUCKETS 64u
#define MEM_MAX_BUCKETS ((size_t)1 << 30)
#define MEM_NEVER INT64_MAX /* expires_at of a key without TTL */
#define MEM_COPY_BUF 512    /* get: values up to this size are copied on the stack */

typedef struct mem_entry {
  struct mem_entry *next;
  uint64_t hash;
  int64_t expires_at; /* monotonic ms; MEM_NEVER: no expiry */
  uint8_t *value;     /* malloc'ed, value_len bytes (at least 1 byte allocated) */
  size_t value_len;
  size_t key_len;
  uint8_t key[]; /* key_len bytes */
} mem_entry;

typedef struct mem_store {
  pthread_mutex_t lock;
  mem_entry **buckets; /* nbuckets chains */
  size_t nbuckets;     /* a power of two */
  size_t max_buckets;
  size_t count;
  size_t max_entries;
  size_t max_value_bytes;
  int64_t min_expiry; /* no entry expires before this (a lower bound) */
  uint64_t k0, k1;    /* SipHash key */
  ph_metric *hits, *misses; /* gets (plughost_plugin_memory_lookups_total{result=...}) */
} mem_store;

/* ------------------------------------------------------------------- SipHash-2-4 --- */

#define MEM_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define MEM_SIPROUND       \
  do {                     \
    v0 += v1;              \
    v1 = MEM_ROTL(v1, 13); \
    v1 ^= v0;              \
    v0 = MEM_ROTL(v0, 32); \
    v2 += v3;              \
    v3 = MEM_ROTL(v3, 16); \
    v3 ^= v2;              \
    v0 += v3;              \
    v3 = MEM_ROTL(v3, 21); \
    v3 ^= v0;              \
    v2 += v1;              \
    v1 = MEM_ROTL(v1, 17); \
    v1 ^= v2;              \
    v2 = MEM_ROTL(v2, 32); \
  } while (0)

static uint64_t mem_load_le64(const uint8_t *p) {
  return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
         (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

static uint64_t mem_siphash(uint64_t k0, uint64_t k1, const uint8_t *in, size_t len) {
  uint64_t v0 = UINT64_C(0x736f6d6570736575) ^ k0;
  uint64_t v1 = UINT64_C(0x646f72616e646f6d) ^ k1;
  uint64_t v2 = UINT64_C(0x6c7967656e657261) ^ k0;
  uint64_t v3 = UINT64_C(0x7465646279746573) ^ k1;
  const uint8_t *end = in + (len - len % 8);
  for (; in != end; in += 8) {
    uint64_t m = mem_load_le64(in);
    v3 ^= m;
    MEM_SIPROUND;
    MEM_SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  switch (len & 7) {
    case 7:
      b |= (uint64_t)in[6] << 48; /* fall through */
    case 6:
      b |= (uint64_t)in[5] << 40; /* fall through */
    case 5:
      b |= (uint64_t)in[4] << 32; /* fall through */
    case 4:
      b |= (uint64_t)in[3] << 24; /* fall through */
    case 3:
      b |= (uint64_t)in[2] << 16; /* fall through */
    case 2:
      b |= (uint64_t)in[1] << 8;  /* fall through */
    case 1:
      b |= (uint64_t)in[0];
      break;
    default:
      break;
  }
  v3 ^= b;
  MEM_SIPROUND;
  MEM_SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  MEM_SIPROUND;
  MEM_SIPROUND;
  MEM_SIPROUND;
  MEM_SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

/* ------------------------------------------------------------------------ helpers --- */

static int64_t mem_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mem_deadline(int64_t now, int64_t ttl_ms) {
  if (ttl_ms <= 0) return MEM_NEVER;
  if (ttl_ms >= MEM_NEVER - 1 - now) return MEM_NEVER - 1; /* far future, but finite */
  return now + ttl_ms;
}

static int mem_expired(const mem_entry *e, int64_t now) {
  return now >= e->expires_at;
}

/* Parses a decimal int64 the way Valkey's INCR does: optional '-', digits, no leading
** zeros, no spaces. Returns 1 on success. */
static int mem_parse_i64(const uint8_t *s, size_t n, int64_t *out) {
  if (n == 0 || n > 20) return 0;
  if (n == 1 && s[0] == '0') {
    *out = 0;
    return 1;
  }
  size_t i = 0;
  int neg = 0;
  if (s[0] == '-') {
    neg = 1;
    i = 1;
  }
  if (i == n || s[i] < '1' || s[i] > '9') return 0;
  uint64_t limit = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
  uint64_t acc = 0;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    uint64_t d = (uint64_t)(s[i] - '0');
    if (acc > (limit - d) / 10) return 0;
    acc = acc * 10 + d;
  }
  if (neg) {
    *out = acc == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)acc;
  } else {
    *out = (int64_t)acc;
  }
  return 1;
}

/* Writes v in decimal into buf (at least 21 bytes); returns the length (no NUL). */
static size_t mem_format_i64(int64_t v, uint8_t *buf) {
  uint8_t tmp[20];
  size_t n = 0, len = 0;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    tmp[n++] = (uint8_t)('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (v < 0) buf[len++] = '-';
  while (n > 0) buf[len++] = tmp[--n];
  return len;
}

static void mem_entry_free(mem_entry *e) {
  free(e->value);
  free(e);
}

/* Finds key; unlinks and frees it if it expired. Caller holds the lock. */
static mem_entry *mem_find(mem_store *st, const uint8_t *key, size_t key_len, uint64_t h,
                           int64_t now) {
  mem_entry **link = &st->buckets[h & (st->nbuckets - 1)];
  for (mem_entry *e = *link; e != NULL; link = &e->next, e = e->next) {
    if (e->hash == h && e->key_len == key_len && memcmp(e->key, key, key_len) == 0) {
      if (mem_expired(e, now)) {
        *link = e->next;
        st->count--;
        mem_entry_free(e);
        return NULL;
      }
      return e;
    }
  }
  return NULL;
}

/* Removes every expired entry and recomputes min_expiry. Caller holds the lock. */
static void mem_purge_expired(mem_store *st, int64_t now) {
  int64_t min_expiry = MEM_NEVER;
  for (size_t i = 0; i < st->nbuckets; i++) {
    mem_entry **link = &st->buckets[i];
    while (*link != NULL) {
      mem_entry *e = *link;
      if (mem_expired(e, now)) {
        *link = e->next;
        st->count--;
        mem_entry_free(e);
      } else {
        if (e->expires_at < min_expiry) min_expiry = e->expires_at;
        link = &e->next;
      }
    }
  }
  st->min_expiry = min_expiry;
}

/* Doubles the bucket array when the load factor passes 1. Failure to grow is harmless
** (chains just get longer). Caller holds the lock. */
static void mem_maybe_grow(mem_store *st) {
  if (st->count <= st->nbuckets || st->nbuckets >= st->max_buckets) return;
  size_t n = st->nbuckets * 2;
  mem_entry **nb = calloc(n, sizeof *nb);
  if (nb == NULL) return;
  for (size_t i = 0; i < st->nbuckets; i++) {
    mem_entry *e = st->buckets[i];
    while (e != NULL) {
      mem_entry *next = e->next;
      size_t j = e->hash & (n - 1);
      e->next = nb[j];
      nb[j] = e;
      e = next;
    }
  }
  free(st->buckets);
  st->buckets = nb;
  st->nbuckets = n;
}

/* Makes room for one new key: PH_OK, or PH_ERROR (reported on call) when the table is
** full of live keys. Caller holds the lock. */
static ph_status mem_reserve(mem_store *st, ph_call *call, int64_t now) {
  if (st->count < st->max_entries) return PH_OK;
  if (now >= st->min_expiry) mem_purge_expired(st, now);
  if (st->count < st->max_entries) return PH_OK;
  ph_error(call, "memory storage is full (maxEntries=%zu): raise maxEntries or give keys a TTL",
           st->max_entries);
  return PH_ERROR;
}

/* Links a new entry (value already set up). Caller holds the lock and reserved room. */
static void mem_link(mem_store *st, mem_entry *e) {
  size_t i = e->hash & (st->nbuckets - 1);
  e->next = st->buckets[i];
  st->buckets[i] = e;
  st->count++;
  if (e->expires_at < st->min_expiry) st->min_expiry = e->expires_at;
  mem_maybe_grow(st);
}

static mem_entry *mem_entry_new(const uint8_t *key, size_t key_len, uint64_t h,
                                const uint8_t *value, size_t value_len, int64_t expires_at) {
  if (key_len > SIZE_MAX - sizeof(mem_entry)) return NULL;
  mem_entry *e = malloc(sizeof *e + key_len);
  if (e == NULL) return NULL;
  e->value = malloc(value_len > 0 ? value_len : 1);
  if (e->value == NULL) {
    free(e);
    return NULL;
  }
  if (value_len > 0) memcpy(e->value, value, value_len);
  if (key_len > 0) memcpy(e->key, key, key_len);
  e->next = NULL;
  e->hash = h;
  e->key_len = key_len;
  e->value_len = value_len;
  e->expires_at = expires_at;
  return e;
}

/* Replaces e's value with a copy of value. Returns 0 when out of memory (e unchanged). */
static int mem_entry_replace(mem_entry *e, const uint8_t *value, size_t value_len) {
  uint8_t *v = malloc(value_len > 0 ? value_len : 1);
  if (v == NULL) return 0;
  if (value_len > 0) memcpy(v, value, value_len);
  free(e->value);
  e->value = v;
  e->value_len = value_len;
  return 1;
}

static void mem_free_all(mem_store *st) {
  for (size_t i = 0; i < st->nbuckets; i++) {
    mem_entry *e = st->buckets[i];
    while (e != NULL) {
      mem_entry *next = e->next;
      mem_entry_free(e);
      e = next;
    }
    st->buckets[i] = NULL;
  }
  st->count = 0;
  st->min_expiry = MEM_NEVER;
}

static void mem_seed(mem_store *st) {
  uint64_t k[2];
  size_t got = 0;
  while (got < sizeof k) {
    ssize_t n = getrandom((uint8_t *)k + got, sizeof k - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    got += (size_t)n;
  }
  if (got < sizeof k) {
    /* No kernel CSPRNG (pre-3.17 kernel or seccomp): a weaker, still per-instance seed. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    k[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)st;
    k[1] = (uint64_t)mem_now_ms() * UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)(uintptr_t)&k;
  }
  st->k0 = k[0];
  st->k1 = k[1];
}

/* ----------------------------------------------------------------------- the hooks --- */

static ph_status mem_create(const ph_config *cfg, void **self) {
  int64_t max_entries, max_value_bytes;
  if (ph_config_int(cfg, "maxEntries", MEM_DEFAULT_MAX_ENTRIES, &max_entries) != PH_OK)
    return PH_ERROR;
  if (max_entries < 1 || (uint64_t)max_entries > SIZE_MAX / 2)
    return ph_config_error(cfg, "maxEntries", "must be a positive number of entries, got %" PRId64,
                           max_entries);
  if (ph_config_int(cfg, "maxValueBytes", MEM_DEFAULT_MAX_VALUE_BYTES, &max_value_bytes) != PH_OK)
    return PH_ERROR;
  if (max_value_bytes < 1 || (uint64_t)max_value_bytes > SIZE_MAX / 2)
    return ph_config_error(cfg, "maxValueBytes", "must be a positive number of bytes, got %" PRId64,
                           max_value_bytes);

  mem_store *st = calloc(1, sizeof *st);
  if (st == NULL) return ph_config_error(cfg, NULL, "out of memory creating the storage");
  st->max_entries = (size_t)max_entries;
  st->max_value_bytes = (size_t)max_value_bytes;
  st->max_buckets = MEM_INITIAL_BUCKETS;
  while (st->max_buckets < st->max_entries && st->max_buckets < MEM_MAX_BUCKETS)
    st->max_buckets *= 2;
  st->nbuckets = MEM_INITIAL_BUCKETS;
  st->min_expiry = MEM_NEVER;
  st->buckets = calloc(st->nbuckets, sizeof *st->buckets);
  if (st->buckets == NULL) {
    free(st);
    return ph_config_error(cfg, NULL, "out of memory creating the storage");
  }
  if (pthread_mutex_init(&st->lock, NULL) != 0) {
    free(st->buckets);
    free(st);
    return ph_config_error(cfg, NULL, "could not create the storage's mutex");
  }
  mem_seed(st);
  *self = st; /* from here, a failure is cleaned up by the host's close hook */
  static const char help[] = "Gets that found their key (hit) or not (miss)";
  if ((st->hits = phu_counter(cfg, "lookups", help, "result", "hit")) == NULL ||
      (st->misses = phu_counter(cfg, "lookups", help, "result", "miss")) == NULL)
    return PH_ERROR;
  return PH_OK;
}

static void mem_close(void *self) {
  mem_store *st = self;
  if (st == NULL) return;
  mem_free_all(st);
  free(st->buckets);
  pthread_mutex_destroy(&st->lock);
  free(st);
}

static ph_status mem_get(void *self, ph_call *call, const uint8_t *key, size_t key_len) {
  mem_store *st = self;
  uint64_t h = mem_siphash(st->k0, st->k1, key, key_len);
  uint8_t stackbuf[MEM_COPY_BUF];
  uint8_t *copy = NULL;
  size_t len = 0;

  /* Copy the value out under the lock and hand it to the host after unlocking, so that
  ** no host code ever runs while this storage's lock is held. */
  pthread_mutex_lock(&st->lock);
  mem_entry *e = mem_find(st, key, key_len, h, mem_now_ms());
  if (e != NULL) {
    len = e->value_len;
    copy = len <= sizeof stackbuf ? stackbuf : malloc(len);
    if (copy != NULL && len > 0) memcpy(copy, e->value, len);
  }
  pthread_mutex_unlock(&st->lock);

  ph_metric_add(e != NULL ? st->hits : st->misses, 1);
  if (e == NULL) return PH_NOT_FOUND;
  if (copy == NULL) {
    ph_error(call, "out of memory reading a value of %zu bytes", len);
    return PH_ERROR;
  }
  ph_status rc = ph_call_value(call, copy, len);
  if (copy != stackbuf) free(copy);
  return rc == PH_OK ? PH_OK : PH_ERROR;
}

static ph_status mem_set(void *self, ph_call *call, const uint8_t *key, size_t key_len,
                         const uint8_t *value, size_t value_len, int64_t ttl_ms) {
  mem_store *st = self;
  if (ttl_ms < 0) {
    ph_error(call, "ttl must not be negative (got %" PRId64 " ms)", ttl_ms);
    return PH_ERROR;
  }
  if (value_len > st->max_value_bytes) {
    ph_error(call, "value of %zu bytes is larger than maxValueBytes=%zu", value_len,
             st->max_value_bytes);
    return PH_ERROR;
  }
  uint64_t h = mem_siphash(st->k0, st->k1, key, key_len);
  ph_status rc = PH_OK;

  pthread_mutex_lock(&st->lock);
  int64_t now = mem_now_ms();
  int64_t expires_at = mem_deadline(now, ttl_ms);
  mem_entry *e = mem_find(st, key, key_len, h, now);
  if (e != NULL) {
    if (mem_entry_replace(e, value, value_len)) {
      e->expires_at = expires_at;
      if (expires_at < st->min_expiry) st->min_expiry = expires_at;
    } else {
      ph_error(call, "out of memory storing a value of %zu bytes", value_len);
      rc = PH_ERROR;
    }
  } else if ((rc = mem_reserve(st, call, now)) == PH_OK) {
    e = mem_entry_new(key, key_len, h, value, value_len, expires_at);
    if (e != NULL) {
      mem_link(st, e);
    } else {
      ph_error(call, "out of memory storing a value of %zu bytes", value_len);
      rc = PH_ERROR;
    }
  }
  pthread_mutex_unlock(&st->lock);
  return rc;
}

static ph_status mem_del(void *self, ph_call *call, const uint8_t *key, size_t key_len) {
  mem_store *st = self;
  (void)call;
  uint64_t h = mem_siphash(st->k0, st->k1, key, key_len);
  ph_status rc = PH_NOT_FOUND;

  pthread_mutex_lock(&st->lock);
  int64_t now = mem_now_ms();
  mem_entry **link = &st->buckets[h & (st->nbuckets - 1)];
  for (mem_entry *e = *link; e != NULL; link = &e->next, e = e->next) {
    if (e->hash == h && e->key_len == key_len && memcmp(e->key, key, key_len) == 0) {
      rc = mem_expired(e, now) ? PH_NOT_FOUND : PH_OK;
      *link = e->next;
      st->count--;
      mem_entry_free(e);
      break;
    }
  }
  pthread_mutex_unlock(&st->lock);
  return rc;
}

static ph_status mem_incr(void *self, ph_call *call, const uint8_t *key, size_t key_len,
                          int64_t delta, int64_t ttl_ms, int64_t *value, int64_t *ttl_left_ms) {
  mem_store *st = self;
  if (ttl_ms < 0) {
    ph_error(call, "ttl must not be negative (got %" PRId64 " ms)", ttl_ms);
    return PH_ERROR;
  }
  uint64_t h = mem_siphash(st->k0, st->k1, key, key_len);
  uint8_t digits[21];
  ph_status rc = PH_OK;
  int64_t result = 0, left = -1;

  pthread_mutex_lock(&st->lock);
  int64_t now = mem_now_ms();
  mem_entry *e = mem_find(st, key, key_len, h, now);
  if (e != NULL) {
    int64_t cur;
    if (!mem_parse_i64(e->value, e->value_len, &cur)) {
      ph_error(call, "value under key is not an integer");
      rc = PH_ERROR;
    } else if ((delta > 0 && cur > INT64_MAX - delta) || (delta < 0 && cur < INT64_MIN - delta)) {
      ph_error(call,
               "increment would overflow a 64-bit integer (value %" PRId64 ", delta %" PRId64 ")",
               cur, delta);
      rc = PH_ERROR;
    } else {
      result = cur + delta;
      if (!mem_entry_replace(e, digits, mem_format_i64(result, digits))) {
        ph_error(call, "out of memory incrementing a value");
        rc = PH_ERROR;
      } else if (e->expires_at != MEM_NEVER) {
        left = e->expires_at - now; /* > 0: e is not expired */
      }
    }
  } else if ((rc = mem_reserve(st, call, now)) == PH_OK) {
    int64_t expires_at = mem_deadline(now, ttl_ms);
    result = delta;
    e = mem_entry_new(key, key_len, h, digits, mem_format_i64(result, digits), expires_at);
    if (e == NULL) {
      ph_error(call, "out of memory incrementing a value");
      rc = PH_ERROR;
    } else {
      mem_link(st, e);
      if (expires_at != MEM_NEVER) left = expires_at - now;
    }
  }
  pthread_mutex_unlock(&st->lock);

  if (rc == PH_OK) {
    if (value != NULL) *value = result;
    if (ttl_left_ms != NULL) *ttl_left_ms = left;
  }
  return rc;
}

static ph_status mem_reset(void *self, ph_call *call) {
  mem_store *st = self;
  (void)call;
  pthread_mutex_lock(&st->lock);
  mem_free_all(st);
  /* Give the memory of a grown bucket array back, keeping the table usable if that
  ** allocation fails. */
  if (st->nbuckets > MEM_INITIAL_BUCKETS) {
    mem_entry **nb = calloc(MEM_INITIAL_BUCKETS, sizeof *nb);
    if (nb != NULL) {
      free(st->buckets);
      st->buckets = nb;
      st->nbuckets = MEM_INITIAL_BUCKETS;
    }
  }
  pthread_mutex_unlock(&st->lock);
  return PH_OK;
}

/* The options of a MemoryStorage; the host checks every config against them before
** mem_create runs (which keeps its own range checks). */
static const ph_option memory_options[] = {
    PH_OPTION(PH_OPTION_INT, "maxEntries", "100000",
              "most keys held at once; when full, new keys are refused, live ones never evicted",
              .flags = PH_OPTION_MIN, .min = 1),
    PH_OPTION(PH_OPTION_INT, "maxValueBytes", "1048576", "largest value a set accepts, in bytes",
              .flags = PH_OPTION_MIN, .min = 1),
    PH_OPTIONS_END};

static const ph_option no_options[] = {PH_OPTIONS_END};

static const ph_storage_type memory_storage = {
    .size = sizeof(ph_storage_type),
    .flags = PH_TYPE_THREAD_SAFE,
    .id = "plugins.memory.storages.MemoryStorage",
    .description = "In-process key-value store with TTLs and atomic counters (one per process)",
    .create = mem_create,
    .close = mem_close,
    .get = mem_get,
    .set = mem_set,
    .del = mem_del,
    .incr = mem_incr,
    .reset = mem_reset,
    .options = memory_options,
};

static const ph_storage_type *const memory_storages[] = {&memory_storage, NULL};

PH_PLUGIN_DEFINE(.name = "memory", .version = "1.0.0",
                 .description =
                     "In-process key-value storage with TTLs, bounded size and "
                     "atomic increments",
                 .storages = memory_storages, .options = no_options);
