/*
** valkey: a key-value storage for plughost backed by a Valkey (or Redis) server.
** This comment is the plugin's reference (docs/plugins/valkey.md is the user's guide).
**
** Storage plugins.valkey.storages.ValkeyStorage
**   prefix          string, default "plughost:"  put before every key
**   host            string, default 127.0.0.1
**   port            int, default 6379
**   username        string, default none          ACL user (AUTH username password)
**   password        string, default none          AUTH password
**   db              int, default 0                SELECT db after connecting
**   connectTimeout  duration, default 2s          TCP connect
**   commandTimeout  duration, default 2s          per command, and per read of the TLS
**                                                 handshake; a timeout drops the connection
**   poolSize        int, default 4                most connections open at once
**   tls             bool, default false           speak TLS to the server
**   tlsCaCert       string, default none          PEM file of the CA(s) that signed the
**                                                 server's certificate; none: the system's
**                                                 trust store (OpenSSL's default paths)
**   tlsCert         string, default none          PEM client certificate (chain), for servers
**                                                 that require one (tls-auth-clients yes)
**   tlsKey          string, default none          PEM private key of tlsCert; tlsCert and
**                                                 tlsKey go together, both or neither
**   tlsServerName   string, default host          name sent as SNI (not for IP literals) and
**                                                 required in the server's certificate (DNS
**                                                 or IP subjectAltName)
**   tlsSkipVerify   bool, default false           FOR TESTING ONLY: accept any certificate
**                                                 from anyone (logs a warning at create)
** A tls* key with a value while tls is not true is a configuration error (a CA file that
** is silently ignored would leave the link in clear text); so is tlsCaCert together with
** tlsSkipVerify, and tlsCert without tlsKey or the reverse. Files are read at create: a
** path that cannot be read, or holds no usable PEM, is an error naming the key and the path.
**
** TLS: hiredis's own ssl.c (redisCreateSSLContextWithOptions, redisInitiateSSLWithContext)
** compiled into the static hiredis, against the system's OpenSSL (libssl.so.3 and
** libcrypto.so.3 are linked dynamically; the CMake option PLUGHOST_VALKEY_TLS=OFF builds
** without them, and then `tls: true` is a configuration error). OpenSSL is initialised once
** per process (redisInitOpenSSL through pthread_once). One SSL context per storage instance,
** made at create and freed at close; every pooled connection does its own handshake (TLS 1.2
** at least), verifying the chain against tlsCaCert and the name against tlsServerName. A
** handshake that fails is an error naming host:port and OpenSSL's reason, with a hint
** (certificate not accepted: check tlsCaCert/tlsServerName; no TLS answer: is the server
** using TLS on this port?). A plain connection (tls false) that the server drops or answers
** with garbage on its very first command is reported with "set tls: true" as the likely fix.
**
** Pool: hiredis connections guarded by a mutex and a condition variable. A caller takes an
** idle connection, opens a new one while fewer than poolSize exist, or waits for one to come
** back. create() opens one connection at once: a server that answers but refuses the
** password, user, db or TLS settings is a configuration error (the gateway does not start);
** a server that cannot be reached is only a warning, since it may come up after the gateway
** (calls then connect on first use).
** Before an idle connection is used it is probed without blocking (poll, POLLRDHUP): one
** that the server has closed meanwhile (Valkey restarted, idle `timeout`, CLIENT KILL, a
** proxy) is thrown away and replaced before any byte of the command is sent, so the first
** call after a restart goes to the new server like any other. A connection that fails (I/O
** error, timeout, protocol error) is closed together with every idle one (they most likely
** point at the same dead server). Errors are never silent: every failure is reported with
** ph_error() naming host:port, and the hook returns PH_ERROR.
**
** Retry once after reconnect. A command fails with "connection closed" (EOF, ECONNRESET,
** EPIPE, or TLS's unexpected EOF) on a connection that came idle out of the pool and
** carried nothing else of this call (the probe above could not see it die, e.g. it died in
** between): the connection is dropped, a new one is made, and the command is sent once more.
**   - get, set, del, and reset's first SCAN are retried when no byte of a reply had arrived.
**     Running them twice is harmless (set writes the same value twice; a del that the dead
**     server had already applied answers "not found" the second time).
**   - incr is retried only when the request was not completely written (the write itself
**     failed): a command the server has not fully received cannot have run. Once the whole
**     request was written, an EOF without a reply cannot tell "the old server never read it"
**     from "it ran the script, then died before answering": a retry could count twice, so
**     incr reports the error instead ("not retried: the server may have applied it").
**     Hence incr never double-counts. After an ordinary restart it still succeeds at once,
**     because the probe finds the dead connection before anything is sent.
**   - Never retried: timeouts (the server may be slow, not gone, and may still apply the
**     command), error replies, protocol errors, TLS errors, failures on a connection opened
**     by this very call, and a second failure (one retry at most).
** The limiter's skip options take a count back with incr -1: the same rule applies.
**
** Keys: prefix + key, binary-safe. Commands: get GET, set SET [PX ttl], del DEL, incr a Lua
** script (EVALSHA, EVAL when the server does not know it yet, e.g. after a restart) that
** runs INCRBY and, only when the key did not exist, PEXPIRE, then returns the value and
** PTTL - one atomic round trip, shared correctly by several gateway processes. reset walks
** SCAN MATCH <prefix>* and UNLINKs each batch: it never blocks the server, but keys written
** during the walk may survive it. SIGPIPE is blocked in the calling thread around every
** command, so a write to a dead server cannot kill the host.
*/
#define _GNU_SOURCE /* POLLRDHUP */

