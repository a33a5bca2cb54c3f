/*
** jwt: JSON Web Token validation, like Seam's jwt plugin.
**
** Middleware plugins.jwt.middlewares.JWTValidationMiddleware
**   signingKey               map, optional         the key tokens are signed with:
**     algorithm              string, required      HS256, HS384, HS512, RS256, RS384, RS512,
**                                                  ES256, ES384, ES512 or EdDSA; a token must
**                                                  carry exactly this "alg"
**     key                    string, required      HS*: the shared secret, its UTF-8 bytes as
**                                                  written; others: PEM text of the public key
**                                                  ("BEGIN PUBLIC KEY") or of a certificate,
**                                                  whose type must fit the algorithm (RSA of
**                                                  >= 2048 bits for RS*, EC P-256/P-384/P-521
**                                                  for ES256/384/512, Ed25519/Ed448 for EdDSA)
**   jwkUrls                  list of strings       http(s) URLs of JWK sets (RFC 7517): RSA, EC
**                                                  and OKP keys, selected by the token's "kid"
**   jwkRefreshInterval       duration, default 1h  how often the JWK sets are fetched again
**                                                  (>= 1s); a failing URL is retried every
**                                                  min(this, 15s) and keeps its last good keys
**   jwkMinRefreshInterval    duration, default 10s a token whose kid no set holds triggers an
**                                                  early refresh, at most this often (0: always)
**   jwkTimeout               duration, default 5s  one fetch, connecting included (> 0)
**   leeway                   duration, default 0s  clock skew allowed on exp, nbf and iat
**   issuer                   string, optional      the "iss" a token must carry
**   audience                 string or list        a token's "aud" (a string or a list) must
**                                                  hold one of these
**   maxTokenSize             int, default 8192     bytes of the Authorization header value
**                                                  beyond which a token is refused (256..65536)
** At least one of signingKey and jwkUrls is required. The options are declared in
** jwt_options (ABI 1.2): the host refuses unknown names and wrong kinds before create runs,
** and names match ignoring case, as in Seam.
**
** The token is read from "Authorization: Bearer <token>" (the scheme matched without regard
** to case). A token is accepted when: it is three base64url parts (no padding) joined by
** dots; its header is a JSON object with a known "alg" ("none" never is), no "crit", and a
** string "kid" if any; the key is found (a token with a kid and jwkUrls: the JWK with that
** kid, else signingKey; a token without a kid: signingKey, else the only key of the JWK
** sets if there is exactly one); the token's alg is one the key may verify (signingKey: its
** configured algorithm; a JWK: its "alg", or every algorithm of its key type; HS* never
** with a JWK); the signature verifies (HMAC compared in constant time, ECDSA in JOSE r||s
** form); and only then the claims, a JSON object: "exp" in the future, "nbf" and "iat" not
** in the future (each within leeway; each optional, but a number when present), "iss" and
** "aud" as configured. JSON (parsed by jansson) with duplicate members, invalid UTF-8,
** \u0000, or arrays and objects nested more than 64 deep is refused.
**
** Accepted: the request goes on with these per-request locals:
**   jwt.claims   the claims (payload) as the JSON text the token carried
**   jwt.header   the token's header as JSON text
**   jwt.sub      the "sub" claim, when it is a string
** Refused: 401 with Content-Type application/json and
**   no Bearer credentials:  WWW-Authenticate: Bearer
**                           {"error":"missing bearer token","status":401}
**   any other reason:       WWW-Authenticate: Bearer error="invalid_token"
**                           {"error":"invalid token","status":401}
** The client learns nothing more; the reason is logged at info level (never the token).
**
** The instance state does not change after create, except the JWK sets, swapped under a
** mutex by the instance's own refresher thread (see jwt_jwks.c), which destroy stops and
** joins: thread-safe, and a request never blocks on the network.
*/
#define _POSIX_C_SOURCE 200809L

#include "jwt_internal.h"
#include "phu.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define JWT_DEFAULT_MAX_TOKEN 8192
#define JWT_MIN_MAX_TOKEN 256
#define JWT_MAX_MAX_TOKEN 65536
#define JWT_MIN_RSA_BITS 2048

