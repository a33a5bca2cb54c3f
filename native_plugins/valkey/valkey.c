/*
** valkey: a key-value storage for plughost backed by a Valkey (or Redis) server.
**
** Storage plugins.valkey.storages.ValkeyStorage
**   prefix          string, default "plughost:"  put before every key
**   host            string, default 127.0.0.1
**   port            int, default 6379
**   username        string, default none          ACL user (AUTH username password)
**   password        string, default none          AUTH password
**   db              int, default 0                SELECT db after connecting
**   connectTimeout  duration, default 2s
**   commandTimeout  duration, default 2s          per command; a timeout drops the connection
**   poolSize        int, default 4                most connections open at once
**
** A small pool of hiredis connections guarded by a mutex and a condition variable: a caller
** takes an idle connection, opens a new one while fewer than poolSize exist, or waits for
** one to come back. A connection that fails (I/O error, timeout, protocol error) is closed
** together with every idle one (they most likely point at the same dead server); the next
** call connects again, so the storage recovers by itself once the server is back. Errors
** are never silent: every failure is reported with ph_error() and PH_ERROR.
**
** Commands: get GET, set SET [PX ttl], del DEL, incr a Lua script (EVALSHA, EVAL when the
** server does not know it yet) that runs INCRBY and, only when the key did not exist,
** PEXPIRE, then returns the value and PTTL - one atomic round trip, shared correctly by
** several gateway processes. reset walks SCAN MATCH <prefix>* and UNLINKs each batch: it
** never blocks the server, but keys written during the walk may survive it.
*/
#define _POSIX_C_SOURCE 200809L

#include "plugin.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "hiredis.h"

#define VK_DEFAULT_PREFIX "plughost:"
#define VK_DEFAULT_HOST "127.0.0.1"
#define VK_DEFAULT_PORT 6379
#define VK_DEFAULT_TIMEOUT_MS 2000
#define VK_DEFAULT_POOL 4
#define VK_MAX_POOL 1024
#define VK_KEY_BUF 256 /* prefixed keys up to this size are built on the stack */
#define VK_SCAN_COUNT "500"

/* KEYS[1] key, ARGV[1] delta, ARGV[2] ttl in ms (0: none). GET returns the value as a
** string: a Lua number would lose precision above 2^53. */
static const char vk_incr_script[] =
    "local new = redis.call('EXISTS', KEYS[1]) == 0\n"
    "redis.call('INCRBY', KEYS[1], ARGV[1])\n"
    "if new and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}\n";
/* sha1 of vk_incr_script (checked by tests/test_valkey_storage.py via SCRIPT EXISTS). */
#define VK_INCR_SHA "68f18b93bd527c430d0298986f761853774ff801"

typedef struct vk_store {
  char *prefix;
  size_t prefix_len;
  char *host;
  int port;
  char *username; /* NULL: none */
  char *password; /* NULL: none */
  int64_t db;
  struct timeval connect_timeout;
  struct timeval command_timeout;
  size_t pool_size;

  pthread_mutex_t lock;
  pthread_cond_t cond;
  redisContext **idle; /* pool_size slots */
  size_t n_idle;
  size_t n_open; /* idle + checked out + being connected */
} vk_store;

/* ------------------------------------------------------------------------ helpers --- */

static char *vk_strdup(const char *s) {
  if (s == NULL) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d != NULL) memcpy(d, s, n);
  return d;
}

static struct timeval vk_tv(int64_t ms) {
  struct timeval tv;
  tv.tv_sec = (time_t)(ms / 1000);
  tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
  return tv;
}

/* hiredis writes with send(..., 0): a write to a dead server raises SIGPIPE, which would
** kill a host that does not ignore it. Block it around each command in this thread and
** swallow one that our own write raised. */
typedef struct vk_sigpipe {
  sigset_t old;
  int was_pending;
} vk_sigpipe;

static void vk_sigpipe_block(vk_sigpipe *s) {
  sigset_t set, pending;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  sigemptyset(&pending);
  sigpending(&pending);
  s->was_pending = sigismember(&pending, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, &s->old);
}

