/* jwt_keys.c: JOSE algorithms, base64url, PEM and JWK keys and signature verification,
** all cryptography through OpenSSL 3's libcrypto. See jwt.c for the plugin's reference. */
#define _POSIX_C_SOURCE 200809L

#include "jwt_internal.h"
#include "phu.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JWT_MIN_RSA_BITS 2048

typedef enum jwt_family { FAM_HMAC, FAM_RSA, FAM_ECDSA, FAM_EDDSA } jwt_family;

static const struct {
  const char *name;
  jwt_family family;
  int hash_bits;       /* SHA-2 size; 0 for EdDSA (no separate digest) */
  size_t coord_len;    /* ECDSA: bytes of r and of s */
  const char *group;   /* ECDSA: OpenSSL group name of the curve */
} ALGS[JWT_ALG_COUNT] = {
    [JWT_HS256] = {"HS256", FAM_HMAC, 256, 0, NULL},
    [JWT_HS384] = {"HS384", FAM_HMAC, 384, 0, NULL},
    [JWT_HS512] = {"HS512", FAM_HMAC, 512, 0, NULL},
    [JWT_RS256] = {"RS256", FAM_RSA, 256, 0, NULL},
    [JWT_RS384] = {"RS384", FAM_RSA, 384, 0, NULL},
    [JWT_RS512] = {"RS512", FAM_RSA, 512, 0, NULL},
    [JWT_ES256] = {"ES256", FAM_ECDSA, 256, 32, "prime256v1"},
    [JWT_ES384] = {"ES384", FAM_ECDSA, 384, 48, "secp384r1"},
    [JWT_ES512] = {"ES512", FAM_ECDSA, 512, 66, "secp521r1"},
    [JWT_EDDSA] = {"EdDSA", FAM_EDDSA, 0, 0, NULL},
};

jwt_alg jwt_alg_parse(const char *name) {
  if (name == NULL) return JWT_ALG_UNKNOWN;
  for (int i = 0; i < JWT_ALG_COUNT; i++)
    if (strcmp(name, ALGS[i].name) == 0) return (jwt_alg)i;
  return JWT_ALG_UNKNOWN;
}

const char *jwt_alg_name(jwt_alg alg) {
  return alg >= 0 && alg < JWT_ALG_COUNT ? ALGS[alg].name : "?";
}

const char *jwt_alg_list(void) {
  return "HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512 or EdDSA";
}

size_t jwt_alg_hash_len(jwt_alg alg) {
  if (alg < 0 || alg >= JWT_ALG_COUNT || ALGS[alg].family != FAM_HMAC) return 0;
  return (size_t)ALGS[alg].hash_bits / 8;
}

static const EVP_MD *jwt_md(jwt_alg alg) {
  switch (ALGS[alg].hash_bits) {
    case 256:
      return EVP_sha256();
    case 384:
      return EVP_sha384();
    case 512:
      return EVP_sha512();
    default:
      return NULL;
  }
}

/* ------------------------------------------------------------------------ base64url --- */

static int b64url_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

unsigned char *jwt_b64url_decode(const char *in, size_t len, size_t *out_len, int allow_padding) {
  if (allow_padding && len % 4 == 0) {
    size_t pads = 0;
    while (len > 0 && pads < 2 && in[len - 1] == '=') {
      len--;
      pads++;
    }
  }
  if (len % 4 == 1) return NULL; /* 6 bits cannot make a byte */
  size_t n = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
  unsigned char *out = malloc(n + 1);
  if (out == NULL) return NULL;
  unsigned acc = 0;
  int bits = 0;
  size_t j = 0;
  for (size_t i = 0; i < len; i++) {
    int v = b64url_value((unsigned char)in[i]);
    if (v < 0) {
      free(out);
      return NULL;
    }
    acc = ((acc << 6) | (unsigned)v) & 0xfffu;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[j++] = (unsigned char)(acc >> bits);
    }
  }
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) { /* not the canonical encoding */
    free(out);
    return NULL;
  }
  out[j] = '\0';
  *out_len = j;
  return out;
}