typedef struct jwt_mw {
  jwt_key static_key; /* signingKey; algs == 0 when not configured */
  jwt_jwks *jwks;     /* jwkUrls; NULL when not configured */
  double leeway_s;
  char *issuer;
  char **audiences;
  size_t n_audiences;
  size_t max_token;
  /* tokens by outcome (plughost_plugin_jwt_tokens_total{result=...}) */
  ph_metric *accepted, *missing, *expired, *bad_signature, *invalid;
} jwt_mw;

/* ------------------------------------------------------------------ configuration --- */

static void jwt_destroy(void *self) {
  jwt_mw *m = self;
  if (m == NULL) return;
  jwt_jwks_stop(m->jwks);
  jwt_key_clear(&m->static_key);
  free(m->issuer);
  for (size_t i = 0; i < m->n_audiences; i++) free(m->audiences[i]);
  free(m->audiences);
  free(m);
}

static ph_status config_signing_key(const ph_config *cfg, jwt_mw *m) {
  const ph_config *sk = NULL;
  if (ph_config_child(cfg, "signingKey", &sk) != PH_OK) return PH_ERROR;
  if (sk == NULL) return PH_OK;
  if (ph_config_kind(sk, NULL) != PH_CONFIG_MAP)
    return ph_config_error(cfg, "signingKey", "must be a map {algorithm, key}, not a list");
  const char *alg_name = NULL, *key = NULL;
  if (ph_config_string(sk, "algorithm", NULL, &alg_name) != PH_OK) return PH_ERROR;
  if (ph_config_string(sk, "key", NULL, &key) != PH_OK) return PH_ERROR;
  if (alg_name == NULL || *alg_name == '\0')
    return ph_config_error(sk, "algorithm", "is required: one of %s", jwt_alg_list());
  jwt_alg alg = jwt_alg_parse(alg_name);
  if (alg == JWT_ALG_UNKNOWN) {
    if (strcasecmp(alg_name, "none") == 0)
      return ph_config_error(sk, "algorithm",
                             "'none' (unsigned tokens) is never accepted: "
                             "use one of %s",
                             jwt_alg_list());
    return ph_config_error(sk, "algorithm",
                           "'%s' is not supported: use one of %s (the "
                           "names are case-sensitive)",
                           alg_name, jwt_alg_list());
  }
  if (key == NULL || *key == '\0')
    return ph_config_error(sk, "key", "is required: the shared secret for %s", jwt_alg_name(alg));
  size_t hash_len = jwt_alg_hash_len(alg);
  if (hash_len > 0) { /* HMAC: the secret's bytes as written */
    size_t len = strlen(key);
    if (strstr(key, "-----BEGIN ") != NULL)
      return ph_config_error(sk, "key",
                             "is PEM text, but %s takes a shared secret: use "
                             "RS*/ES*/EdDSA for a public key",
                             alg_name);
    m->static_key.secret = malloc(len);
    if (m->static_key.secret == NULL) return ph_config_error(cfg, NULL, "out of memory");
    memcpy(m->static_key.secret, key, len);
    m->static_key.secret_len = len;
    if (len < hash_len)
      ph_log(cfg, PH_LOG_WARNING,
             "jwt: the %s secret is %zu bytes, shorter than the %zu that RFC 7518 asks for: "
             "use a longer random secret",
             alg_name, len, hash_len);
  } else {
    char why[256];
    EVP_PKEY *pkey = jwt_pem_public_key(key, why, sizeof why);
    if (pkey == NULL) return ph_config_error(sk, "key", "%s", why);
    m->static_key.pkey = pkey;
    char desc[96];
    unsigned algs = jwt_pkey_algs(pkey, desc, sizeof desc);
    if (!(algs & JWT_ALG_BIT(alg)))
      return ph_config_error(sk, "key",
                             "is %s, which cannot verify %s: give the public key "
                             "that matches the algorithm, or fix the algorithm",
                             desc, alg_name);
    if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA && EVP_PKEY_get_bits(pkey) < JWT_MIN_RSA_BITS)
      return ph_config_error(sk, "key", "is %s: RSA keys need at least %d bits", desc,
                             JWT_MIN_RSA_BITS);
  }
  m->static_key.algs = JWT_ALG_BIT(alg);
  return PH_OK;
}