#include "plugin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

#include "hiredis.h"

#ifdef VK_HAVE_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "hiredis_ssl.h"
#endif

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
  int64_t command_ms;
  size_t pool_size;

  int tls;
  char *tls_ca;   /* NULL: the system's trust store; kept for messages */
  char *tls_name; /* the name the certificate must carry (NULL with tlsSkipVerify) */
#ifdef VK_HAVE_TLS
  redisSSLContext *ssl; /* NULL unless tls */
#endif

  pthread_mutex_t lock;
  pthread_cond_t cond;
  redisContext **idle; /* pool_size slots */
  size_t n_idle;
  size_t n_open; /* idle + checked out + being connected */
} vk_store;

/* A connection checked out for one call. */
typedef struct vk_conn {
  redisContext *c;
  int pooled; /* it came idle out of the pool (else this call opened it) */
  int first;  /* no command of this call has been sent on it yet */
} vk_conn;

/* How a command that got no reply failed. */
typedef enum vk_fail_kind {
  VK_FAIL_CLOSED,  /* EOF, reset, broken pipe: the server side is gone */
  VK_FAIL_TIMEOUT, /* commandTimeout passed without a (complete) reply */
  VK_FAIL_TLS,     /* an OpenSSL error (alert from the server, bad record, ...) */
  VK_FAIL_OTHER    /* protocol error, out of memory, ... */
} vk_fail_kind;

typedef struct vk_failure {
  vk_fail_kind kind;
  int answered; /* some bytes of a reply had arrived */
  int unsent;   /* the request was not completely written */
  int reset;    /* the server reset the connection (what a TLS server does to plain text;
                   a server that stops or restarts closes it instead) */
  char reason[200];
} vk_failure;

/* When a command that failed with VK_FAIL_CLOSED on a pooled connection is sent again. */
typedef enum vk_retry {
  VK_RETRY_IF_UNANSWERED, /* idempotent commands: no reply byte had arrived */
  VK_RETRY_IF_UNSENT      /* incr: the request had not been completely written */
} vk_retry;

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

/* hiredis writes with send(..., 0) (OpenSSL with write()): a write to a dead server raises
** SIGPIPE, which would kill a host that does not ignore it. Block it around each command in
** this thread and swallow one that our own write raised. */
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
      while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {}
    }
  }
  pthread_sigmask(SIG_SETMASK, &s->old, NULL);
}

static void vk_io_error(vk_store *st, const void *call, const char *what) {
  ph_error(call, "valkey %s:%d: %s: is the server running?", st->host, st->port,
           what != NULL && what[0] != '\0' ? what : "connection failed");
}

/* ---------------------------------------------------------------------------- TLS --- */

#ifdef VK_HAVE_TLS
static pthread_once_t vk_openssl_once = PTHREAD_ONCE_INIT;

static void vk_openssl_init(void) {
  (void)redisInitOpenSSL();
}

/* The newest OpenSSL error of this thread as text ("certificate verify failed", with the
** detail OpenSSL attached, if any) into buf; 0 when the queue is empty. */
static int vk_openssl_reason(char *buf, size_t size) {
  const char *data = NULL;
  int flags = 0;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  unsigned long code = ERR_peek_last_error_data(&data, &flags);
#else
  unsigned long code = ERR_peek_last_error_line_data(NULL, NULL, &data, &flags);
#endif
  if (code == 0) return 0;
  const char *reason = ERR_reason_error_string(code);
  if (reason == NULL) reason = "unknown OpenSSL error";
  if (data != NULL && (flags & ERR_TXT_STRING) && data[0] != '\0')
    snprintf(buf, size, "%s (%s)", reason, data);
  else
    snprintf(buf, size, "%s", reason);
  return 1;
}

/* Whether the newest OpenSSL error is an EOF without close_notify (a server that died). */
static int vk_openssl_unexpected_eof(void) {
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
  unsigned long code = ERR_peek_last_error();
  return code != 0 && ERR_GET_LIB(code) == ERR_LIB_SSL &&
         ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
#else
  return 0;
#endif
}
#endif

/* What to try when OpenSSL reports `reason` (the server's alerts and our verification). */
static const char *vk_tls_hint(const char *reason) {
  if (strstr(reason, "certificate verify failed") != NULL)
    return "the server's certificate was not accepted: check tlsCaCert and tlsServerName";
  if (strstr(reason, "certificate required") != NULL)
    return "the server requires a client certificate: set tlsCert and tlsKey";
  if (strstr(reason, "alert") != NULL &&
      (strstr(reason, "unknown ca") != NULL || strstr(reason, "bad certificate") != NULL ||
       strstr(reason, "certificate unknown") != NULL))
    return "the server did not accept the client certificate (tlsCert): is it signed by a CA "
           "the server trusts?";
  if (strstr(reason, "alert") != NULL) return "the server refused the TLS session";
  return "is the server using TLS on this port?";
}