static void vk_sigpipe_restore(vk_sigpipe *s) {
  if (!s->was_pending) {
    sigset_t set, pending;
    sigemptyset(&pending);
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE)) {
      sigemptyset(&set);
      sigaddset(&set, SIGPIPE);
      struct timespec zero = {0, 0};
      while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {
      }
    }
  }
  pthread_sigmask(SIG_SETMASK, &s->old, NULL);
}

static void vk_io_error(vk_store *st, ph_call *call, const char *what) {
  ph_error(call, "valkey %s:%d: %s: is the server running?", st->host, st->port,
           what != NULL && what[0] != '\0' ? what : "connection failed");
}

/* ------------------------------------------------------------------- connections --- */

/* One command on a fresh connection during setup; 1 when it succeeded. */
static int vk_setup_cmd(vk_store *st, ph_call *call, redisContext *c, int argc,
                        const char **argv) {
  redisReply *r = redisCommandArgv(c, argc, argv, NULL);
  if (r == NULL) {
    vk_io_error(st, call, c->errstr);
    return 0;
  }
  int ok = r->type != REDIS_REPLY_ERROR;
  if (!ok)
    ph_error(call, "valkey %s:%d: %s%s%s failed: %s", st->host, st->port, argv[0],
             strcmp(argv[0], "SELECT") == 0 ? " " : "",
             strcmp(argv[0], "SELECT") == 0 ? argv[1] : "", r->str); /* never the password */
  freeReplyObject(r);
  return ok;
}

static redisContext *vk_connect(vk_store *st, ph_call *call) {
  redisOptions opt = {0};
  REDIS_OPTIONS_SET_TCP(&opt, st->host, st->port);
  opt.connect_timeout = &st->connect_timeout;
  opt.command_timeout = &st->command_timeout;
  opt.options |= REDIS_OPT_NOAUTOFREEREPLIES;
  redisContext *c = redisConnectWithOptions(&opt);
  if (c == NULL) {
    ph_error(call, "valkey %s:%d: out of memory opening a connection", st->host, st->port);
    return NULL;
  }
  if (c->err) {
    vk_io_error(st, call, c->errstr);
    redisFree(c);
    return NULL;
  }
  if (st->password != NULL) {
    /* AUTH [username] password */
    const char *argv[3] = {"AUTH", st->username, st->password};
    int argc = 3;
    if (st->username == NULL) {
      argv[1] = st->password;
      argc = 2;
    }
    if (!vk_setup_cmd(st, call, c, argc, argv)) {
      redisFree(c);
      return NULL;
    }
  }
  if (st->db != 0) {
    char db[24];
    snprintf(db, sizeof db, "%" PRId64, st->db);
    const char *argv[2] = {"SELECT", db};
    if (!vk_setup_cmd(st, call, c, 2, argv)) {
      redisFree(c);
      return NULL;
    }
  }
  return c;
}

/* A connection for one call, or NULL after reporting why. Waits while poolSize are busy. */
static redisContext *vk_acquire(vk_store *st, ph_call *call) {
  redisContext *c = NULL;
  pthread_mutex_lock(&st->lock);
  while (st->n_idle == 0 && st->n_open >= st->pool_size) pthread_cond_wait(&st->cond, &st->lock);
  if (st->n_idle > 0) {
    c = st->idle[--st->n_idle];
  } else {
    st->n_open++; /* reserve the slot; connect without holding the lock */
  }
  pthread_mutex_unlock(&st->lock);
  if (c != NULL) return c;

  c = vk_connect(st, call);
  if (c == NULL) {
    pthread_mutex_lock(&st->lock);
    st->n_open--;
    pthread_cond_signal(&st->cond);
    pthread_mutex_unlock(&st->lock);
  }
  return c;
}

/* Gives c back. A broken connection is closed, and so is every idle one (they most likely
** talk to the same server that just went away), so that the next call reconnects. */
static void vk_release(vk_store *st, redisContext *c) {
  redisContext *drop[VK_MAX_POOL];
  size_t n_drop = 0;
  pthread_mutex_lock(&st->lock);
  if (c->err == 0) {
    st->idle[st->n_idle++] = c;
  } else {
    drop[n_drop++] = c;
    while (st->n_idle > 0) drop[n_drop++] = st->idle[--st->n_idle];
    st->n_open -= n_drop;
  }
  pthread_cond_broadcast(&st->cond);
  pthread_mutex_unlock(&st->lock);
  for (size_t i = 0; i < n_drop; i++) redisFree(drop[i]);
}

