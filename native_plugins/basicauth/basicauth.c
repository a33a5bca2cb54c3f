/*
** basicauth: HTTP Basic authentication (RFC 7617), like Seam's basicauth plugin.
**
** Middleware plugins.basicauth.middlewares.BasicAuthMiddleware
**   realm               string, default "Restricted"   realm of the WWW-Authenticate challenge:
**                                                      printable ASCII without '"' or '\'
**   users               map user -> password, required at least one entry. A password is
**                                                      plain text, or a crypt(3) hash when it
**                                                      starts with '$': yescrypt "$y$",
**                                                      bcrypt "$2b$"/"$2a$"/"$2y$", SHA-512
**                                                      "$6$", SHA-256 "$5$" (whatever this
**                                                      libxcrypt verifies; MD5-crypt $1$
**                                                      and NT hashes $3$ refused)
**   contextUsernameKey  string, default               local that receives the authenticated
**                       "basicAuthUsername"           user name
**   contextPasswordKey  string, default ""            local that receives the password the
**                                                      client sent; empty (the default): none.
**                                                      Seam stores it under
**                                                      "basicAuthPassword"; set that name to
**                                                      get Seam's behaviour
**
** Request phase: reads "Authorization: Basic <base64(user:password)>" (scheme case-
** insensitive, standard base64 with padding, value up to 4096 bytes). The user name must be
** valid UTF-8 without control characters, the password valid UTF-8 without NUL. Every user
** name of the map is compared (SHA-256 digests, CRYPTO_memcmp, no early exit), then the
** password is verified against the user's credential: plain passwords by comparing SHA-256
** digests in constant time, hashes with crypt_rn (reentrant) and a constant-time comparison.
** An unknown user name is verified against a dummy credential of the same kind (the first
** hashed user's hash when there is one), so it costs the same time as a known one. Success:
** the locals get the user name (and password, when asked) and the chain continues. Any
** failure (missing, malformed or oversized header, bad base64, no colon, invalid UTF-8, NUL,
** unknown user, wrong password) answers 401 with
**   WWW-Authenticate: Basic realm="<realm>", charset="UTF-8"
** and the JSON body {"error":"unauthorized","status":401}.
**
** No state changes after create: thread-safe. Verifying a crypt hash costs tens of
** milliseconds of CPU by design: PH_TYPE_MAY_BLOCK keeps it off the event loop.
*/
#define _POSIX_C_SOURCE 200809L

#include "plugin.h"
#include "phu.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BA_DEFAULT_REALM "Restricted"
#define BA_DEFAULT_USERNAME_KEY "basicAuthUsername"
#define BA_MAX_HEADER 4096 /* longest Authorization value considered */
#define BA_DIGEST 32       /* SHA-256 */

typedef struct ba_credential {
  uint8_t name_digest[BA_DIGEST];
  uint8_t secret_digest[BA_DIGEST]; /* plain: SHA-256(password); hash: SHA-256(hash) */
  char *hash;                       /* crypt(3) hash, or NULL for a plain password */
} ba_credential;

typedef struct ba_middleware {
  char *challenge; /* the whole WWW-Authenticate value */
  char *username_key;
  char *password_key; /* NULL: the password is not put into the locals */
  size_t n_users;
  ba_credential *users;
  ba_credential dummy; /* verified for unknown users, result discarded */
} ba_middleware;

static int ba_sha256(const void *data, size_t len, uint8_t out[BA_DIGEST]) {
  unsigned int n = 0;
  return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == BA_DIGEST ? 0 : -1;
}

/* A user name: non-empty valid UTF-8, no control character, no ':'. */
static int ba_valid_username(const uint8_t *s, size_t n) {
  if (n == 0 || !phu_valid_utf8(s, n)) return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] < 0x20 || s[i] == 0x7f || s[i] == ':') return 0;
  return 1;
}