#ifdef VK_HAVE_TLS
static int vk_is_ip_literal(const char *name) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}
#endif

/* ----------------------------------------------------------- commands and failures --- */

/* Sends one command and reads its reply. NULL when no reply came, with *f saying how it
** failed (nothing reported yet; c->err is then set, so the connection will be dropped). */
static redisReply *vk_send(vk_store *st, redisContext *c, int argc, const char **argv,
                           const size_t *argvlen, vk_failure *f) {
  vk_sigpipe sp;
  vk_sigpipe_block(&sp);
#ifdef VK_HAVE_TLS
  if (st->tls) ERR_clear_error(); /* only this command's errors in the queue */
#else
  (void)st;
#endif
  errno = 0;
  redisReply *r = redisCommandArgv(c, argc, argv, argvlen);
  int err_no = errno;
  vk_sigpipe_restore(&sp);
  if (r != NULL) return r;

  /* Reply bytes arrived: some are waiting in the buffer, or the parser has begun a reply
  ** (hiredis leaves ridx at 0 with an untyped task[0] when it found nothing to parse). */
  const redisReader *rd = c->reader;
  f->answered = rd != NULL && (rd->pos < rd->len || rd->ridx > 0 ||
                               (rd->ridx == 0 && rd->task != NULL && rd->task[0]->type >= 0));
  f->unsent = c->obuf != NULL && sdslen(c->obuf) > 0;
  f->reset = 0;
  f->kind = VK_FAIL_OTHER;
  snprintf(f->reason, sizeof f->reason, "%s", c->errstr[0] != '\0' ? c->errstr : "unknown error");
  int tls_error = 0;
#ifdef VK_HAVE_TLS
  /* hiredis turns OpenSSL failures into REDIS_ERR_IO with a stale errno: ask OpenSSL. */
  if (st->tls && ERR_peek_last_error() != 0) {
    tls_error = 1;
    if (vk_openssl_unexpected_eof()) {
      f->kind = VK_FAIL_CLOSED;
      snprintf(f->reason, sizeof f->reason, "the server closed the connection");
    } else {
      f->kind = VK_FAIL_TLS;
      vk_openssl_reason(f->reason, sizeof f->reason);
    }
    ERR_clear_error();
  }
#endif
  if (tls_error) {
    /* classified above */
  } else if (c->err == REDIS_ERR_EOF) {
    f->kind = VK_FAIL_CLOSED;
    snprintf(f->reason, sizeof f->reason, "the server closed the connection");
  } else if (c->err == REDIS_ERR_TIMEOUT ||
             (c->err == REDIS_ERR_IO &&
              (err_no == EAGAIN || err_no == EWOULDBLOCK || err_no == ETIMEDOUT))) {
    f->kind = VK_FAIL_TIMEOUT;
  } else if (c->err == REDIS_ERR_IO && (err_no == ECONNRESET || err_no == EPIPE ||
                                        err_no == ECONNABORTED || err_no == ENOTCONN)) {
    f->kind = VK_FAIL_CLOSED;
    f->reset = err_no == ECONNRESET;
    snprintf(f->reason, sizeof f->reason, "%s", strerror(err_no));
  }
  if (c->err == 0) c->err = REDIS_ERR_OTHER; /* never reuse a context in an unknown state */
  return NULL;
}

/* Reports a failure of command `what` (the name users know: GET, INCR, ...). fresh: it was
** the first command on a connection this call opened (for the "set tls: true" hint);
** not_retried: a closed pooled connection whose command could not be sent again. */
static void vk_report(vk_store *st, const void *call, const char *what, const vk_failure *f,
                      int fresh, int not_retried) {
  const char *h = st->host;
  int p = st->port;
  /* The "set tls: true" hint only when the server's answer looks like a TLS server's: a
  ** reset of a new connection on its first command, or TLS record bytes (0x15 alert, 0x16
  ** handshake) where a reply was expected; never for a server that is restarting. */
  int plain_hint = fresh && !st->tls &&
                   (f->reset || strstr(f->reason, "\"\\x15\"") || strstr(f->reason, "\"\\x16\""));
  int tls_hint = fresh && st->tls;
  switch (f->kind) {
    case VK_FAIL_TIMEOUT:
      ph_error(call,
               "valkey %s:%d: no reply to %s within commandTimeout (%" PRId64
               " ms); the "
               "connection was dropped and %s was not retried, as the server may still apply "
               "it: is the server overloaded, paused or unreachable?",
               h, p, what, st->command_ms, what);
      break;
    case VK_FAIL_CLOSED:
      if (plain_hint)
        ph_error(call,
                 "valkey %s:%d: %s before answering %s on a new connection: is the server "
                 "expecting TLS on this port (then set tls: true)?",
                 h, p, f->reason, what);
      else if (tls_hint)
        ph_error(call,
                 "valkey %s:%d: %s before answering %s on a new TLS connection: did the server "
                 "refuse the client certificate (tlsCert, tlsKey) or the TLS session?",
                 h, p, f->reason, what);
      else if (not_retried)
        ph_error(call,
                 "valkey %s:%d: %s before answering %s, which was not retried because the "
                 "server may have applied it: is the server running (restarting)?",
                 h, p, f->reason, what);
      else
        ph_error(call, "valkey %s:%d: %s during %s: is the server running?", h, p, f->reason, what);
      break;
    case VK_FAIL_TLS:
      ph_error(call, "valkey %s:%d: TLS error during %s: %s: %s", h, p, what, f->reason,
               vk_tls_hint(f->reason));
      break;
    default:
      if (plain_hint)
        ph_error(call,
                 "valkey %s:%d: %s failed on a new connection: %s: is the server expecting "
                 "TLS on this port (then set tls: true)?",
                 h, p, what, f->reason);
      else
        ph_error(call, "valkey %s:%d: %s failed: %s", h, p, what, f->reason);
      break;
  }
}