/* Runs one command; returns its reply or NULL after reporting the failure (I/O errors and
** error replies alike). *c is released by the caller. */
static redisReply *vk_command(vk_store *st, ph_call *call, redisContext *c, int argc,
                              const char **argv, const size_t *argvlen) {
  vk_sigpipe sp;
  vk_sigpipe_block(&sp);
  redisReply *r = redisCommandArgv(c, argc, argv, argvlen);
  vk_sigpipe_restore(&sp);
  if (r == NULL) {
    if (c->err == 0) c->err = REDIS_ERR_OTHER; /* never reuse a context in an unknown state */
    vk_io_error(st, call, c->errstr);
    return NULL;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    ph_error(call, "valkey %s:%d: %s failed: %s", st->host, st->port, argv[0], r->str);
    freeReplyObject(r);
    return NULL;
  }
  return r;
}

/* prefix+key in buf (VK_KEY_BUF bytes) or in a malloc'ed block; NULL when out of memory. */
static char *vk_key(vk_store *st, const uint8_t *key, size_t key_len, char *buf, size_t *len) {
  size_t n = st->prefix_len + key_len;
  if (key_len > SIZE_MAX - st->prefix_len) return NULL;
  char *k = n <= VK_KEY_BUF ? buf : malloc(n);
  if (k == NULL) return NULL;
  memcpy(k, st->prefix, st->prefix_len);
  if (key_len > 0) memcpy(k + st->prefix_len, key, key_len);
  *len = n;
  return k;
}

static void vk_key_free(char *k, char *buf) {
  if (k != buf) free(k);
}

static void vk_no_memory(ph_call *call) { ph_error(call, "valkey: out of memory"); }

static void vk_unexpected(vk_store *st, ph_call *call, const char *cmd, const redisReply *r) {
  ph_error(call, "valkey %s:%d: unexpected reply of type %d to %s", st->host, st->port,
           r->type, cmd);
}

/* ----------------------------------------------------------------------- the hooks --- */

static void vk_free_store(vk_store *st) {
  free(st->prefix);
  free(st->host);
  free(st->username);
  free(st->password);
  free(st->idle);
  free(st);
}

static ph_status vk_create(const ph_config *cfg, void **self) {
  const char *prefix, *host, *username, *password;
  int64_t port, db, connect_ms, command_ms, pool;
  if (ph_config_string(cfg, "prefix", VK_DEFAULT_PREFIX, &prefix) != PH_OK) return PH_ERROR;
  if (ph_config_string(cfg, "host", VK_DEFAULT_HOST, &host) != PH_OK) return PH_ERROR;
  if (host[0] == '\0')
    return ph_config_error(cfg, "host", "must name the Valkey server (e.g. 127.0.0.1)");
  if (ph_config_int(cfg, "port", VK_DEFAULT_PORT, &port) != PH_OK) return PH_ERROR;
  if (port < 1 || port > 65535)
    return ph_config_error(cfg, "port", "must be a TCP port (1-65535), got %" PRId64, port);
  if (ph_config_string(cfg, "username", NULL, &username) != PH_OK) return PH_ERROR;
  if (ph_config_string(cfg, "password", NULL, &password) != PH_OK) return PH_ERROR;
  if (username != NULL && username[0] == '\0') username = NULL;
  if (password != NULL && password[0] == '\0') password = NULL;
  if (username != NULL && password == NULL)
    return ph_config_error(cfg, "password", "is required when username is set");
  if (ph_config_int(cfg, "db", 0, &db) != PH_OK) return PH_ERROR;
  if (db < 0 || db > INT32_MAX)
    return ph_config_error(cfg, "db", "must be a database number >= 0, got %" PRId64, db);
  if (ph_config_duration_ms(cfg, "connectTimeout", VK_DEFAULT_TIMEOUT_MS, &connect_ms) != PH_OK)
    return PH_ERROR;
  if (connect_ms <= 0)
    return ph_config_error(cfg, "connectTimeout", "must be a positive duration such as 2s");
  if (ph_config_duration_ms(cfg, "commandTimeout", VK_DEFAULT_TIMEOUT_MS, &command_ms) != PH_OK)
    return PH_ERROR;
  if (command_ms <= 0)
    return ph_config_error(cfg, "commandTimeout", "must be a positive duration such as 2s");
  if (ph_config_int(cfg, "poolSize", VK_DEFAULT_POOL, &pool) != PH_OK) return PH_ERROR;
  if (pool < 1 || pool > VK_MAX_POOL)
    return ph_config_error(cfg, "poolSize", "must be between 1 and %d connections, got %" PRId64,
                           VK_MAX_POOL, pool);

  vk_store *st = calloc(1, sizeof *st);
  if (st == NULL) return ph_config_error(cfg, NULL, "out of memory creating the storage");
  st->prefix = vk_strdup(prefix);
  st->prefix_len = strlen(prefix);
  st->host = vk_strdup(host);
  st->port = (int)port;
  st->username = vk_strdup(username);
  st->password = vk_strdup(password);
  st->db = db;
  st->connect_timeout = vk_tv(connect_ms);
  st->command_timeout = vk_tv(command_ms);
  st->pool_size = (size_t)pool;
  st->idle = calloc(st->pool_size, sizeof *st->idle);
  if (st->prefix == NULL || st->host == NULL || st->idle == NULL ||
      (username != NULL && st->username == NULL) || (password != NULL && st->password == NULL)) {
    vk_free_store(st);
    return ph_config_error(cfg, NULL, "out of memory creating the storage");
  }
  if (pthread_mutex_init(&st->lock, NULL) != 0) {
    vk_free_store(st);
    return ph_config_error(cfg, NULL, "could not create the storage's mutex");
  }
  if (pthread_cond_init(&st->cond, NULL) != 0) {
    pthread_mutex_destroy(&st->lock);
    vk_free_store(st);
    return ph_config_error(cfg, NULL, "could not create the storage's condition variable");
  }
  /* No connection yet: the server may come up after the gateway. Calls connect lazily. */
  *self = st;
  return PH_OK;
}