static int ba_b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/* Strict standard base64 (RFC 4648 section 4, padded). out needs 3 * n / 4 bytes. Returns
** the decoded length, or -1. */
static long ba_b64_decode(const char *in, size_t n, uint8_t *out) {
  if (n == 0 || n % 4 != 0) return -1;
  size_t j = 0;
  for (size_t i = 0; i < n; i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; k++) {
      unsigned char c = (unsigned char)in[i + (size_t)k];
      if (c == '=' && i + 4 == n && k >= 2) {
        v[k] = 0;
        pad++;
        continue;
      }
      if (pad) return -1; /* data after '=' */
      v[k] = ba_b64_value(c);
      if (v[k] < 0) return -1;
    }
    uint32_t w =
        ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) | (uint32_t)v[3];
    /* canonical: the bits dropped by the padding are zero */
    if ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0)) return -1;
    out[j++] = (uint8_t)(w >> 16);
    if (pad < 2) out[j++] = (uint8_t)(w >> 8);
    if (pad < 1) out[j++] = (uint8_t)w;
  }
  return (long)j;
}

static void ba_destroy(void *self) {
  ba_middleware *m = self;
  if (m == NULL) return;
  free(m->challenge);
  free(m->username_key);
  free(m->password_key);
  for (size_t i = 0; i < m->n_users; i++) free(m->users[i].hash);
  free(m->users);
  free(m->dummy.hash);
  free(m);
}

/* crypt_rn over a heap buffer (struct crypt_data is 32 KiB: too big for some stacks).
** Returns 1 when `password` matches `hash`. Constant-time comparison of the result. */
static int ba_crypt_verify(const char *password, const char *hash,
                           const uint8_t hash_digest[BA_DIGEST]) {
  struct crypt_data *data = calloc(1, sizeof *data);
  if (data == NULL) return 0;
  int ok = 0;
  const char *out = crypt_rn(password, hash, data, (int)sizeof *data);
  if (out != NULL && out[0] != '*') {
    uint8_t d[BA_DIGEST];
    if (ba_sha256(out, strlen(out), d) == 0) ok = CRYPTO_memcmp(d, hash_digest, BA_DIGEST) == 0;
  }
  OPENSSL_cleanse(data, sizeof *data);
  free(data);
  return ok;
}

/* Checks a configured hash at create: libxcrypt must know the method and verify it. */
static ph_status ba_check_hash(const ph_config *users, const char *user, const char *hash) {
  /* libxcrypt verifies them, but they are broken: MD5-crypt, Sun MD5, NT hash. */
  if (strncmp(hash, "$1$", 3) == 0 || strncmp(hash, "$md5", 4) == 0 || strncmp(hash, "$3$", 3) == 0)
    return ph_config_error(users, user,
                           "is a hash of a broken method (MD5-crypt or NT hash): hash the "
                           "password again with yescrypt ($y$), bcrypt ($2b$) or SHA-512 "
                           "($6$), e.g. `mkpasswd -m yescrypt` or `openssl passwd -6`");
  int salt = crypt_checksalt(hash);
  struct crypt_data *data = calloc(1, sizeof *data);
  if (data == NULL) return ph_config_error(users, user, "out of memory");
  const char *out = salt != CRYPT_SALT_INVALID ? crypt_rn("", hash, data, (int)sizeof *data) : NULL;
  int ok =
      out != NULL && out[0] != '*' && strlen(out) == strlen(hash) && strncmp(out, hash, 3) == 0;
  free(data);
  if (!ok) {
    char prefix[8] = {0};
    size_t i = 0;
    for (; i + 1 < sizeof prefix && hash[i] != '\0'; i++) {
      prefix[i] = hash[i];
      if (i > 0 && hash[i] == '$') break;
    }
    return ph_config_error(users, user,
                           "starts with '%s' but is not a crypt(3) hash this system can verify "
                           "(supported: $y$ yescrypt, $2b$ bcrypt, $6$ SHA-512, $5$ SHA-256; "
                           "a plain password must not start with '$')",
                           prefix);
  }
  return PH_OK;
}