/* --------------------------------------------------------------------------- JSON --- */

int jwt_json_depth_ok(const char *text, size_t len, int limit) {
  int depth = 0, in_string = 0;
  for (size_t i = 0; i < len; i++) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        i++; /* the escaped character cannot end the string */
      else if (c == '"')
        in_string = 0;
    } else if (c == '"') {
      in_string = 1;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return 0;
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
  return 1;
}

/* --------------------------------------------------------------------------- keys --- */

void jwt_key_clear(jwt_key *key) {
  if (key == NULL) return;
  free(key->kid);
  EVP_PKEY_free(key->pkey);
  if (key->secret != NULL) OPENSSL_cleanse(key->secret, key->secret_len);
  free(key->secret);
  memset(key, 0, sizeof *key);
}

/* Never prompt for a pass phrase (public keys and certificates have none). */
static int jwt_no_passphrase(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return 0;
}

EVP_PKEY *jwt_pem_public_key(const char *pem, char *why, size_t why_len) {
  if (strstr(pem, "PRIVATE KEY") != NULL) {
    snprintf(why, why_len,
             "holds a private key: configure the matching public key (\"BEGIN PUBLIC KEY\") "
             "or certificate instead, the gateway only verifies");
    return NULL;
  }
  if (strstr(pem, "-----BEGIN ") == NULL) {
    snprintf(why, why_len,
             "is not PEM text: give the public key (\"-----BEGIN PUBLIC KEY-----\" ...) or a "
             "certificate, e.g. as a YAML block scalar (key: |) or through ${VAR}");
    return NULL;
  }
  BIO *bio = BIO_new_mem_buf(pem, -1);
  if (bio == NULL) {
    snprintf(why, why_len, "could not be read: out of memory");
    return NULL;
  }
  EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, jwt_no_passphrase, NULL);
  if (pkey == NULL) {
    ERR_clear_error();
    (void)BIO_reset(bio);
    X509 *cert = PEM_read_bio_X509(bio, NULL, jwt_no_passphrase, NULL);
    if (cert != NULL) {
      pkey = X509_get_pubkey(cert);
      X509_free(cert);
    }
  }
  BIO_free(bio);
  ERR_clear_error();
  if (pkey == NULL)
    snprintf(why, why_len,
             "is not a readable PEM public key (\"BEGIN PUBLIC KEY\" or \"BEGIN RSA "
             "PUBLIC KEY\") or certificate (\"BEGIN CERTIFICATE\")");
  return pkey;
}

unsigned jwt_pkey_algs(EVP_PKEY *pkey, char *desc, size_t desc_len) {
  switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
      snprintf(desc, desc_len, "an RSA key of %d bits", EVP_PKEY_get_bits(pkey));
      return JWT_ALG_BIT(JWT_RS256) | JWT_ALG_BIT(JWT_RS384) | JWT_ALG_BIT(JWT_RS512);
    case EVP_PKEY_EC: {
      char group[64] = "";
      size_t glen = 0;
      if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                         &glen) != 1) {
        ERR_clear_error();
        snprintf(desc, desc_len, "an EC key on an unnamed curve");
        return 0;
      }
      for (int a = JWT_ES256; a <= JWT_ES512; a++)
        if (strcmp(group, ALGS[a].group) == 0) {
          static const char *const nist[] = {"P-256", "P-384", "P-521"};
          snprintf(desc, desc_len, "an EC key on %s", nist[a - JWT_ES256]);
          return JWT_ALG_BIT(a);
        }
      snprintf(desc, desc_len, "an EC key on curve %s", group);
      return 0;
    }
    case EVP_PKEY_ED25519:
      snprintf(desc, desc_len, "an Ed25519 key");
      return JWT_ALG_BIT(JWT_EDDSA);
    case EVP_PKEY_ED448:
      snprintf(desc, desc_len, "an Ed448 key");
      return JWT_ALG_BIT(JWT_EDDSA);
    default:
      snprintf(desc, desc_len, "a %s key",
               EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "unknown");
      return 0;
  }
}