static void vk_close(void *self) {
  vk_store *st = self;
  if (st == NULL) return;
  for (size_t i = 0; i < st->n_idle; i++) redisFree(st->idle[i]);
  pthread_cond_destroy(&st->cond);
  pthread_mutex_destroy(&st->lock);
  vk_free_store(st);
}

static ph_status vk_get(void *self, ph_call *call, const uint8_t *key, size_t key_len) {
  vk_store *st = self;
  char buf[VK_KEY_BUF];
  size_t klen;
  char *k = vk_key(st, key, key_len, buf, &klen);
  if (k == NULL) {
    vk_no_memory(call);
    return PH_ERROR;
  }
  ph_status rc = PH_ERROR;
  redisContext *c = vk_acquire(st, call);
  if (c != NULL) {
    const char *argv[2] = {"GET", k};
    size_t argvlen[2] = {3, klen};
    redisReply *r = vk_command(st, call, c, 2, argv, argvlen);
    vk_release(st, c);
    if (r != NULL) {
      if (r->type == REDIS_REPLY_NIL) {
        rc = PH_NOT_FOUND;
      } else if (r->type == REDIS_REPLY_STRING) {
        rc = ph_call_value(call, r->str, r->len) == PH_OK ? PH_OK : PH_ERROR;
      } else {
        vk_unexpected(st, call, "GET", r);
      }
      freeReplyObject(r);
    }
  }
  vk_key_free(k, buf);
  return rc;
}

static ph_status vk_set(void *self, ph_call *call, const uint8_t *key, size_t key_len,
                        const uint8_t *value, size_t value_len, int64_t ttl_ms) {
  vk_store *st = self;
  if (ttl_ms < 0) {
    ph_error(call, "ttl must not be negative (got %" PRId64 " ms)", ttl_ms);
    return PH_ERROR;
  }
  char buf[VK_KEY_BUF];
  size_t klen;
  char *k = vk_key(st, key, key_len, buf, &klen);
  if (k == NULL) {
    vk_no_memory(call);
    return PH_ERROR;
  }
  char ttl[24];
  int tlen = snprintf(ttl, sizeof ttl, "%" PRId64, ttl_ms);
  const char *argv[5] = {"SET", k, (const char *)value, "PX", ttl};
  size_t argvlen[5] = {3, klen, value_len, 2, (size_t)tlen};
  int argc = ttl_ms > 0 ? 5 : 3;
  if (value_len == 0) argv[2] = ""; /* the host may pass NULL for an empty value */

  ph_status rc = PH_ERROR;
  redisContext *c = vk_acquire(st, call);
  if (c != NULL) {
    redisReply *r = vk_command(st, call, c, argc, argv, argvlen);
    vk_release(st, c);
    if (r != NULL) {
      if (r->type == REDIS_REPLY_STATUS)
        rc = PH_OK;
      else
        vk_unexpected(st, call, "SET", r);
      freeReplyObject(r);
    }
  }
  vk_key_free(k, buf);
  return rc;
}