static ph_status ba_set_credential(ba_credential *c, const ph_config *users, const char *user,
                                   const char *password) {
  if (ba_sha256(user, strlen(user), c->name_digest) != 0)
    return ph_config_error(users, user, "SHA-256 is not available from OpenSSL");
  if (password[0] == '$') {
    if (ba_check_hash(users, user, password) != PH_OK) return PH_ERROR;
    c->hash = phu_strdup(password);
    if (c->hash == NULL) return ph_config_error(users, user, "out of memory");
    if (ba_sha256(password, strlen(password), c->secret_digest) != 0)
      return ph_config_error(users, user, "SHA-256 is not available from OpenSSL");
    return PH_OK;
  }
  if (ba_sha256(password, strlen(password), c->secret_digest) != 0)
    return ph_config_error(users, user, "SHA-256 is not available from OpenSSL");
  return PH_OK;
}

static int ba_valid_realm(const char *s) {
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') return 0;
  }
  return 1;
}

static ph_status ba_create(const ph_config *cfg, void **self) {
  ba_middleware *m = calloc(1, sizeof *m);
  if (m == NULL) return ph_config_error(cfg, NULL, "out of memory");
  *self = m;

  const char *realm, *username_key, *password_key;
  if (ph_config_string(cfg, "realm", BA_DEFAULT_REALM, &realm) != PH_OK) return PH_ERROR;
  if (!ba_valid_realm(realm))
    return ph_config_error(cfg, "realm",
                           "must be printable ASCII without '\"', '\\', CR or LF (it is quoted "
                           "in the WWW-Authenticate header), like \"Restricted\"");
  static const char fmt[] = "Basic realm=\"%s\", charset=\"UTF-8\"";
  size_t cap = strlen(realm) + sizeof fmt;
  m->challenge = malloc(cap);
  if (m->challenge == NULL) return ph_config_error(cfg, NULL, "out of memory");
  snprintf(m->challenge, cap, fmt, realm);

  if (ph_config_string(cfg, "contextUsernameKey", BA_DEFAULT_USERNAME_KEY, &username_key) != PH_OK)
    return PH_ERROR;
  if (username_key[0] == '\0')
    return ph_config_error(cfg, "contextUsernameKey",
                           "must not be empty: name the local that receives the user name, "
                           "like \"basicAuthUsername\"");
  m->username_key = phu_strdup(username_key);
  if (m->username_key == NULL) return ph_config_error(cfg, NULL, "out of memory");
  if (ph_config_string(cfg, "contextPasswordKey", "", &password_key) != PH_OK) return PH_ERROR;
  if (password_key[0] != '\0') {
    if (strcmp(password_key, username_key) == 0)
      return ph_config_error(cfg, "contextPasswordKey",
                             "must differ from contextUsernameKey ('%s')", username_key);
    m->password_key = phu_strdup(password_key);
    if (m->password_key == NULL) return ph_config_error(cfg, NULL, "out of memory");
  }

  if (ph_config_kind(cfg, "users") != PH_CONFIG_MAP &&
      ph_config_kind(cfg, "users") != PH_CONFIG_MISSING &&
      ph_config_kind(cfg, "users") != PH_CONFIG_NULL)
    return ph_config_error(cfg, "users",
                           "must be a map of user name to password, like {admin: s3cret}");
  const ph_config *users = NULL;
  if (ph_config_child(cfg, "users", &users) != PH_OK) return PH_ERROR;
  size_t n = users != NULL ? ph_config_len(users) : 0;
  if (n == 0)
    return ph_config_error(cfg, "users",
                           "is required: map at least one user name to a password or a "
                           "crypt(3) hash, like {admin: \"$y$...\"}");
  m->users = calloc(n, sizeof *m->users);
  if (m->users == NULL) return ph_config_error(cfg, NULL, "out of memory");
  const char *first_hash = NULL;
  for (size_t i = 0; i < n; i++) {
    const char *user = NULL, *password = NULL;
    const ph_config *entry = ph_config_at(users, i, &user);
    if (entry == NULL || user == NULL) return ph_config_error(cfg, "users", "must be a map");
    if (!ba_valid_username((const uint8_t *)user, strlen(user)))
      return ph_config_error(users, user,
                             "is not a usable user name: it must be non-empty UTF-8 without "
                             "':' or control characters");
    if (ph_config_string(entry, NULL, NULL, &password) != PH_OK) return PH_ERROR;
    if (password == NULL || password[0] == '\0')
      return ph_config_error(entry, NULL, "must not be empty: give a password or a hash");
    if (!phu_valid_utf8((const uint8_t *)password, strlen(password)))
      return ph_config_error(entry, NULL, "must be valid UTF-8");
    if (ba_set_credential(&m->users[i], users, user, password) != PH_OK) return PH_ERROR;
    m->n_users = i + 1;
    if (m->users[i].hash != NULL && first_hash == NULL) first_hash = m->users[i].hash;
  }

  /* Users whose credentials are of different kinds (plain and hashed, or two crypt
  ** methods) cost different times to check, and an unknown user costs what the dummy's kind
  ** costs: someone timing the answers can tell which user names exist. Said at start-up. */
  const char *kind0 = NULL;
  size_t kind0_len = 0;
  for (size_t i = 0; i < m->n_users; i++) {
    const char *h = m->users[i].hash;
    const char *end = h != NULL ? strchr(h + 1, '$') : NULL;
    const char *kind = h != NULL ? h : "plain";
    size_t len = h != NULL ? (end != NULL ? (size_t)(end - h + 1) : strlen(h)) : 5;
    if (kind0 == NULL) {
      kind0 = kind, kind0_len = len;
    } else if (len != kind0_len || strncmp(kind, kind0, len) != 0) {
      ph_log(cfg, PH_LOG_WARNING,
             "basicauth: users mix credential kinds (%.*s and %.*s): checking one kind takes "
             "longer than the other, so user names can be told apart by timing; give every "
             "user the same kind (one crypt method, or plain passwords)",
             (int)kind0_len, kind0, (int)len, kind);
      break;
    }
  }

  /* The dummy costs what a real verification costs: the same hash, or a random digest. */
  uint8_t rnd[BA_DIGEST];
  if (phu_random(rnd, sizeof rnd) != 0)
    return ph_config_error(cfg, NULL, "the kernel's random generator failed");
  memcpy(m->dummy.name_digest, rnd, BA_DIGEST);
  if (ba_sha256(rnd, sizeof rnd, m->dummy.secret_digest) != 0)
    return ph_config_error(cfg, NULL, "SHA-256 is not available from OpenSSL");
  if (first_hash != NULL) {
    m->dummy.hash = phu_strdup(first_hash);
    if (m->dummy.hash == NULL) return ph_config_error(cfg, NULL, "out of memory");
    for (size_t i = 0; i < m->n_users; i++)
      if (m->users[i].hash == first_hash)
        memcpy(m->dummy.secret_digest, m->users[i].secret_digest, BA_DIGEST);
  }
  return PH_OK;
}