/* A base64url JWK member into a BIGNUM (NULL: missing or malformed). */
static unsigned char *jwk_bytes(json_t *jwk, const char *name, size_t *len) {
  const char *s = json_string_value(json_object_get(jwk, name));
  if (s == NULL || *s == '\0') return NULL;
  return jwt_b64url_decode(s, strlen(s), len, 1);
}

static EVP_PKEY *jwk_rsa(json_t *jwk, char *why, size_t why_len) {
  size_t nlen = 0, elen = 0;
  unsigned char *n = jwk_bytes(jwk, "n", &nlen), *e = jwk_bytes(jwk, "e", &elen);
  EVP_PKEY *pkey = NULL;
  BIGNUM *bn_n = NULL, *bn_e = NULL;
  OSSL_PARAM_BLD *bld = NULL;
  OSSL_PARAM *params = NULL;
  EVP_PKEY_CTX *ctx = NULL;
  if (n == NULL || e == NULL || nlen == 0 || elen == 0 || elen > 8) {
    snprintf(why, why_len, "RSA key without valid base64url \"n\" and \"e\"");
    goto done;
  }
  bn_n = BN_bin2bn(n, (int)nlen, NULL);
  bn_e = BN_bin2bn(e, (int)elen, NULL);
  bld = OSSL_PARAM_BLD_new();
  if (bn_n == NULL || bn_e == NULL || bld == NULL ||
      !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
      !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) ||
      (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
      (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
      EVP_PKEY_fromdata_init(ctx) != 1 ||
      EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    snprintf(why, why_len, "RSA key OpenSSL does not accept");
    EVP_PKEY_free(pkey);
    pkey = NULL;
  }
done:
  free(n);
  free(e);
  BN_free(bn_n);
  BN_free(bn_e);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  EVP_PKEY_CTX_free(ctx);
  return pkey;
}

static EVP_PKEY *jwk_ec(json_t *jwk, char *why, size_t why_len) {
  static const struct {
    const char *crv;
    jwt_alg alg;
  } curves[] = {{"P-256", JWT_ES256}, {"P-384", JWT_ES384}, {"P-521", JWT_ES512}};
  const char *crv = json_string_value(json_object_get(jwk, "crv"));
  int found = -1;
  for (size_t i = 0; crv != NULL && i < sizeof curves / sizeof curves[0]; i++)
    if (strcmp(crv, curves[i].crv) == 0) found = (int)i;
  if (found < 0) {
    snprintf(why, why_len, "EC key whose \"crv\" is not P-256, P-384 or P-521");
    return NULL;
  }
  jwt_alg alg = curves[found].alg;
  size_t clen = ALGS[alg].coord_len, xlen = 0, ylen = 0;
  unsigned char *x = jwk_bytes(jwk, "x", &xlen), *y = jwk_bytes(jwk, "y", &ylen);
  unsigned char *point = NULL;
  EVP_PKEY *pkey = NULL;
  OSSL_PARAM_BLD *bld = NULL;
  OSSL_PARAM *params = NULL;
  EVP_PKEY_CTX *ctx = NULL, *check = NULL;
  if (x == NULL || y == NULL || xlen != clen || ylen != clen) {
    snprintf(why, why_len, "EC key whose \"x\" and \"y\" are not %zu bytes of base64url", clen);
    goto done;
  }
  point = malloc(1 + 2 * clen);
  if (point == NULL) {
    snprintf(why, why_len, "out of memory");
    goto done;
  }
  point[0] = 0x04; /* uncompressed point */
  memcpy(point + 1, x, clen);
  memcpy(point + 1 + clen, y, clen);
  bld = OSSL_PARAM_BLD_new();
  if (bld == NULL ||
      !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, ALGS[alg].group, 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * clen) ||
      (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
      (ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
      EVP_PKEY_fromdata_init(ctx) != 1 ||
      EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1 ||
      (check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL ||
      EVP_PKEY_public_check(check) != 1) {
    snprintf(why, why_len, "EC key whose point is not on curve %s", crv);
    EVP_PKEY_free(pkey);
    pkey = NULL;
  }
done:
  free(x);
  free(y);
  free(point);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_CTX_free(check);
  return pkey;
}

static EVP_PKEY *jwk_okp(json_t *jwk, char *why, size_t why_len) {
  const char *crv = json_string_value(json_object_get(jwk, "crv"));
  int type;
  size_t want;
  if (crv != NULL && strcmp(crv, "Ed25519") == 0) {
    type = EVP_PKEY_ED25519;
    want = 32;
  } else if (crv != NULL && strcmp(crv, "Ed448") == 0) {
    type = EVP_PKEY_ED448;
    want = 57;
  } else {
    snprintf(why, why_len, "OKP key whose \"crv\" is not Ed25519 or Ed448");
    return NULL;
  }
  size_t xlen = 0;
  unsigned char *x = jwk_bytes(jwk, "x", &xlen);
  EVP_PKEY *pkey = NULL;
  if (x == NULL || xlen != want)
    snprintf(why, why_len, "%s key whose \"x\" is not %zu bytes of base64url", crv, want);
  else if ((pkey = EVP_PKEY_new_raw_public_key(type, NULL, x, xlen)) == NULL)
    snprintf(why, why_len, "%s key OpenSSL does not accept", crv);
  free(x);
  return pkey;
}

int jwt_key_from_jwk(json_t *jwk, jwt_key *key, char *why, size_t why_len) {
  memset(key, 0, sizeof *key);
  if (!json_is_object(jwk)) {
    snprintf(why, why_len, "not a JSON object");
    return -1;
  }
  const char *kty = json_string_value(json_object_get(jwk, "kty"));
  json_t *use = json_object_get(jwk, "use");
  json_t *kid = json_object_get(jwk, "kid");
  json_t *alg = json_object_get(jwk, "alg");
  if (use != NULL && !(json_is_string(use) && strcmp(json_string_value(use), "sig") == 0)) {
    snprintf(why, why_len, "\"use\" is not \"sig\"");
    return -1;
  }
  if (kid != NULL && !json_is_string(kid)) {
    snprintf(why, why_len, "\"kid\" is not a string");
    return -1;
  }
  if (alg != NULL && !json_is_string(alg)) {
    snprintf(why, why_len, "\"alg\" is not a string");
    return -1;
  }
  EVP_PKEY *pkey = NULL;
  if (kty == NULL) {
    snprintf(why, why_len, "no \"kty\"");
  } else if (strcmp(kty, "RSA") == 0) {
    pkey = jwk_rsa(jwk, why, why_len);
  } else if (strcmp(kty, "EC") == 0) {
    pkey = jwk_ec(jwk, why, why_len);
  } else if (strcmp(kty, "OKP") == 0) {
    pkey = jwk_okp(jwk, why, why_len);
  } else if (strcmp(kty, "oct") == 0) {
    snprintf(why, why_len, "symmetric (\"oct\") keys are never taken from a URL");
  } else {
    snprintf(why, why_len, "unsupported \"kty\"");
  }
  ERR_clear_error();
  if (pkey == NULL) return -1;
  char desc[96];
  unsigned algs = jwt_pkey_algs(pkey, desc, sizeof desc);
  if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA && EVP_PKEY_get_bits(pkey) < JWT_MIN_RSA_BITS) {
    snprintf(why, why_len, "%s, shorter than %d bits", desc, JWT_MIN_RSA_BITS);
    EVP_PKEY_free(pkey);
    return -1;
  }
  if (alg != NULL) {
    jwt_alg a = jwt_alg_parse(json_string_value(alg));
    if (a == JWT_ALG_UNKNOWN || !(algs & JWT_ALG_BIT(a))) {
      snprintf(why, why_len, "\"alg\" does not fit %s", desc);
      EVP_PKEY_free(pkey);
      return -1;
    }
    algs = JWT_ALG_BIT(a);
  }
  if (kid != NULL) {
    key->kid = phu_strdup(json_string_value(kid));
    if (key->kid == NULL) {
      snprintf(why, why_len, "out of memory");
      EVP_PKEY_free(pkey);
      return -1;
    }
  }
  key->pkey = pkey;
  key->algs = algs;
  return 0;
}

/* ----------------------------------------------------------------- verification --- */

/* JOSE ECDSA signature (r || s, each coord_len bytes) to DER. NULL on bad input. */
static unsigned char *ecdsa_jose_to_der(const unsigned char *sig, size_t coord_len,
                                        size_t *der_len) {
  ECDSA_SIG *es = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(sig, (int)coord_len, NULL);
  BIGNUM *s = BN_bin2bn(sig + coord_len, (int)coord_len, NULL);
  unsigned char *der = NULL;
  if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return NULL;
  }
  /* es owns r and s now */
  int n = i2d_ECDSA_SIG(es, NULL);
  if (n > 0 && (der = malloc((size_t)n)) != NULL) {
    unsigned char *p = der;
    if (i2d_ECDSA_SIG(es, &p) != n) {
      free(der);
      der = NULL;
    } else {
      *der_len = (size_t)n;
    }
  }
  ECDSA_SIG_free(es);
  return der;
}

static int digest_verify(EVP_PKEY *pkey, const EVP_MD *md, const unsigned char *data,
                         size_t data_len, const unsigned char *sig, size_t sig_len) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, md, NULL, pkey) == 1 &&
           EVP_DigestVerify(ctx, sig, sig_len, data, data_len) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