static ph_status vk_del(void *self, ph_call *call, const uint8_t *key, size_t key_len) {
  vk_store *st = self;
  char buf[VK_KEY_BUF];
  size_t klen;
  char *k = vk_key(st, key, key_len, buf, &klen);
  if (k == NULL) {
    vk_no_memory(call);
    return PH_ERROR;
  }
  ph_status rc = PH_ERROR;
  redisContext *c = vk_acquire(st, call);
  if (c != NULL) {
    const char *argv[2] = {"DEL", k};
    size_t argvlen[2] = {3, klen};
    redisReply *r = vk_command(st, call, c, 2, argv, argvlen);
    vk_release(st, c);
    if (r != NULL) {
      if (r->type == REDIS_REPLY_INTEGER)
        rc = r->integer > 0 ? PH_OK : PH_NOT_FOUND;
      else
        vk_unexpected(st, call, "DEL", r);
      freeReplyObject(r);
    }
  }
  vk_key_free(k, buf);
  return rc;
}

static int vk_parse_i64(const char *s, size_t n, int64_t *out) {
  if (n == 0 || n > 20) return 0;
  char tmp[24];
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  char *end;
  errno = 0;
  long long v = strtoll(tmp, &end, 10);
  if (errno != 0 || *end != '\0') return 0;
  *out = (int64_t)v;
  return 1;
}

static ph_status vk_incr(void *self, ph_call *call, const uint8_t *key, size_t key_len,
                         int64_t delta, int64_t ttl_ms, int64_t *value, int64_t *ttl_left_ms) {
  vk_store *st = self;
  if (ttl_ms < 0) {
    ph_error(call, "ttl must not be negative (got %" PRId64 " ms)", ttl_ms);
    return PH_ERROR;
  }
  char buf[VK_KEY_BUF];
  size_t klen;
  char *k = vk_key(st, key, key_len, buf, &klen);
  if (k == NULL) {
    vk_no_memory(call);
    return PH_ERROR;
  }
  char d[24], t[24];
  int dlen = snprintf(d, sizeof d, "%" PRId64, delta);
  int tlen = snprintf(t, sizeof t, "%" PRId64, ttl_ms);
  const char *argv[6] = {"EVALSHA", VK_INCR_SHA, "1", k, d, t};
  size_t argvlen[6] = {7, sizeof VK_INCR_SHA - 1, 1, klen, (size_t)dlen, (size_t)tlen};

  ph_status rc = PH_ERROR;
  redisContext *c = vk_acquire(st, call);
  if (c == NULL) {
    vk_key_free(k, buf);
    return PH_ERROR;
  }
  vk_sigpipe sp;
  vk_sigpipe_block(&sp);
  redisReply *r = redisCommandArgv(c, 6, argv, argvlen);
  if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
    freeReplyObject(r); /* first use on this server: EVAL also caches the script */
    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = vk_incr_script;
    argvlen[1] = sizeof vk_incr_script - 1;
    r = redisCommandArgv(c, 6, argv, argvlen);
  }
  vk_sigpipe_restore(&sp);
  if (r == NULL) {
    if (c->err == 0) c->err = REDIS_ERR_OTHER;
    vk_io_error(st, call, c->errstr);
  } else if (r->type == REDIS_REPLY_ERROR) {
    const char *msg = r->str;
    if (strstr(msg, "not an integer") != NULL)
      ph_error(call, "valkey %s:%d: the value under key is not an integer", st->host, st->port);
    else
      ph_error(call, "valkey %s:%d: INCRBY failed: %s", st->host, st->port, msg);
  } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
             r->element[0]->type != REDIS_REPLY_STRING ||
             r->element[1]->type != REDIS_REPLY_INTEGER) {
    vk_unexpected(st, call, "the increment script", r);
  } else {
    int64_t v;
    if (!vk_parse_i64(r->element[0]->str, r->element[0]->len, &v)) {
      ph_error(call, "valkey %s:%d: the increment script returned a non-integer", st->host,
               st->port);
    } else {
      long long left = r->element[1]->integer;
      if (value != NULL) *value = v;
      if (ttl_left_ms != NULL) *ttl_left_ms = left >= 0 ? (int64_t)left : -1;
      rc = PH_OK;
    }
  }
  vk_release(st, c);
  if (r != NULL) freeReplyObject(r);
  vk_key_free(k, buf);
  return rc;
}

