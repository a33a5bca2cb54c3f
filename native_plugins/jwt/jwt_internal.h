/* jwt_internal.h: what the jwt plugin's three source files share. Not part of any ABI.
**
**   jwt.c       the middleware: configuration, token parsing, claims, the 401 answer
**   jwt_keys.c  algorithms, base64url, PEM and JWK keys, signature verification (OpenSSL)
**   jwt_jwks.c  JWK sets fetched from jwkUrls by a background thread (libcurl)
*/
#ifndef PLUGHOST_JWT_INTERNAL_H
#define PLUGHOST_JWT_INTERNAL_H

#include "plugin.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------- algorithms --- */

typedef enum jwt_alg {
  JWT_HS256,
  JWT_HS384,
  JWT_HS512,
  JWT_RS256,
  JWT_RS384,
  JWT_RS512,
  JWT_ES256,
  JWT_ES384,
  JWT_ES512,
  JWT_EDDSA,
  JWT_ALG_COUNT,
  JWT_ALG_UNKNOWN = -1
} jwt_alg;

#define JWT_ALG_BIT(a) (1u << (unsigned)(a))
#define JWT_HS_ALGS (JWT_ALG_BIT(JWT_HS256) | JWT_ALG_BIT(JWT_HS384) | JWT_ALG_BIT(JWT_HS512))

/* The algorithm named exactly `name` (JOSE names are case-sensitive), or JWT_ALG_UNKNOWN. */
jwt_alg jwt_alg_parse(const char *name);
const char *jwt_alg_name(jwt_alg alg);
/* "HS256, HS384, ..., EdDSA", for error messages. */
const char *jwt_alg_list(void);
/* Bytes of the HMAC output for HS algorithms (the minimum recommended secret), else 0. */
size_t jwt_alg_hash_len(jwt_alg alg);

/* ---------------------------------------------------------------------- base64url --- */

/* Decodes base64url (RFC 4648 section 5) into a malloc'd buffer of *out_len bytes (plus a
** NUL, not counted, so JSON text can be handed on as a string). Rejects any character
** outside the alphabet, a length of 4k+1, non-zero trailing bits, and '=' padding unless
** allow_padding (JWK fields from some servers carry it; JWS parts never do). NULL on bad
** input or out of memory. */
unsigned char *jwt_b64url_decode(const char *in, size_t len, size_t *out_len, int allow_padding);

/* --------------------------------------------------------------------------- JSON --- */

/* Deepest nesting of arrays and objects accepted in any JSON the plugin parses (token
** headers, claims, JWK sets). jansson parses recursively and allows 2048 levels, which
** needs more stack (about 200 KiB) than a thread has by default on musl (128 KiB). */
#define JWT_MAX_JSON_DEPTH 64

/* Whether the nesting of arrays and objects in the JSON text stays within limit. Not a
** parser: it only counts brackets outside strings, so that jansson, which parses the text
** afterwards, never recurses deeper than limit whatever the text holds. */
int jwt_json_depth_ok(const char *text, size_t len, int limit);

/* -------------------------------------------------------------------------- keys --- */

/* A verification key: an HMAC secret or a public key, with the algorithms it may verify.
** Immutable once built; shared read-only between threads. */
typedef struct jwt_key {
  char *kid;             /* JWK "kid"; NULL for signingKey or a JWK without one */
  unsigned algs;         /* JWT_ALG_BIT() set of the algorithms this key may verify */
  EVP_PKEY *pkey;        /* public key (RS, ES, EdDSA); NULL for an HMAC secret */
  unsigned char *secret; /* HMAC secret (HS) */
  size_t secret_len;
} jwt_key;

void jwt_key_clear(jwt_key *key);

/* Public key from PEM text: a SubjectPublicKeyInfo ("BEGIN PUBLIC KEY") or an X.509
** certificate. NULL with the reason in why[] (a sentence fragment). */
EVP_PKEY *jwt_pem_public_key(const char *pem, char *why, size_t why_len);

/* The algorithms a public key can verify (0: none), and a description of the key
** ("an RSA key of 2048 bits", "an EC key on P-256", "an Ed25519 key") in desc[]. */
unsigned jwt_pkey_algs(EVP_PKEY *pkey, char *desc, size_t desc_len);

/* One JWK (RFC 7517) object to a key: RSA (n, e), EC (crv P-256/P-384/P-521, x, y) and OKP
** (crv Ed25519/Ed448, x); "alg", when present, narrows the key to that one algorithm and
** must fit it; "use", when present, must be "sig". Symmetric ("oct") keys are refused: an
** HMAC secret never comes from a URL. Returns 0 and fills *key, or -1 with why[]. */
int jwt_key_from_jwk(json_t *jwk, jwt_key *key, char *why, size_t why_len);

/* Whether sig is a valid signature of data by key under alg (1) or not (0). The caller has
** checked that alg is one of key->algs. HMAC results are compared in constant time; ECDSA
** signatures arrive in JOSE form (r || s, fixed width) and are converted to DER. */
int jwt_verify(const jwt_key *key, jwt_alg alg, const unsigned char *data, size_t data_len,
               const unsigned char *sig, size_t sig_len);

/* ----------------------------------------------------------------------- key sets --- */

/* A reference-counted, immutable set of keys. */
typedef struct jwt_keyset {
  atomic_long refs;
  size_t count;
  jwt_key *keys;
} jwt_keyset;

void jwt_keyset_release(jwt_keyset *ks);
/* The key with this kid, or NULL. */
const jwt_key *jwt_keyset_find(const jwt_keyset *ks, const char *kid);

/* The JWK sets of jwkUrls, fetched at create and refreshed by a thread of the instance. */
typedef struct jwt_jwks jwt_jwks;

typedef struct jwt_jwks_options {
  int64_t refresh_ms;     /* period between successful refreshes */
  int64_t min_refresh_ms; /* unknown kid: refresh early, at most this often */
  int64_t timeout_ms;     /* one fetch, connection included */
} jwt_jwks_options;

/* Whether this build can fetch JWK sets (libcurl compiled in). */
int jwt_jwks_supported(void);
/* Fetches every URL once (logging through cfg), then starts the refresher thread. NULL
** only when out of memory or the thread cannot start (reason in why[]). `urls` is copied. */
jwt_jwks *jwt_jwks_start(const ph_config *cfg, const char *const *urls, size_t n_urls,
                         const jwt_jwks_options *opt, char *why, size_t why_len);
/* Stops and joins the thread, frees everything. NULL is fine. */
void jwt_jwks_stop(jwt_jwks *j);
/* The current key set with a reference taken (NULL when none was ever loaded); give it
** back with jwt_keyset_release(). */
jwt_keyset *jwt_jwks_acquire(jwt_jwks *j);
/* A token named a kid that no set holds: refresh early (rate-limited). Never blocks. */
void jwt_jwks_kick(jwt_jwks *j);
/* Process-wide set-up for libcurl, from the plugin's init/shutdown hooks. */
int jwt_jwks_global_init(void);
void jwt_jwks_global_cleanup(void);

#endif