static ph_next ba_unauthorized(const ba_middleware *m, ph_exchange *ex) {
  if (ph_resp_header_set(ex, "WWW-Authenticate", m->challenge) != PH_OK) return PH_NEXT_ERROR;
  return phu_refuse(ex, 401, "unauthorized");
}

/* Verifies `password` against every user; 1 when it matches `user`'s credential. */
static int ba_verify(const ba_middleware *m, const uint8_t *user, size_t user_len,
                     const char *password, size_t password_len) {
  uint8_t ud[BA_DIGEST];
  if (ba_sha256(user, user_len, ud) != 0) return 0;
  const ba_credential *found = NULL;
  for (size_t i = 0; i < m->n_users; i++) {
    int eq = CRYPTO_memcmp(ud, m->users[i].name_digest, BA_DIGEST) == 0;
    if (eq) found = &m->users[i]; /* every entry is compared, whatever matched */
  }
  const ba_credential *c = found != NULL ? found : &m->dummy;
  int ok;
  if (c->hash != NULL) {
    ok = ba_crypt_verify(password, c->hash, c->secret_digest);
  } else {
    uint8_t pd[BA_DIGEST];
    ok = ba_sha256(password, password_len, pd) == 0 &&
         CRYPTO_memcmp(pd, c->secret_digest, BA_DIGEST) == 0;
    OPENSSL_cleanse(pd, sizeof pd);
  }
  return ok && found != NULL;
}