/* SCAN MATCH needs the prefix with the glob characters escaped, then '*'. */
static char *vk_pattern(const vk_store *st, size_t *len) {
  char *p = malloc(st->prefix_len * 2 + 2);
  if (p == NULL) return NULL;
  size_t n = 0;
  for (size_t i = 0; i < st->prefix_len; i++) {
    char ch = st->prefix[i];
    if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\') p[n++] = '\\';
    p[n++] = ch;
  }
  p[n++] = '*';
  p[n] = '\0';
  *len = n;
  return p;
}

static ph_status vk_reset(void *self, ph_call *call) {
  vk_store *st = self;
  size_t plen;
  char *pattern = vk_pattern(st, &plen);
  if (pattern == NULL) {
    vk_no_memory(call);
    return PH_ERROR;
  }
  redisContext *c = vk_acquire(st, call);
  if (c == NULL) {
    free(pattern);
    return PH_ERROR;
  }
  ph_status rc = PH_OK;
  char cursor[32] = "0";
  do {
    const char *argv[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", VK_SCAN_COUNT};
    size_t argvlen[6] = {4, strlen(cursor), 5, plen, 5, sizeof VK_SCAN_COUNT - 1};
    redisReply *r = vk_command(st, call, c, 6, argv, argvlen);
    if (r == NULL) {
      rc = PH_ERROR;
      break;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof cursor ||
        r->element[1]->type != REDIS_REPLY_ARRAY) {
      vk_unexpected(st, call, "SCAN", r);
      freeReplyObject(r);
      rc = PH_ERROR;
      break;
    }
    memcpy(cursor, r->element[0]->str, r->element[0]->len);
    cursor[r->element[0]->len] = '\0';
    redisReply *keys = r->element[1];
    if (keys->elements > 0) {
      size_t n = keys->elements + 1;
      const char **uargv = malloc(n * sizeof *uargv);
      size_t *ulen = malloc(n * sizeof *ulen);
      if (uargv == NULL || ulen == NULL) {
        free(uargv);
        free(ulen);
        freeReplyObject(r);
        vk_no_memory(call);
        rc = PH_ERROR;
        break;
      }
      uargv[0] = "UNLINK";
      ulen[0] = 6;
      for (size_t i = 0; i < keys->elements; i++) {
        uargv[i + 1] = keys->element[i]->str;
        ulen[i + 1] = keys->element[i]->len;
      }
      redisReply *u = vk_command(st, call, c, (int)n, uargv, ulen);
      free(uargv);
      free(ulen);
      if (u == NULL) {
        freeReplyObject(r);
        rc = PH_ERROR;
        break;
      }
      freeReplyObject(u);
    }
    freeReplyObject(r);
  } while (strcmp(cursor, "0") != 0);
  vk_release(st, c);
  free(pattern);
  return rc;
}

static const ph_storage_type valkey_storage = {
    .size = sizeof(ph_storage_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_MAY_BLOCK,
    .id = "plugins.valkey.storages.ValkeyStorage",
    .description = "Valkey/Redis server storage with TTLs and atomic counters shared by "
                   "every gateway instance",
    .create = vk_create,
    .close = vk_close,
    .get = vk_get,
    .set = vk_set,
    .del = vk_del,
    .incr = vk_incr,
    .reset = vk_reset,
};

static const ph_storage_type *const valkey_storages[] = {&valkey_storage, NULL};

PH_PLUGIN_DEFINE(.name = "valkey", .version = "1.0.0",
                 .description = "Key-value storage on a Valkey (or Redis) server, through a "
                                "pool of hiredis connections",
                 .storages = valkey_storages);