static ph_status config_duration(const ph_config *cfg, const char *key, int64_t dflt,
                                 int64_t min_ms, int64_t *out) {
  if (ph_config_duration_ms(cfg, key, dflt, out) != PH_OK) return PH_ERROR;
  if (*out < min_ms)
    return min_ms == 0 ? ph_config_error(cfg, key, "must not be negative")
                       : ph_config_error(cfg, key,
                                         "must be at least %" PRId64
                                         " ms, like "
                                         "\"%" PRId64 "s\"",
                                         min_ms, (min_ms + 999) / 1000);
  return PH_OK;
}

static ph_status config_jwk_urls(const ph_config *cfg, jwt_mw *m) {
  ph_config_kind kind = ph_config_kind(cfg, "jwkUrls");
  if (kind == PH_CONFIG_MISSING || kind == PH_CONFIG_NULL) return PH_OK;
  if (kind != PH_CONFIG_LIST)
    return ph_config_error(cfg, "jwkUrls",
                           "must be a list of URLs, like "
                           "[\"https://issuer.example/.well-known/jwks.json\"]");
  const ph_config *list = NULL;
  if (ph_config_child(cfg, "jwkUrls", &list) != PH_OK || list == NULL) return PH_ERROR;
  size_t n = ph_config_len(list);
  if (n == 0)
    return ph_config_error(cfg, "jwkUrls",
                           "is empty: list at least one URL, or "
                           "leave it out");
  if (!jwt_jwks_supported())
    return ph_config_error(cfg, "jwkUrls",
                           "cannot be used: this jwt.so was built without "
                           "libcurl (-DPLUGHOST_JWT_JWKS=OFF); use signingKey");
  const char **urls = calloc(n, sizeof *urls);
  if (urls == NULL) return ph_config_error(cfg, NULL, "out of memory");
  for (size_t i = 0; i < n; i++) {
    const ph_config *item = ph_config_at(list, i, NULL);
    const char *url = NULL;
    if (item == NULL || ph_config_kind(item, NULL) != PH_CONFIG_STRING ||
        ph_config_string(item, NULL, NULL, &url) != PH_OK || url == NULL) {
      free(urls);
      return ph_config_error(list, NULL, "entry %zu must be a URL string", i + 1);
    }
    int ok = strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0;
    for (const char *p = url; ok && *p; p++)
      if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) ok = 0;
    if (!ok) {
      free(urls);
      return ph_config_error(list, NULL,
                             "entry %zu, '%s', is not an http(s):// URL without "
                             "spaces",
                             i + 1, url);
    }
    if (strncmp(url, "http://", 7) == 0)
      ph_log(cfg, PH_LOG_WARNING,
             "jwt: %s is fetched over plain http: anyone on the path can swap the keys; use "
             "https outside tests",
             url);
    urls[i] = url;
  }
  jwt_jwks_options opt;
  if (config_duration(cfg, "jwkRefreshInterval", 3600000, 1000, &opt.refresh_ms) != PH_OK ||
      config_duration(cfg, "jwkMinRefreshInterval", 10000, 0, &opt.min_refresh_ms) != PH_OK ||
      config_duration(cfg, "jwkTimeout", 5000, 1, &opt.timeout_ms) != PH_OK) {
    free(urls);
    return PH_ERROR;
  }
  char why[128] = "";
  m->jwks = jwt_jwks_start(cfg, urls, n, &opt, why, sizeof why);
  free(urls);
  if (m->jwks == NULL) return ph_config_error(cfg, "jwkUrls", "%s", why);
  return PH_OK;
}