static ph_next ba_on_request(void *self, ph_exchange *ex) {
  const ba_middleware *m = self;
  const char *auth = ph_header_get(ex, "Authorization");
  if (auth == NULL) return ba_unauthorized(m, ex);
  size_t alen = strlen(auth);
  if (alen > BA_MAX_HEADER || alen < 6 || strncasecmp(auth, "Basic", 5) != 0 || auth[5] != ' ')
    return ba_unauthorized(m, ex);
  const char *b64 = auth + 6;
  while (*b64 == ' ') b64++;
  size_t blen = strlen(b64);
  while (blen > 0 && (b64[blen - 1] == ' ' || b64[blen - 1] == '\t')) blen--;

  uint8_t decoded[BA_MAX_HEADER]; /* 3/4 of at most 4090 bytes, plus a NUL */
  long dlen = ba_b64_decode(b64, blen, decoded);
  if (dlen < 0) return ba_unauthorized(m, ex);
  size_t n = (size_t)dlen;
  uint8_t *colon = memchr(decoded, ':', n);
  if (colon == NULL || memchr(decoded, '\0', n) != NULL) goto refuse;
  size_t ulen = (size_t)(colon - decoded);
  const uint8_t *password = colon + 1;
  size_t plen = n - ulen - 1;
  if (!ba_valid_username(decoded, ulen) || !phu_valid_utf8(password, plen)) goto refuse;
  decoded[n] = '\0'; /* the password as a C string for crypt_rn */

  if (!ba_verify(m, decoded, ulen, (const char *)password, plen)) goto refuse;

  if (ph_local_set(ex, m->username_key, decoded, ulen) != PH_OK ||
      (m->password_key != NULL && ph_local_set(ex, m->password_key, password, plen) != PH_OK)) {
    OPENSSL_cleanse(decoded, n);
    return PH_NEXT_ERROR;
  }
  OPENSSL_cleanse(decoded, n);
  return PH_NEXT_CONTINUE;

refuse:
  OPENSSL_cleanse(decoded, n);
  return ba_unauthorized(m, ex);
}

/* The options of a BasicAuthMiddleware (Seam's names); the host checks every config
** against them before ba_create runs, which keeps its own checks (user names, hashes,
** realm, at least one user). */
static const ph_option basicauth_options[] = {
    PH_OPTION(PH_OPTION_MAP, "users", NULL,
              "user name -> plain password, or crypt(3) hash ($y$, $2b$, $6$, $5$); at least "
              "one user",
              .flags = PH_OPTION_REQUIRED, .items = PH_OPTION_STRING),
    PH_OPTION(PH_OPTION_STRING, "realm", BA_DEFAULT_REALM,
              "the realm the WWW-Authenticate challenge names (printable ASCII, no '\"' or "
              "'\\')"),
    PH_OPTION(PH_OPTION_STRING, "contextUsernameKey", BA_DEFAULT_USERNAME_KEY,
              "the per-request local that receives the authenticated user name"),
    PH_OPTION(PH_OPTION_STRING, "contextPasswordKey", "",
              "the local that receives the password the client sent; none: not stored "
              "(Seam's: basicAuthPassword)"),
    PH_OPTIONS_END};

static const ph_option no_options[] = {PH_OPTIONS_END};

static const ph_middleware_type basicauth_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_MAY_BLOCK | PH_TYPE_STREAMS_BODIES,
    .id = "plugins.basicauth.middlewares.BasicAuthMiddleware",
    .description = "HTTP Basic authentication against plain passwords or crypt(3) hashes",
    .create = ba_create,
    .destroy = ba_destroy,
    .on_request = ba_on_request,
    .options = basicauth_options,
};

static const ph_middleware_type *const basicauth_middlewares[] = {&basicauth_middleware, NULL};

PH_PLUGIN_DEFINE(.name = "basicauth", .version = "1.0.0",
                 .description = "HTTP Basic authentication (Seam's basicauth)",
                 .middlewares = basicauth_middlewares, .options = no_options);