/* ------------------------------------------------------------------- connections --- */

/* One command on a fresh connection during setup; 1 when it succeeded. */
static int vk_setup_cmd(vk_store *st, const void *call, redisContext *c, int argc,
                        const char **argv, int first) {
  vk_failure f;
  redisReply *r = vk_send(st, c, argc, argv, NULL, &f);
  if (r == NULL) {
    vk_report(st, call, argv[0], &f, first, 0);
    return 0;
  }
  int ok = r->type != REDIS_REPLY_ERROR;
  int select = strcmp(argv[0], "SELECT") == 0;
  if (!ok)
    ph_error(call, "valkey %s:%d: %s%s%s failed: %s: check %s", st->host, st->port, argv[0],
             select ? " " : "", select ? argv[1] : "", r->str, /* never the password */
             select ? "the storage's db" : "the storage's password (and username)");
  freeReplyObject(r);
  return ok;
}

#ifdef VK_HAVE_TLS
/* The TLS handshake on a connected context; 1 when done, else 0 after reporting why. */
static int vk_handshake(vk_store *st, const void *call, redisContext *c) {
  ERR_clear_error();
  errno = 0;
  if (redisInitiateSSLWithContext(c, st->ssl) == REDIS_OK) return 1;
  int err_no = errno;
  char reason[240];
  if (!vk_openssl_reason(reason, sizeof reason)) {
    if (err_no == EAGAIN || err_no == EWOULDBLOCK || err_no == ETIMEDOUT ||
        strstr(c->errstr, strerror(EAGAIN)) != NULL)
      snprintf(reason, sizeof reason, "no answer within commandTimeout (%" PRId64 " ms)",
               st->command_ms);
    else if (err_no == 0 || strstr(c->errstr, "Success") != NULL)
      snprintf(reason, sizeof reason, "the server closed the connection");
    else
      snprintf(reason, sizeof reason, "%s", c->errstr[0] != '\0' ? c->errstr : strerror(err_no));
  }
  ERR_clear_error();
  const char *hint = vk_tls_hint(reason);
  if (strstr(reason, "certificate verify failed") != NULL)
    ph_error(call, "valkey %s:%d: TLS handshake failed: %s: %s (tlsCaCert: %s; name: %s)", st->host,
             st->port, reason, hint, st->tls_ca != NULL ? st->tls_ca : "system trust store",
             st->tls_name != NULL ? st->tls_name : "-");
  else
    ph_error(call, "valkey %s:%d: TLS handshake failed: %s: %s", st->host, st->port, reason, hint);
  return 0;
}
#endif

/* A new connection, authenticated and on its db, or NULL after reporting why with ph_error
** on `call` (a ph_call, or the ph_config during create). With `probe`, a server that cannot
** be reached is only logged as a warning (no error is set) and *reached stays 0. */
static redisContext *vk_connect_ex(vk_store *st, const void *call, int probe, int *reached) {
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
    if (probe)
      ph_log(call, PH_LOG_WARNING,
             "valkey %s:%d: %s: not reachable now; the storage connects on first use", st->host,
             st->port, c->errstr[0] != '\0' ? c->errstr : "connection failed");
    else
      vk_io_error(st, call, c->errstr);
    redisFree(c);
    return NULL;
  }
  if (reached) *reached = 1;
#ifdef VK_HAVE_TLS
  if (st->tls) {
    vk_sigpipe sp;
    vk_sigpipe_block(&sp);
    int ok = vk_handshake(st, call, c);
    vk_sigpipe_restore(&sp);
    if (!ok) {
      redisFree(c);
      return NULL;
    }
  }
#endif
  int first = 1;
  if (st->password != NULL) {
    /* AUTH [username] password */
    const char *argv[3] = {"AUTH", st->username, st->password};
    int argc = 3;
    if (st->username == NULL) {
      argv[1] = st->password;
      argc = 2;
    }
    if (!vk_setup_cmd(st, call, c, argc, argv, first)) {
      redisFree(c);
      return NULL;
    }
    first = 0;
  }
  if (st->db != 0) {
    char db[24];
    snprintf(db, sizeof db, "%" PRId64, st->db);
    const char *argv[2] = {"SELECT", db};
    if (!vk_setup_cmd(st, call, c, 2, argv, first)) {
      redisFree(c);
      return NULL;
    }
  }
  if (probe && st->password == NULL && st->db == 0) {
    /* No AUTH was sent: a server that requires one says so only to a command. */
    const char *argv[1] = {"PING"};
    if (!vk_setup_cmd(st, call, c, 1, argv, first)) {
      redisFree(c);
      return NULL;
    }
  }
  return c;
}