static ph_status config_audience(const ph_config *cfg, jwt_mw *m) {
  ph_config_kind kind = ph_config_kind(cfg, "audience");
  if (kind == PH_CONFIG_MISSING || kind == PH_CONFIG_NULL) return PH_OK;
  const ph_config *list = NULL;
  size_t n = 1;
  if (kind == PH_CONFIG_LIST) {
    if (ph_config_child(cfg, "audience", &list) != PH_OK || list == NULL) return PH_ERROR;
    n = ph_config_len(list);
    if (n == 0)
      return ph_config_error(cfg, "audience",
                             "is an empty list: name at least one "
                             "audience, or leave it out");
  } else if (kind != PH_CONFIG_STRING) {
    return ph_config_error(cfg, "audience", "must be a string or a list of strings");
  }
  m->audiences = calloc(n, sizeof *m->audiences);
  if (m->audiences == NULL) return ph_config_error(cfg, NULL, "out of memory");
  for (size_t i = 0; i < n; i++) {
    const char *aud = NULL;
    if (list == NULL) {
      if (ph_config_string(cfg, "audience", NULL, &aud) != PH_OK) return PH_ERROR;
    } else {
      const ph_config *item = ph_config_at(list, i, NULL);
      if (item == NULL || ph_config_kind(item, NULL) != PH_CONFIG_STRING ||
          ph_config_string(item, NULL, NULL, &aud) != PH_OK)
        return ph_config_error(cfg, "audience", "entry %zu must be a string", i + 1);
    }
    if (aud == NULL || *aud == '\0') return ph_config_error(cfg, "audience", "must not be empty");
    if ((m->audiences[i] = phu_strdup(aud)) == NULL)
      return ph_config_error(cfg, NULL, "out of memory");
    m->n_audiences = i + 1;
  }
  return PH_OK;
}

static ph_status jwt_create(const ph_config *cfg, void **self) {
  jwt_mw *m = calloc(1, sizeof *m);
  if (m == NULL) return ph_config_error(cfg, NULL, "out of memory");
  *self = m;
  if (config_signing_key(cfg, m) != PH_OK) return PH_ERROR;

  int64_t leeway_ms = 0, max_token = 0;
  if (config_duration(cfg, "leeway", 0, 0, &leeway_ms) != PH_OK) return PH_ERROR;
  m->leeway_s = (double)leeway_ms / 1000.0;
  const char *issuer = NULL;
  if (ph_config_string(cfg, "issuer", NULL, &issuer) != PH_OK) return PH_ERROR;
  if (issuer != NULL) {
    if (*issuer == '\0') return ph_config_error(cfg, "issuer", "must not be empty");
    if ((m->issuer = phu_strdup(issuer)) == NULL)
      return ph_config_error(cfg, NULL, "out of memory");
  }
  if (config_audience(cfg, m) != PH_OK) return PH_ERROR;
  if (ph_config_int(cfg, "maxTokenSize", JWT_DEFAULT_MAX_TOKEN, &max_token) != PH_OK)
    return PH_ERROR;
  if (max_token < JWT_MIN_MAX_TOKEN || max_token > JWT_MAX_MAX_TOKEN)
    return ph_config_error(cfg, "maxTokenSize", "must be between %d and %d bytes, not %" PRId64,
                           JWT_MIN_MAX_TOKEN, JWT_MAX_MAX_TOKEN, max_token);
  m->max_token = (size_t)max_token;

  static const char help[] = "Bearer tokens checked, by result";
  if ((m->accepted = phu_counter(cfg, "tokens", help, "result", "accepted")) == NULL ||
      (m->missing = phu_counter(cfg, "tokens", help, "result", "missing")) == NULL ||
      (m->expired = phu_counter(cfg, "tokens", help, "result", "expired")) == NULL ||
      (m->bad_signature = phu_counter(cfg, "tokens", help, "result", "bad_signature")) == NULL ||
      (m->invalid = phu_counter(cfg, "tokens", help, "result", "invalid")) == NULL)
    return PH_ERROR;

  /* Last: it fetches the JWK sets, which only makes sense once everything else is valid. */
  if (config_jwk_urls(cfg, m) != PH_OK) return PH_ERROR;
  if (m->static_key.algs == 0 && m->jwks == NULL)
    return ph_config_error(cfg, NULL,
                           "needs signingKey {algorithm, key} or jwkUrls (or "
                           "both): nothing to verify tokens with");
  return PH_OK;
}

/* ----------------------------------------------------------------------- requests --- */