int jwt_verify(const jwt_key *key, jwt_alg alg, const unsigned char *data, size_t data_len,
               const unsigned char *sig, size_t sig_len) {
  int ok = 0;
  if (alg < 0 || alg >= JWT_ALG_COUNT || !(key->algs & JWT_ALG_BIT(alg))) return 0;
  switch (ALGS[alg].family) {
    case FAM_HMAC: {
      unsigned char mac[EVP_MAX_MD_SIZE];
      unsigned int mac_len = 0;
      if (key->secret == NULL || key->secret_len == 0 || key->secret_len > INT_MAX) break;
      if (HMAC(jwt_md(alg), key->secret, (int)key->secret_len, data, data_len, mac, &mac_len) ==
          NULL)
        break;
      ok = sig_len == mac_len && CRYPTO_memcmp(mac, sig, mac_len) == 0;
      OPENSSL_cleanse(mac, sizeof mac);
      break;
    }
    case FAM_RSA:
      if (key->pkey != NULL && EVP_PKEY_get_base_id(key->pkey) == EVP_PKEY_RSA)
        ok = digest_verify(key->pkey, jwt_md(alg), data, data_len, sig, sig_len);
      break;
    case FAM_ECDSA: {
      size_t coord = ALGS[alg].coord_len, der_len = 0;
      if (key->pkey == NULL || sig_len != 2 * coord) break;
      unsigned char *der = ecdsa_jose_to_der(sig, coord, &der_len);
      if (der == NULL) break;
      ok = digest_verify(key->pkey, jwt_md(alg), data, data_len, der, der_len);
      free(der);
      break;
    }
    case FAM_EDDSA:
      if (key->pkey != NULL) ok = digest_verify(key->pkey, NULL, data, data_len, sig, sig_len);
      break;
  }
  ERR_clear_error();
  return ok;
}

/* ----------------------------------------------------------------------- key sets --- */

void jwt_keyset_release(jwt_keyset *ks) {
  if (ks == NULL) return;
  if (atomic_fetch_sub(&ks->refs, 1) != 1) return;
  for (size_t i = 0; i < ks->count; i++) jwt_key_clear(&ks->keys[i]);
  free(ks->keys);
  free(ks);
}

const jwt_key *jwt_keyset_find(const jwt_keyset *ks, const char *kid) {
  if (ks == NULL || kid == NULL) return NULL;
  for (size_t i = 0; i < ks->count; i++)
    if (ks->keys[i].kid != NULL && strcmp(ks->keys[i].kid, kid) == 0) return &ks->keys[i];
  return NULL;
}