static redisContext *vk_connect(vk_store *st, ph_call *call) {
  return vk_connect_ex(st, call, 0, NULL);
}

/* Whether the server has closed an idle connection (or sent something unasked, which on a
** plain connection means it is out of step). poll() with a zero timeout: never blocks. */
static int vk_peer_gone(const vk_store *st, const redisContext *c) {
  struct pollfd p;
  p.fd = c->fd;
  p.events = POLLIN | POLLRDHUP;
  p.revents = 0;
  int n;
  do {
    n = poll(&p, 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return 1; /* cannot tell: do not trust it */
  if (n == 0) return 0;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return 1;
  /* TLS 1.3 servers send session tickets after the handshake: data is fine there. */
  return !st->tls && (p.revents & POLLIN);
}

/* Closes a connection that was checked out (it no longer counts against poolSize). */
static void vk_discard(vk_store *st, redisContext *c) {
  pthread_mutex_lock(&st->lock);
  st->n_open--;
  pthread_cond_signal(&st->cond);
  pthread_mutex_unlock(&st->lock);
  redisFree(c);
}

/* A connection for one call into *k, or 0 after reporting why. Waits while poolSize are
** busy. Idle connections that the server closed meanwhile are replaced first. */
static int vk_acquire(vk_store *st, ph_call *call, vk_conn *k) {
  for (;;) {
    redisContext *c = NULL;
    pthread_mutex_lock(&st->lock);
    while (st->n_idle == 0 && st->n_open >= st->pool_size) pthread_cond_wait(&st->cond, &st->lock);
    if (st->n_idle > 0) {
      c = st->idle[--st->n_idle];
    } else {
      st->n_open++; /* reserve the slot; connect without holding the lock */
    }
    pthread_mutex_unlock(&st->lock);
    if (c != NULL) {
      if (vk_peer_gone(st, c)) {
        vk_discard(st, c);
        continue;
      }
      k->c = c;
      k->pooled = 1;
      k->first = 1;
      return 1;
    }
    c = vk_connect(st, call);
    if (c == NULL) {
      pthread_mutex_lock(&st->lock);
      st->n_open--;
      pthread_cond_signal(&st->cond);
      pthread_mutex_unlock(&st->lock);
      return 0;
    }
    k->c = c;
    k->pooled = 0;
    k->first = 1;
    return 1;
  }
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

/* Runs one command on k->c, reconnecting and sending it once more under `rule` (see the
** header comment). Returns the reply - which may be an error reply - or NULL after
** reporting the failure; k->c is then NULL when reconnecting failed. The caller releases
** k->c when it is not NULL. */
static redisReply *vk_exec(vk_store *st, ph_call *call, vk_conn *k, vk_retry rule, const char *what,
                           int argc, const char **argv, const size_t *argvlen) {
  for (int attempt = 0;; attempt++) {
    int pooled_first = k->pooled && k->first;
    int fresh_first = attempt == 0 && !k->pooled && k->first; /* for the TLS hints */
    k->first = 0;
    vk_failure f;
    redisReply *r = vk_send(st, k->c, argc, argv, argvlen, &f);
    if (r != NULL) return r;
    int closed_early = pooled_first && f.kind == VK_FAIL_CLOSED && !f.answered;
    int allowed = rule == VK_RETRY_IF_UNANSWERED || f.unsent;
    if (attempt == 0 && closed_early && allowed) {
      vk_release(st, k->c); /* broken: closes it and every idle connection */
      k->c = NULL;
      if (!vk_acquire(st, call, k)) return NULL;
      continue;
    }
    vk_report(st, call, what, &f, fresh_first, closed_early && !allowed);
    return NULL;
  }
}

/* Reports an error reply and frees it. */
static void vk_reply_error(vk_store *st, ph_call *call, const char *what, redisReply *r) {
  ph_error(call, "valkey %s:%d: %s failed: %s", st->host, st->port, what, r->str);
  freeReplyObject(r);
}

/* One command on a connection of its own: the reply (never an error reply), or NULL after
** reporting the failure. */
static redisReply *vk_simple(vk_store *st, ph_call *call, const char *what, int argc,
                             const char **argv, const size_t *argvlen) {
  vk_conn k;
  if (!vk_acquire(st, call, &k)) return NULL;
  redisReply *r = vk_exec(st, call, &k, VK_RETRY_IF_UNANSWERED, what, argc, argv, argvlen);
  if (k.c != NULL) vk_release(st, k.c);
  if (r != NULL && r->type == REDIS_REPLY_ERROR) {
    vk_reply_error(st, call, what, r);
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

static void vk_no_memory(ph_call *call) {
  ph_error(call, "valkey: out of memory");
}

static void vk_unexpected(vk_store *st, ph_call *call, const char *cmd, const redisReply *r) {
  ph_error(call, "valkey %s:%d: unexpected reply of type %d to %s", st->host, st->port, r->type,
           cmd);
}

/* ----------------------------------------------------------------------- the hooks --- */

static void vk_free_store(vk_store *st) {
#ifdef VK_HAVE_TLS
  redisFreeSSLContext(st->ssl); /* NULL-safe */
#endif
  free(st->prefix);
  free(st->host);
  free(st->username);
  free(st->password);
  free(st->tls_ca);
  free(st->tls_name);
  free(st->idle);
  free(st);
}

/* An optional string option: NULL when missing, null or empty. */
static ph_status vk_opt_string(const ph_config *cfg, const char *key, const char **out) {
  if (ph_config_string(cfg, key, NULL, out) != PH_OK) return PH_ERROR;
  if (*out != NULL && (*out)[0] == '\0') *out = NULL;
  return PH_OK;
}

#ifdef VK_HAVE_TLS
/* A file option must name a readable regular file. */
static ph_status vk_check_file(const ph_config *cfg, const char *key, const char *path) {
  struct stat sb;
  if (stat(path, &sb) != 0)
    return ph_config_error(cfg, key, "cannot read '%s': %s", path, strerror(errno));
  if (!S_ISREG(sb.st_mode)) return ph_config_error(cfg, key, "'%s' is not a file", path);
  FILE *f = fopen(path, "r");
  if (f == NULL) return ph_config_error(cfg, key, "cannot read '%s': %s", path, strerror(errno));
  fclose(f);
  return PH_OK;
}

/* The storage's SSL context from the tls* options (already validated); PH_ERROR after a
** configuration error naming the key at fault. */
static ph_status vk_make_ssl(const ph_config *cfg, vk_store *st, const char *ca, const char *cert,
                             const char *key, const char *name, int skip_verify) {
  pthread_once(&vk_openssl_once, vk_openssl_init);
  redisSSLOptions o;
  memset(&o, 0, sizeof o);
  o.cacert_filename = ca;
  o.cert_filename = cert;
  o.private_key_filename = key;
  o.server_name = vk_is_ip_literal(name) ? NULL : name; /* SNI carries host names only */
  o.verify_mode = skip_verify ? REDIS_SSL_VERIFY_NONE : REDIS_SSL_VERIFY_PEER;
  o.verify_name = skip_verify ? NULL : name;
  redisSSLContextError e = REDIS_SSL_CTX_NONE;
  ERR_clear_error();
  st->ssl = redisCreateSSLContextWithOptions(&o, &e);
  if (st->ssl != NULL) return PH_OK;
  char why[240];
  if (!vk_openssl_reason(why, sizeof why))
    snprintf(why, sizeof why, "%s", redisSSLContextGetError(e));
  ERR_clear_error();
  switch (e) {
    case REDIS_SSL_CTX_CA_CERT_LOAD_FAILED:
      return ph_config_error(cfg, "tlsCaCert", "'%s' holds no CA certificate OpenSSL can load: %s",
                             ca, why);
    case REDIS_SSL_CTX_CLIENT_DEFAULT_CERT_FAILED:
      return ph_config_error(cfg, "tlsCaCert",
                             "the system's trust store could not be loaded (%s): set tlsCaCert "
                             "to the CA file of the server's certificate",
                             why);
    case REDIS_SSL_CTX_CLIENT_CERT_LOAD_FAILED:
      return ph_config_error(cfg, "tlsCert", "'%s' holds no certificate OpenSSL can load: %s", cert,
                             why);
    case REDIS_SSL_CTX_PRIVATE_KEY_LOAD_FAILED:
      return ph_config_error(cfg, "tlsKey",
                             "'%s' is not a private key OpenSSL can load, or not the one of "
                             "tlsCert: %s",
                             key, why);
    case REDIS_SSL_CTX_VERIFY_NAME_FAILED:
      return ph_config_error(cfg, "tlsServerName",
                             "'%s' cannot be checked against the server's certificate: %s", name,
                             why);
    default:
      return ph_config_error(cfg, "tls", "could not create the TLS context: %s", why);
  }
}
#endif

/* Reads and checks the tls* options; on success with tls on, makes st->ssl. */
static ph_status vk_config_tls(const ph_config *cfg, vk_store *st) {
  static const char *const file_keys[] = {"tlsCaCert", "tlsCert", "tlsKey", "tlsServerName"};
  const char *ca, *cert, *key, *name;
  int tls, skip;
  if (ph_config_bool(cfg, "tls", 0, &tls) != PH_OK) return PH_ERROR;
  if (vk_opt_string(cfg, "tlsCaCert", &ca) != PH_OK) return PH_ERROR;
  if (vk_opt_string(cfg, "tlsCert", &cert) != PH_OK) return PH_ERROR;
  if (vk_opt_string(cfg, "tlsKey", &key) != PH_OK) return PH_ERROR;
  if (vk_opt_string(cfg, "tlsServerName", &name) != PH_OK) return PH_ERROR;
  if (ph_config_bool(cfg, "tlsSkipVerify", 0, &skip) != PH_OK) return PH_ERROR;
  if (!tls) {
    const char *given[] = {ca, cert, key, name};
    for (size_t i = 0; i < sizeof given / sizeof given[0]; i++)
      if (given[i] != NULL)
        return ph_config_error(cfg, file_keys[i],
                               "only applies with tls: true: set tls: true, or remove %s",
                               file_keys[i]);
    if (skip)
      return ph_config_error(cfg, "tlsSkipVerify",
                             "only applies with tls: true: set tls: true, or remove "
                             "tlsSkipVerify");
    return PH_OK;
  }
#ifndef VK_HAVE_TLS
  (void)st;
  return ph_config_error(cfg, "tls",
                         "this valkey.so was built without TLS (CMake option "
                         "PLUGHOST_VALKEY_TLS=OFF): rebuild it with OpenSSL (Debian: "
                         "libssl-dev, Alpine: openssl-dev)");
#else
  if (cert != NULL && key == NULL)
    return ph_config_error(cfg, "tlsKey",
                           "is required with tlsCert: the client certificate's private key");
  if (key != NULL && cert == NULL)
    return ph_config_error(cfg, "tlsCert", "is required with tlsKey: the client certificate");
  if (skip && ca != NULL)
    return ph_config_error(cfg, "tlsCaCert",
                           "has no effect with tlsSkipVerify: true, which accepts any "
                           "certificate: remove one of the two");
  if (ca != NULL && vk_check_file(cfg, "tlsCaCert", ca) != PH_OK) return PH_ERROR;
  if (cert != NULL && vk_check_file(cfg, "tlsCert", cert) != PH_OK) return PH_ERROR;
  if (key != NULL && vk_check_file(cfg, "tlsKey", key) != PH_OK) return PH_ERROR;
  if (name == NULL) name = st->host;
  st->tls = 1;
  st->tls_ca = vk_strdup(ca);
  st->tls_name = skip ? NULL : vk_strdup(name);
  if ((ca != NULL && st->tls_ca == NULL) || (!skip && st->tls_name == NULL))
    return ph_config_error(cfg, NULL, "out of memory creating the storage");
  if (vk_make_ssl(cfg, st, ca, cert, key, name, skip) != PH_OK) return PH_ERROR;
  if (skip)
    ph_log(cfg, PH_LOG_WARNING,
           "valkey %s:%d: tlsSkipVerify is true: the server's certificate is NOT checked, so "
           "anyone on the network path can pose as the server and read every value; use it "
           "for testing only",
           st->host, st->port);
  return PH_OK;
#endif
}

static void vk_close(void *self);

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
  if (vk_opt_string(cfg, "username", &username) != PH_OK) return PH_ERROR;
  if (vk_opt_string(cfg, "password", &password) != PH_OK) return PH_ERROR;
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
  st->command_ms = command_ms;
  st->pool_size = (size_t)pool;
  st->idle = calloc(st->pool_size, sizeof *st->idle);
  if (st->prefix == NULL || st->host == NULL || st->idle == NULL ||
      (username != NULL && st->username == NULL) || (password != NULL && st->password == NULL)) {
    vk_free_store(st);
    return ph_config_error(cfg, NULL, "out of memory creating the storage");
  }
  if (vk_config_tls(cfg, st) != PH_OK) {
    vk_free_store(st);
    return PH_ERROR;
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
  /* One connection now tells a wrong password, user, db or TLS setting (an error: the
  ** gateway does not start) from a server that is not up yet (a warning: the server may come
  ** up after the gateway; calls connect on first use). The connection joins the pool. */
  int reached = 0;
  redisContext *c = vk_connect_ex(st, cfg, 1, &reached);
  if (c != NULL) {
    st->idle[st->n_idle++] = c;
    st->n_open++;
  } else if (reached) {
    vk_close(st);
    return PH_ERROR;
  }
  *self = st;
  return PH_OK;
}

static void vk_close(void *self) {
  vk_store *st = self;
  if (st == NULL) return;
  for (size_t i = 0; i < st->n_idle; i++) redisFree(st->idle[i]); /* before the SSL context */
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
  const char *argv[2] = {"GET", k};
  size_t argvlen[2] = {3, klen};
  redisReply *r = vk_simple(st, call, "GET", 2, argv, argvlen);
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
  redisReply *r = vk_simple(st, call, "SET", argc, argv, argvlen);
  if (r != NULL) {
    if (r->type == REDIS_REPLY_STATUS)
      rc = PH_OK;
    else
      vk_unexpected(st, call, "SET", r);
    freeReplyObject(r);
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
  const char *argv[2] = {"DEL", k};
  size_t argvlen[2] = {3, klen};
  redisReply *r = vk_simple(st, call, "DEL", 2, argv, argvlen);
  if (r != NULL) {
    if (r->type == REDIS_REPLY_INTEGER)
      rc = r->integer > 0 ? PH_OK : PH_NOT_FOUND;
    else
      vk_unexpected(st, call, "DEL", r);
    freeReplyObject(r);
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
  vk_conn conn;
  if (!vk_acquire(st, call, &conn)) {
    vk_key_free(k, buf);
    return PH_ERROR;
  }
  redisReply *r = vk_exec(st, call, &conn, VK_RETRY_IF_UNSENT, "INCR", 6, argv, argvlen);
  if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
    freeReplyObject(r); /* first use on this server: EVAL also caches the script */
    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = vk_incr_script;
    argvlen[1] = sizeof vk_incr_script - 1;
    r = vk_exec(st, call, &conn, VK_RETRY_IF_UNSENT, "INCR", 6, argv, argvlen);
  }
  if (r == NULL) {
    /* reported by vk_exec */
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
  if (conn.c != NULL) vk_release(st, conn.c);
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
  vk_conn conn;
  if (!vk_acquire(st, call, &conn)) {
    free(pattern);
    return PH_ERROR;
  }
  ph_status rc = PH_OK;
  char cursor[32] = "0";
  do {
    const char *argv[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", VK_SCAN_COUNT};
    size_t argvlen[6] = {4, strlen(cursor), 5, plen, 5, sizeof VK_SCAN_COUNT - 1};
    /* Only the first SCAN (cursor 0) can be retried: vk_exec retries first commands only. */
    redisReply *r = vk_exec(st, call, &conn, VK_RETRY_IF_UNANSWERED, "SCAN", 6, argv, argvlen);
    if (r == NULL) {
      rc = PH_ERROR;
      break;
    }
    if (r->type == REDIS_REPLY_ERROR) {
      vk_reply_error(st, call, "SCAN", r);
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
      redisReply *u =
          vk_exec(st, call, &conn, VK_RETRY_IF_UNANSWERED, "UNLINK", (int)n, uargv, ulen);
      free(uargv);
      free(ulen);
      if (u == NULL) {
        freeReplyObject(r);
        rc = PH_ERROR;
        break;
      }
      if (u->type == REDIS_REPLY_ERROR) {
        vk_reply_error(st, call, "UNLINK", u);
        freeReplyObject(r);
        rc = PH_ERROR;
        break;
      }
      freeReplyObject(u);
    }
    freeReplyObject(r);
  } while (strcmp(cursor, "0") != 0);
  if (conn.c != NULL) vk_release(st, conn.c);
  free(pattern);
  return rc;
}

/* The options of a ValkeyStorage (Seam's prefix, host and port, and plughost's own); the
** host checks every config against them before vk_create runs, which keeps its own checks
** (ranges, and how the tls* options go together). */
static const ph_option valkey_options[] = {
    PH_OPTION(PH_OPTION_STRING, "prefix", "plughost:", "put in front of every key"),
    PH_OPTION(PH_OPTION_STRING, "host", VK_DEFAULT_HOST, "the server's host name or IP address"),
    PH_OPTION(PH_OPTION_INT, "port", "6379",
              "the server's TCP port (for TLS: the server's tls-port)",
              .flags = PH_OPTION_MIN | PH_OPTION_MAX, .min = 1, .max = 65535),
    PH_OPTION(PH_OPTION_STRING, "username", NULL,
              "ACL user name; needs password (AUTH username password)"),
    PH_OPTION(PH_OPTION_STRING, "password", NULL,
              "password (AUTH password, or with username); better from ${VALKEY_PASSWORD}"),
    PH_OPTION(PH_OPTION_INT, "db", "0", "database number, selected on every new connection",
              .flags = PH_OPTION_MIN | PH_OPTION_MAX, .min = 0, .max = INT32_MAX),
    PH_OPTION(PH_OPTION_DURATION, "connectTimeout", "2s",
              "longest wait for a TCP connection to open", .flags = PH_OPTION_MIN, .min = 0.001),
    PH_OPTION(PH_OPTION_DURATION, "commandTimeout", "2s",
              "longest wait for each reply (and each step of the TLS handshake); not retried",
              .flags = PH_OPTION_MIN, .min = 0.001),
    PH_OPTION(PH_OPTION_INT, "poolSize", "4", "most connections this storage keeps open at once",
              .flags = PH_OPTION_MIN | PH_OPTION_MAX, .min = 1, .max = VK_MAX_POOL),
    PH_OPTION(PH_OPTION_BOOL, "tls", "false", "talk to the server over TLS"),
    PH_OPTION(PH_OPTION_STRING, "tlsCaCert", NULL,
              "PEM file of the CA(s) that signed the server's certificate; none: the "
              "system's trust store (tls only)"),
    PH_OPTION(PH_OPTION_STRING, "tlsCert", NULL,
              "PEM client certificate (chain), with tlsKey, for mutual TLS (tls only)"),
    PH_OPTION(PH_OPTION_STRING, "tlsKey", NULL,
              "PEM private key of tlsCert: both or neither (tls only)"),
    PH_OPTION(PH_OPTION_STRING, "tlsServerName", NULL,
              "the name the server's certificate must carry, sent as SNI; none: host "
              "(tls only)"),
    PH_OPTION(PH_OPTION_BOOL, "tlsSkipVerify", "false",
              "FOR TESTS ONLY: accept any certificate from whoever answers (tls only)"),
    PH_OPTIONS_END};

static const ph_option no_options[] = {PH_OPTIONS_END};

static const ph_storage_type valkey_storage = {
    .size = sizeof(ph_storage_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_MAY_BLOCK,
    .id = "plugins.valkey.storages.ValkeyStorage",
    .description =
        "Valkey/Redis server storage with TTLs and atomic counters shared by "
        "every gateway instance",
    .create = vk_create,
    .close = vk_close,
    .get = vk_get,
    .set = vk_set,
    .del = vk_del,
    .incr = vk_incr,
    .reset = vk_reset,
    .options = valkey_options,
};

static const ph_storage_type *const valkey_storages[] = {&valkey_storage, NULL};

PH_PLUGIN_DEFINE(.name = "valkey", .version = "1.0.0",
                 .description =
                     "Key-value storage on a Valkey (or Redis) server, through a "
                     "pool of hiredis connections",
                 .storages = valkey_storages, .options = no_options);