static ph_next refuse(const jwt_mw *m, ph_exchange *ex, int missing, const char *reason) {
  ph_log(ex, PH_LOG_INFO, "jwt: 401: %s", reason);
  ph_metric_add(missing                                ? m->missing
                : strncmp(reason, "expired", 7) == 0   ? m->expired
                : strcmp(reason, "bad signature") == 0 ? m->bad_signature
                                                       : m->invalid,
                1);
  if (ph_resp_header_set(ex, "WWW-Authenticate",
                         missing ? "Bearer" : "Bearer error=\"invalid_token\"") != PH_OK)
    return PH_NEXT_ERROR;
  return phu_refuse(ex, 401, missing ? "missing bearer token" : "invalid token");
}

static int is_b64url_or_dot(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

/* A JSON object from base64url text: NULL when either layer is invalid. *text receives the
** decoded JSON (malloc'd, NUL-terminated) on success. */
static json_t *decode_json_object(const char *part, size_t len, unsigned char **text,
                                  size_t *text_len) {
  unsigned char *raw = jwt_b64url_decode(part, len, text_len, 0);
  if (raw == NULL) return NULL;
  if (!jwt_json_depth_ok((const char *)raw, *text_len, JWT_MAX_JSON_DEPTH)) {
    free(raw);
    return NULL;
  }
  json_error_t err;
  json_t *obj = json_loadb((const char *)raw, *text_len, JSON_REJECT_DUPLICATES, &err);
  if (obj == NULL || !json_is_object(obj)) {
    json_decref(obj);
    free(raw);
    return NULL;
  }
  *text = raw;
  return obj;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* NULL when the claims pass, else why not. */
static const char *check_claims(const jwt_mw *m, json_t *claims) {
  double now = now_s();
  json_t *v;
  if ((v = json_object_get(claims, "exp")) != NULL) {
    if (!json_is_number(v)) return "\"exp\" is not a number";
    if (now >= json_number_value(v) + m->leeway_s) return "expired (exp)";
  }
  if ((v = json_object_get(claims, "nbf")) != NULL) {
    if (!json_is_number(v)) return "\"nbf\" is not a number";
    if (now + m->leeway_s < json_number_value(v)) return "not valid yet (nbf)";
  }
  if ((v = json_object_get(claims, "iat")) != NULL) {
    if (!json_is_number(v)) return "\"iat\" is not a number";
    if (json_number_value(v) > now + m->leeway_s) return "issued in the future (iat)";
  }
  if (m->issuer != NULL) {
    const char *iss = json_string_value(json_object_get(claims, "iss"));
    if (iss == NULL || strcmp(iss, m->issuer) != 0) return "wrong or missing issuer (iss)";
  }
  if (m->n_audiences > 0) {
    json_t *aud = json_object_get(claims, "aud");
    int found = 0;
    if (json_is_string(aud)) {
      for (size_t i = 0; i < m->n_audiences && !found; i++)
        found = strcmp(json_string_value(aud), m->audiences[i]) == 0;
    } else if (json_is_array(aud)) {
      size_t k;
      json_t *item;
      json_array_foreach(aud, k, item) {
        if (!json_is_string(item)) return "\"aud\" holds a value that is not a string";
        for (size_t i = 0; i < m->n_audiences && !found; i++)
          found = strcmp(json_string_value(item), m->audiences[i]) == 0;
      }
    }
    if (!found) return "wrong or missing audience (aud)";
  }
  return NULL;
}

typedef struct request_state {
  json_t *header, *claims;
  unsigned char *header_text, *claims_text, *sig;
  jwt_keyset *ks;
} request_state;

static void request_state_free(request_state *st) {
  json_decref(st->header);
  json_decref(st->claims);
  free(st->header_text);
  free(st->claims_text);
  free(st->sig);
  jwt_keyset_release(st->ks);
}

/* Checks the token; NULL when valid, else the reason to log. */
static const char *validate(jwt_mw *m, const char *token, size_t len, request_state *st,
                            size_t *header_len, size_t *claims_len) {
  const char *dot1 = NULL, *dot2 = NULL;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)token[i];
    if (!is_b64url_or_dot(c)) return "characters outside base64url in the token";
    if (c != '.') continue;
    if (dot1 == NULL)
      dot1 = token + i;
    else if (dot2 == NULL)
      dot2 = token + i;
    else
      return "more than three parts (a JWE, or garbage)";
  }
  if (dot2 == NULL) return "not three dot-separated parts";
  size_t h_len = (size_t)(dot1 - token), p_len = (size_t)(dot2 - dot1 - 1);
  size_t s_len = len - (size_t)(dot2 - token) - 1;
  if (h_len == 0 || p_len == 0 || s_len == 0) return "an empty part";

  st->header = decode_json_object(token, h_len, &st->header_text, header_len);
  if (st->header == NULL) return "the header is not base64url of a JSON object";
  json_t *alg_v = json_object_get(st->header, "alg");
  if (!json_is_string(alg_v)) return "no \"alg\" in the header";
  jwt_alg alg = jwt_alg_parse(json_string_value(alg_v));
  if (alg == JWT_ALG_UNKNOWN) return "unsupported or \"none\" alg";
  if (json_object_get(st->header, "crit") != NULL)
    return "\"crit\" header (no extension is supported)";
  json_t *kid_v = json_object_get(st->header, "kid");
  if (kid_v != NULL && !json_is_string(kid_v)) return "\"kid\" is not a string";
  const char *kid = json_string_value(kid_v);

  const jwt_key *key = NULL;
  if (m->jwks != NULL) st->ks = jwt_jwks_acquire(m->jwks);
  if (kid != NULL && m->jwks != NULL) {
    key = jwt_keyset_find(st->ks, kid);
    if (key == NULL) {
      jwt_jwks_kick(m->jwks);
      if (m->static_key.algs == 0) return "unknown kid";
    }
  }
  if (key == NULL && m->static_key.algs != 0) key = &m->static_key;
  if (key == NULL && kid == NULL && st->ks != NULL && st->ks->count == 1) key = &st->ks->keys[0];
  if (key == NULL)
    return st->ks == NULL ? "no JWK set loaded yet" : "no kid, and more than one key";
  if (!(key->algs & JWT_ALG_BIT(alg))) return "the token's alg does not fit the key";

  size_t sig_len = 0;
  st->sig = jwt_b64url_decode(dot2 + 1, s_len, &sig_len, 0);
  if (st->sig == NULL) return "the signature is not base64url";
  if (!jwt_verify(key, alg, (const unsigned char *)token, (size_t)(dot2 - token), st->sig, sig_len))
    return "bad signature";

  /* Only a correctly signed payload reaches the JSON parser. */
  st->claims = decode_json_object(dot1 + 1, p_len, &st->claims_text, claims_len);
  if (st->claims == NULL) return "the claims are not base64url of a JSON object";
  return check_claims(m, st->claims);
}

static ph_next jwt_on_request(void *self, ph_exchange *ex) {
  jwt_mw *m = self;
  const char *auth = ph_header_get(ex, "Authorization");
  if (auth == NULL) return refuse(m, ex, 1, "no Authorization header");
  while (*auth == ' ' || *auth == '\t') auth++;
  if (strncasecmp(auth, "Bearer", 6) != 0 || (auth[6] != ' ' && auth[6] != '\t'))
    return refuse(m, ex, 1, "the Authorization header is not \"Bearer <token>\"");
  const char *token = auth + 7;
  while (*token == ' ' || *token == '\t') token++;
  size_t len = strnlen(token, m->max_token + 1);
  if (len > m->max_token) return refuse(m, ex, 0, "token larger than maxTokenSize");
  while (len > 0 && (token[len - 1] == ' ' || token[len - 1] == '\t')) len--;
  if (len == 0) return refuse(m, ex, 1, "empty Bearer credentials");

  request_state st = {0};
  size_t header_len = 0, claims_len = 0;
  const char *why = validate(m, token, len, &st, &header_len, &claims_len);
  if (why != NULL) {
    request_state_free(&st);
    return refuse(m, ex, 0, why);
  }
  ph_status rc = ph_local_set(ex, "jwt.claims", st.claims_text, claims_len);
  if (rc == PH_OK) rc = ph_local_set(ex, "jwt.header", st.header_text, header_len);
  const char *sub = json_string_value(json_object_get(st.claims, "sub"));
  if (rc == PH_OK && sub != NULL) rc = ph_local_set(ex, "jwt.sub", sub, strlen(sub));
  request_state_free(&st);
  if (rc == PH_OK) ph_metric_add(m->accepted, 1);
  return rc == PH_OK ? PH_NEXT_CONTINUE : PH_NEXT_ERROR;
}

/* ------------------------------------------------------------------------- plugin --- */

static ph_status jwt_init(const ph_config *cfg, void **state) {
  (void)state;
  json_object_seed(0); /* jansson's hash seed, set once before any thread parses */
  if (jwt_jwks_global_init() != 0)
    return ph_config_error(cfg, NULL, "libcurl could not be initialised");
  return PH_OK;
}

static void jwt_shutdown(void *state) {
  (void)state;
  jwt_jwks_global_cleanup();
}

/* The options of a JWTValidationMiddleware; the host checks every config against them
** before jwt_create runs (which keeps its own checks: key material, URLs, the one-of rule). */
static const char *const jwt_algorithms[] = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
                                             "ES256", "ES384", "ES512", "EdDSA", NULL};

static const ph_option jwt_signing_key_options[] = {
    PH_OPTION(PH_OPTION_ENUM, "algorithm", NULL,
              "the algorithm tokens are signed with; a token must carry exactly this alg "
              "(case-sensitive)",
              .flags = PH_OPTION_REQUIRED, .choices = jwt_algorithms),
    PH_OPTION(PH_OPTION_STRING, "key", NULL,
              "HS*: the shared secret; others: PEM text of the public key or certificate",
              .flags = PH_OPTION_REQUIRED),
    PH_OPTIONS_END};

static const ph_option jwt_options[] = {
    PH_OPTION(PH_OPTION_MAP, "signingKey", NULL,
              "the key tokens are signed with: algorithm and key (this or jwkUrls is needed)",
              .fields = jwt_signing_key_options),
    PH_OPTION(PH_OPTION_LIST, "jwkUrls", NULL,
              "http(s):// URLs of JWK sets; keys are selected by the token's kid",
              .items = PH_OPTION_STRING, .flags = PH_OPTION_MIN, .min = 1),
    PH_OPTION(PH_OPTION_DURATION, "jwkRefreshInterval", "1h",
              "how often the JWK sets are fetched again", .flags = PH_OPTION_MIN, .min = 1),
    PH_OPTION(PH_OPTION_DURATION, "jwkMinRefreshInterval", "10s",
              "tokens with an unknown kid trigger an early refresh at most this often"),
    PH_OPTION(PH_OPTION_DURATION, "jwkTimeout", "5s",
              "limit for one JWK set fetch, connecting included", .flags = PH_OPTION_MIN,
              .min = 0.001),
    PH_OPTION(PH_OPTION_DURATION, "leeway", "0s", "clock skew allowed on exp, nbf and iat"),
    PH_OPTION(PH_OPTION_STRING, "issuer", NULL, "when set, a token's iss must equal it"),
    PH_OPTION(PH_OPTION_LIST, "audience", NULL,
              "when set, a token's aud must hold one of these (one audience, or a list)",
              .items = PH_OPTION_STRING, .flags = PH_OPTION_COMMA_LIST | PH_OPTION_MIN, .min = 1),
    PH_OPTION(PH_OPTION_INT, "maxTokenSize", "8192",
              "longest Authorization value (after Bearer) accepted, in bytes",
              .flags = PH_OPTION_MIN | PH_OPTION_MAX, .min = JWT_MIN_MAX_TOKEN,
              .max = JWT_MAX_MAX_TOKEN),
    PH_OPTIONS_END};

static const ph_option no_options[] = {PH_OPTIONS_END};

static const ph_middleware_type jwt_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_STREAMS_BODIES,
    .id = "plugins.jwt.middlewares.JWTValidationMiddleware",
    .description =
        "Validates a Bearer JWT (HS/RS/ES/EdDSA, JWK sets) and puts its claims in "
        "the locals",
    .create = jwt_create,
    .destroy = jwt_destroy,
    .on_request = jwt_on_request,
    .options = jwt_options,
};

static const ph_middleware_type *const jwt_middlewares[] = {&jwt_middleware, NULL};

PH_PLUGIN_DEFINE(.name = "jwt", .version = "1.0.0",
                 .description = "JSON Web Token validation (Seam's jwt plugin)", .init = jwt_init,
                 .shutdown = jwt_shutdown, .middlewares = jwt_middlewares, .options = no_options);
