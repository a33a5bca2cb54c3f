/*
** helmet: security response headers, like Seam's helmet plugin (which configures Fiber's
** helmet middleware). Option names and defaults are Seam's.
**
** Middleware plugins.helmet.middlewares.HelmetMiddleware
**   option                     header                              default
**   xssProtection              X-XSS-Protection                    "0"
**   contentTypeNosniff         X-Content-Type-Options              "nosniff"
**   xFrameOptions              X-Frame-Options                     "SAMEORIGIN"
**   hstsMaxAge                 Strict-Transport-Security max-age   0 (no header)
**   hstsExcludeSubdomains      (leaves out includeSubDomains)      false
**   hstsPreloadEnabled         (adds preload)                      false
**   contentSecurityPolicy      Content-Security-Policy             "" (no header)
**   cspReportOnly              (sends the policy as Content-Security-Policy-Report-Only)
**                                                                  false
**   referrerPolicy             Referrer-Policy                     "no-referrer" (*)
**   permissionPolicy           Permissions-Policy                  "" (no header)
**   crossOriginEmbedderPolicy  Cross-Origin-Embedder-Policy        "require-corp"
**   crossOriginOpenerPolicy    Cross-Origin-Opener-Policy          "same-origin"
**   crossOriginResourcePolicy  Cross-Origin-Resource-Policy        "same-origin"
**   originAgentCluster         Origin-Agent-Cluster                "?1"
**   xdnsPrefetchControl        X-DNS-Prefetch-Control              "off"
**   xDownloadOptions           X-Download-Options                  "noopen"
**   xPermittedCrossDomain      X-Permitted-Cross-Domain-Policies   "none"
**   plughost's own options:
**   hstsAlways                 bool, default false: send Strict-Transport-Security on every
**                              response, not only on requests known to be HTTPS (see below)
**   override                   bool, default false: replace a header the action or upstream
**                              already set (by default their value is kept)
**
** (*) Seam's code sets the literal text "ReferrerPolicy" as the default, copied from a comment
** of Fiber whose real default is "no-referrer"; browsers ignore that invalid value, so
** plughost sends Fiber's intended "no-referrer".
**
** Values. A header option takes a string (or a number, as in xssProtection: 0). As in Seam,
** an empty string or a missing option means the default; plughost also accepts false, which
** sends no such header. Values are trimmed and checked at create: control characters (CR, LF)
** and non-ASCII bytes are refused, and enumerated headers take only their defined values,
** compared without regard to case: xssProtection "0", "1", "1; mode=block" or
** "1; report=<uri>"; contentTypeNosniff "nosniff"; xFrameOptions "DENY", "SAMEORIGIN" (or the
** obsolete "ALLOW-FROM <uri>", accepted with a warning); referrerPolicy a comma-separated list
** of the eight policies; crossOriginEmbedderPolicy "unsafe-none", "require-corp" or
** "credentialless", crossOriginOpenerPolicy "unsafe-none", "same-origin-allow-popups",
** "same-origin" or "noopener-allow-popups" (both optionally followed by "; report-to=...");
** crossOriginResourcePolicy "same-site", "same-origin" or "cross-origin";
** originAgentCluster "?1" or "?0"; xdnsPrefetchControl "on" or "off"; xDownloadOptions
** "noopen"; xPermittedCrossDomain "none", "master-only", "by-content-type", "by-ftp-filename",
** "all" or "none-this-response". hstsMaxAge is whole seconds, an integer or a duration
** ("365d", "8760h"), >= 0. The type declares its options (helmet_options, ABI 1.2): the host
** checks every config against them before create runs, so option names match without regard
** to case, as Seam's decoder does, and unknown options are configuration errors naming the key
** (with a suggestion).
**
** HSTS. As Fiber, Strict-Transport-Security ("max-age=N; includeSubDomains; preload") is sent
** only when hstsMaxAge > 0 and the request came over HTTPS. The exchange does not tell
** plugins the scheme of the connection, so "HTTPS" means what a TLS-terminating proxy says:
** X-Forwarded-Proto or X-Forwarded-Protocol "https" (first of a list), X-Forwarded-Ssl "on",
** X-Url-Scheme "https" or Forwarded "proto=https" (first element), from any peer (as Fiber
** does unless trusted proxies are configured). Trusting a spoofed header is harmless: browsers
** ignore the header on plain-HTTP responses. When plughost terminates TLS itself
** (server.tls), set hstsAlways: true.
**
** Response phase only, so the headers reach every answer the chain produces: the action's,
** an upstream's, an early answer of a later middleware, a 500 of a failing element. A header
** the response already has is kept unless override is true (Fiber sets them before the
** handler, which may overwrite them: the same precedence).
** Everything is validated and copied at create; the hooks only read it: thread-safe, never
** blocks.
*/
#define _POSIX_C_SOURCE 200809L

#include "plugin.h"
#include "phu.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- header options */

typedef enum helmet_check {
  HC_FREE,     /* any printable ASCII text */
  HC_ENUM,     /* one of `allowed` */
  HC_PARAMS,   /* one of `allowed`, optionally followed by "; parameters" */
  HC_LIST,     /* a comma-separated list of `allowed` */
  HC_XSS,      /* X-XSS-Protection syntax */
  HC_FRAME     /* X-Frame-Options */
} helmet_check;

typedef struct helmet_header {
  const char *key;    /* Seam's option name */
  const char *header; /* the response header */
  const char *dflt;   /* NULL: not sent unless configured */
  helmet_check check;
  const char *const *allowed; /* NULL-terminated, for HC_ENUM / HC_PARAMS / HC_LIST */
  const char *example;        /* shown in errors */
} helmet_header;

static const char *const helmet_nosniff[] = {"nosniff", NULL};
static const char *const helmet_referrer[] = {"no-referrer",
                                              "no-referrer-when-downgrade",
                                              "origin",
                                              "origin-when-cross-origin",
                                              "same-origin",
                                              "strict-origin",
                                              "strict-origin-when-cross-origin",
                                              "unsafe-url",
                                              NULL};
static const char *const helmet_coep[] = {"unsafe-none", "require-corp", "credentialless", NULL};
static const char *const helmet_coop[] = {"unsafe-none", "same-origin-allow-popups", "same-origin",
                                          "noopener-allow-popups", NULL};
static const char *const helmet_corp[] = {"same-site", "same-origin", "cross-origin", NULL};
static const char *const helmet_oac[] = {"?1", "?0", NULL};
static const char *const helmet_dns[] = {"on", "off", NULL};
static const char *const helmet_download[] = {"noopen", NULL};
static const char *const helmet_xpcdp[] = {
    "none", "master-only", "by-content-type", "by-ftp-filename", "all", "none-this-response", NULL};

enum {
  H_XSS,
  H_NOSNIFF,
  H_FRAME,
  H_CSP,
  H_REFERRER,
  H_PERMISSIONS,
  H_COEP,
  H_COOP,
  H_CORP,
  H_OAC,
  H_DNS,
  H_DOWNLOAD,
  H_XPCDP,
  H_COUNT
};

static const helmet_header helmet_headers[H_COUNT] = {
    [H_XSS] = {"xssProtection", "X-XSS-Protection", "0", HC_XSS, NULL, "\"0\""},
    [H_NOSNIFF] = {"contentTypeNosniff", "X-Content-Type-Options", "nosniff", HC_ENUM,
                   helmet_nosniff, "\"nosniff\""},
    [H_FRAME] = {"xFrameOptions", "X-Frame-Options", "SAMEORIGIN", HC_FRAME, NULL,
                 "\"DENY\" or \"SAMEORIGIN\""},
    [H_CSP] = {"contentSecurityPolicy", "Content-Security-Policy", NULL, HC_FREE, NULL,
               "\"default-src 'self'\""},
    [H_REFERRER] = {"referrerPolicy", "Referrer-Policy", "no-referrer", HC_LIST, helmet_referrer,
                    "\"no-referrer\" or \"strict-origin-when-cross-origin\""},
    [H_PERMISSIONS] = {"permissionPolicy", "Permissions-Policy", NULL, HC_FREE, NULL,
                       "\"geolocation=(), camera=()\""},
    [H_COEP] = {"crossOriginEmbedderPolicy", "Cross-Origin-Embedder-Policy", "require-corp",
                HC_PARAMS, helmet_coep, NULL},
    [H_COOP] = {"crossOriginOpenerPolicy", "Cross-Origin-Opener-Policy", "same-origin", HC_PARAMS,
                helmet_coop, NULL},
    [H_CORP] = {"crossOriginResourcePolicy", "Cross-Origin-Resource-Policy", "same-origin", HC_ENUM,
                helmet_corp, NULL},
    [H_OAC] = {"originAgentCluster", "Origin-Agent-Cluster", "?1", HC_ENUM, helmet_oac, NULL},
    [H_DNS] = {"xdnsPrefetchControl", "X-DNS-Prefetch-Control", "off", HC_ENUM, helmet_dns, NULL},
    [H_DOWNLOAD] = {"xDownloadOptions", "X-Download-Options", "noopen", HC_ENUM, helmet_download,
                    NULL},
    [H_XPCDP] = {"xPermittedCrossDomain", "X-Permitted-Cross-Domain-Policies", "none", HC_ENUM,
                 helmet_xpcdp, NULL},
};

/* ------------------------------------------------------------------- validation */

static int helmet_is_space(char c) {
  return c == ' ' || c == '\t';
}

/* Whether s[0..n) is one of `allowed` (case-insensitive). */
static int helmet_one_of(const char *s, size_t n, const char *const *allowed) {
  for (; *allowed != NULL; allowed++)
    if (phu_ieqn(s, n, *allowed)) return 1;
  return 0;
}

/* "a, b or c" for error messages, into buf. */
static const char *helmet_choices(const char *const *allowed, char *buf, size_t cap) {
  size_t at = 0, count = 0;
  while (allowed[count] != NULL) count++;
  buf[0] = '\0';
  for (size_t i = 0; i < count && at < cap; i++) {
    int n = snprintf(buf + at, cap - at, "%s\"%s\"",
                     i == 0           ? ""
                     : i + 1 == count ? " or "
                                      : ", ",
                     allowed[i]);
    if (n < 0) break;
    at += (size_t)n;
  }
  return buf;
}

/* X-XSS-Protection: "0", "1", "1; mode=block" or "1; report=<uri>". */
static int helmet_valid_xss(const char *s) {
  if (strcmp(s, "0") == 0 || strcmp(s, "1") == 0) return 1;
  if (s[0] != '1') return 0;
  s++;
  while (helmet_is_space(*s)) s++;
  if (*s++ != ';') return 0;
  while (helmet_is_space(*s)) s++;
  if (phu_ieq(s, "mode=block")) return 1;
  if (!phu_ieqn(s, 7, "report=")) return 0; /* stops at a shorter s's NUL */
  s += 7;
  if (*s == '\0') return 0;
  for (; *s != '\0'; s++)
    if (helmet_is_space(*s) || *s == ';') return 0;
  return 1;
}

/* Checks value (trimmed, non-empty) against the rules of header option h. Returns PH_OK or
** records a configuration error about key. `warned` is set for accepted-but-obsolete values. */
static ph_status helmet_check_value(const ph_config *cfg, const char *key, const helmet_header *h,
                                    const char *value, int *warned) {
  char choices[256];
  for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
    if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
      return ph_config_error(cfg, key,
                             "contains a control character (such as CR or LF), which could "
                             "split the %s header: remove it",
                             h->header);
    if (*p >= 0x80)
      return ph_config_error(cfg, key,
                             "contains a non-ASCII character: %s takes ASCII text only "
                             "(percent-encode URLs)",
                             h->header);
  }
  size_t len = strlen(value);
  switch (h->check) {
    case HC_FREE:
      return PH_OK;
    case HC_ENUM:
      if (helmet_one_of(value, len, h->allowed)) return PH_OK;
      break;
    case HC_PARAMS: {
      size_t n = strcspn(value, ";");
      while (n > 0 && helmet_is_space(value[n - 1])) n--;
      if (helmet_one_of(value, n, h->allowed)) return PH_OK;
      break;
    }
    case HC_LIST: {
      const char *p = value;
      int any = 0;
      for (;;) {
        while (helmet_is_space(*p)) p++;
        const char *start = p;
        while (*p != '\0' && *p != ',' && !helmet_is_space(*p)) p++;
        size_t n = (size_t)(p - start);
        while (helmet_is_space(*p)) p++;
        if (n == 0 || !helmet_one_of(start, n, h->allowed) || (*p != ',' && *p != '\0')) {
          any = -1;
          break;
        }
        any = 1;
        if (*p == '\0') break;
        p++;
      }
      if (any == 1) return PH_OK;
      return ph_config_error(cfg, key,
                             "'%s' is not a valid %s value: use one of %s, or a comma-separated "
                             "list of them (fallbacks for older browsers)",
                             value, h->header, helmet_choices(h->allowed, choices, sizeof choices));
    }
    case HC_XSS:
      if (helmet_valid_xss(value)) return PH_OK;
      return ph_config_error(cfg, key,
                             "'%s' is not a valid %s value: use \"0\" (recommended: the browsers' "
                             "XSS filter is gone or harmful), \"1\", \"1; mode=block\" or "
                             "\"1; report=<uri>\"",
                             value, h->header);
    case HC_FRAME:
      if (phu_ieq(value, "DENY") || phu_ieq(value, "SAMEORIGIN")) return PH_OK;
      if (len > 11 && phu_ieqn(value, 11, "ALLOW-FROM ")) {
        *warned = 1;
        return PH_OK;
      }
      return ph_config_error(
          cfg, key,
          "'%s' is not a valid %s value: use \"DENY\" or \"SAMEORIGIN\" (to allow "
          "chosen sites to frame pages, use contentSecurityPolicy "
          "\"frame-ancestors ...\")",
          value, h->header);
  }
  return ph_config_error(cfg, key, "'%s' is not a valid %s value: use %s", value, h->header,
                         helmet_choices(h->allowed, choices, sizeof choices));
}

/* --------------------------------------------------------------------- create */

typedef struct helmet_mw {
  const char *names[H_COUNT]; /* static header names */
  char *values[H_COUNT];      /* NULL: not sent */
  char *hsts;                 /* "max-age=..."; NULL: not sent */
  int hsts_always, override;
} helmet_mw;

static void helmet_destroy(void *self) {
  helmet_mw *m = self;
  if (m == NULL) return;
  for (size_t i = 0; i < H_COUNT; i++) free(m->values[i]);
  free(m->hsts);
  free(m);
}

/* Reads header option i into m->values[i] (NULL: not sent). */
static ph_status helmet_read_header(const ph_config *cfg, size_t i, helmet_mw *m) {
  const helmet_header *h = &helmet_headers[i];
  const char *key = h->key;
  const char *value = h->dflt;
  ph_config_kind kind = ph_config_kind(cfg, key);
  if (kind == PH_CONFIG_BOOL) {
    int on = 0;
    if (ph_config_bool(cfg, key, 0, &on) != PH_OK) return PH_ERROR;
    if (on)
      return ph_config_error(cfg, key,
                             "true is not a valid %s value: write the value%s%s, or false to "
                             "send no %s header",
                             h->header, h->example ? " like " : "", h->example ? h->example : "",
                             h->header);
    return PH_OK; /* false: no header */
  }
  if (kind != PH_CONFIG_MISSING && kind != PH_CONFIG_NULL) {
    const char *text = NULL;
    if (ph_config_string(cfg, key, "", &text) != PH_OK) return PH_ERROR;
    if (text[strspn(text, " \t")] != '\0') value = text; /* empty means the default */
  }
  if (value == NULL) return PH_OK;
  /* trimmed copy */
  while (helmet_is_space(*value)) value++;
  size_t len = strlen(value);
  while (len > 0 && helmet_is_space(value[len - 1])) len--;
  char *copy = malloc(len + 1);
  if (copy == NULL) return ph_config_error(cfg, NULL, "out of memory");
  memcpy(copy, value, len);
  copy[len] = '\0';
  m->values[i] = copy;
  int warned = 0;
  if (helmet_check_value(cfg, key, h, copy, &warned) != PH_OK) return PH_ERROR;
  if (warned)
    ph_log(cfg, PH_LOG_WARNING,
           "helmet: %s \"%s\": current browsers ignore ALLOW-FROM and then allow framing from "
           "anywhere; use contentSecurityPolicy \"frame-ancestors <origin>\" instead",
           key, copy);
  return PH_OK;
}

static ph_status helmet_read_bool(const ph_config *cfg, const char *key, int *out) {
  return ph_config_bool(cfg, key, 0, out);
}

static ph_status helmet_read_hsts(const ph_config *cfg, helmet_mw *m) {
  int64_t seconds = 0;
  const char *k = "hstsMaxAge";
  ph_config_kind kind = ph_config_kind(cfg, k);
  if (kind == PH_CONFIG_INT) {
    if (ph_config_int(cfg, k, 0, &seconds) != PH_OK) return PH_ERROR;
    if (seconds < 0)
      return ph_config_error(cfg, k,
                             "must be 0 (no Strict-Transport-Security) or a positive number of "
                             "seconds, like 31536000 (one year), not %" PRId64,
                             seconds);
  } else if (kind != PH_CONFIG_MISSING && kind != PH_CONFIG_NULL) {
    int64_t ms = 0;
    if (ph_config_duration_ms(cfg, k, 0, &ms) != PH_OK) return PH_ERROR;
    if (ms % 1000 != 0)
      return ph_config_error(cfg, k,
                             "must be a whole number of seconds, like 31536000 or \"365d\"");
    seconds = ms / 1000;
  }
  int exclude, preload;
  if (helmet_read_bool(cfg, "hstsExcludeSubdomains", &exclude) != PH_OK ||
      helmet_read_bool(cfg, "hstsPreloadEnabled", &preload) != PH_OK ||
      helmet_read_bool(cfg, "hstsAlways", &m->hsts_always) != PH_OK)
    return PH_ERROR;
  if (seconds == 0) return PH_OK;
  char buf[96];
  snprintf(buf, sizeof buf, "max-age=%" PRId64 "%s%s", seconds,
           exclude ? "" : "; includeSubDomains", preload ? "; preload" : "");
  m->hsts = phu_strdup(buf);
  if (m->hsts == NULL) return ph_config_error(cfg, NULL, "out of memory");
  if (preload && (exclude || seconds < 31536000))
    ph_log(cfg, PH_LOG_WARNING,
           "helmet: hstsPreloadEnabled is set, but the browsers' preload list accepts only "
           "max-age >= 31536000 with subdomains included (hstsMaxAge %" PRId64 "%s)",
           seconds, exclude ? ", hstsExcludeSubdomains true" : "");
  return PH_OK;
}

static ph_status helmet_create(const ph_config *cfg, void **self) {
  helmet_mw *m = calloc(1, sizeof *m);
  if (m == NULL) return ph_config_error(cfg, NULL, "out of memory");
  *self = m;
  /* Option names: the host checked them against helmet_options, and the getters find a key
  ** written in any case. */
  int report_only;
  if (helmet_read_bool(cfg, "cspReportOnly", &report_only) != PH_OK ||
      helmet_read_bool(cfg, "override", &m->override) != PH_OK)
    return PH_ERROR;
  for (size_t i = 0; i < H_COUNT; i++) {
    m->names[i] = helmet_headers[i].header;
    if (helmet_read_header(cfg, i, m) != PH_OK) return PH_ERROR;
  }
  if (report_only) {
    m->names[H_CSP] = "Content-Security-Policy-Report-Only";
    if (m->values[H_CSP] == NULL)
      ph_log(cfg, PH_LOG_WARNING,
             "helmet: cspReportOnly is true but contentSecurityPolicy is not set: no policy is "
             "sent");
  }
  return helmet_read_hsts(cfg, m);
}

/* ------------------------------------------------------------------------ hooks */

/* Whether the first element of the comma-separated value equals want (case-insensitive). */
static int helmet_first_is(const char *value, const char *want) {
  while (helmet_is_space(*value)) value++;
  size_t n = strcspn(value, ",");
  while (n > 0 && helmet_is_space(value[n - 1])) n--;
  return phu_ieqn(value, n, want);
}

/* Whether the first element of an RFC 7239 Forwarded value says proto=https. */
static int helmet_forwarded_https(const char *value) {
  const char *p = value;
  while (*p != '\0' && *p != ',') {
    while (helmet_is_space(*p) || *p == ';') p++;
    if (phu_ieqn(p, 6, "proto=")) {
      p += 6;
      int quoted = *p == '"';
      if (quoted) p++;
      if (!phu_ieqn(p, 5, "https")) return 0;
      char end = p[5];
      return quoted ? end == '"' : end == '\0' || end == ';' || end == ',' || helmet_is_space(end);
    }
    while (*p != '\0' && *p != ';' && *p != ',') p++;
  }
  return 0;
}

/* Whether a TLS-terminating proxy says the client's request was HTTPS. */
static int helmet_https(const ph_exchange *ex) {
  const char *v;
  if ((v = ph_header_get(ex, "X-Forwarded-Proto")) != NULL && helmet_first_is(v, "https")) return 1;
  if ((v = ph_header_get(ex, "X-Forwarded-Protocol")) != NULL && helmet_first_is(v, "https"))
    return 1;
  if ((v = ph_header_get(ex, "X-Forwarded-Ssl")) != NULL && helmet_first_is(v, "on")) return 1;
  if ((v = ph_header_get(ex, "X-Url-Scheme")) != NULL && helmet_first_is(v, "https")) return 1;
  if ((v = ph_header_get(ex, "Forwarded")) != NULL && helmet_forwarded_https(v)) return 1;
  return 0;
}

static ph_status helmet_put(const helmet_mw *m, ph_exchange *ex, const char *name,
                            const char *value) {
  if (!m->override && ph_resp_header_get(ex, name) != NULL) return PH_OK;
  return ph_resp_header_set(ex, name, value);
}

static ph_status helmet_on_response(void *self, ph_exchange *ex) {
  const helmet_mw *m = self;
  for (size_t i = 0; i < H_COUNT; i++)
    if (m->values[i] != NULL && helmet_put(m, ex, m->names[i], m->values[i]) != PH_OK)
      return PH_ERROR;
  if (m->hsts != NULL && (m->hsts_always || helmet_https(ex)) &&
      helmet_put(m, ex, "Strict-Transport-Security", m->hsts) != PH_OK)
    return PH_ERROR;
  return PH_OK;
}

/* ---------------------------------------------------------------------- schema */

/* The values of an enumerated header option: its header's values, and "" (as in Seam, an
** empty string means the default). helmet_check_value checks them again. */
static const char *const helmet_nosniff_choices[] = {"nosniff", "", NULL};
static const char *const helmet_corp_choices[] = {"same-site", "same-origin", "cross-origin", "",
                                                  NULL};
static const char *const helmet_oac_choices[] = {"?1", "?0", "", NULL};
static const char *const helmet_dns_choices[] = {"on", "off", "", NULL};
static const char *const helmet_download_choices[] = {"noopen", "", NULL};
static const char *const helmet_xpcdp_choices[] = {
    "none", "master-only", "by-content-type", "by-ftp-filename", "all", "none-this-response",
    "",     NULL};

/* A header option: text (or one of `choices`); false sends no such header, "" the default. */
#define HELMET_HEADER(name, dflt, description) \
  PH_OPTION(PH_OPTION_STRING, name, dflt, description, .flags = PH_OPTION_OR_FALSE)
#define HELMET_ENUM_HEADER(name, dflt, description, values) \
  PH_OPTION(PH_OPTION_ENUM, name, dflt, description, .flags = PH_OPTION_OR_FALSE, .choices = values)

/* The options of a HelmetMiddleware (Seam's names, plus hstsAlways and override). */
static const ph_option helmet_options[] = {
    HELMET_HEADER("xssProtection", "0",
                  "X-XSS-Protection: \"0\", \"1\", \"1; mode=block\" or \"1; report=<uri>\""),
    HELMET_ENUM_HEADER("contentTypeNosniff", "nosniff", "X-Content-Type-Options",
                       helmet_nosniff_choices),
    HELMET_HEADER("xFrameOptions", "SAMEORIGIN", "X-Frame-Options: \"DENY\" or \"SAMEORIGIN\""),
    /* A string, not a duration: HSTS ages run to two years and more (63072000) and are
    ** written in days ("365d"), beyond what the duration kind accepts; helmet_read_hsts
    ** checks the value (whole seconds, >= 0). */
    PH_OPTION(PH_OPTION_STRING, "hstsMaxAge", "0",
              "Strict-Transport-Security max-age: seconds or a duration like \"365d\" (0: no "
              "header); sent on HTTPS requests"),
    PH_OPTION(PH_OPTION_BOOL, "hstsExcludeSubdomains", "false",
              "leave includeSubDomains out of Strict-Transport-Security"),
    PH_OPTION(PH_OPTION_BOOL, "hstsPreloadEnabled", "false",
              "add preload to Strict-Transport-Security"),
    HELMET_HEADER("contentSecurityPolicy", "", "Content-Security-Policy (none when unset)"),
    PH_OPTION(PH_OPTION_BOOL, "cspReportOnly", "false",
              "send the policy as Content-Security-Policy-Report-Only"),
    HELMET_HEADER("referrerPolicy", "no-referrer",
                  "Referrer-Policy: a policy, or a comma-separated list of them"),
    HELMET_HEADER("permissionPolicy", "", "Permissions-Policy (none when unset)"),
    HELMET_HEADER("crossOriginEmbedderPolicy", "require-corp",
                  "Cross-Origin-Embedder-Policy: unsafe-none, require-corp or credentialless, "
                  "optionally with \"; report-to=...\""),
    HELMET_HEADER("crossOriginOpenerPolicy", "same-origin",
                  "Cross-Origin-Opener-Policy: unsafe-none, same-origin-allow-popups, "
                  "same-origin or noopener-allow-popups, optionally with \"; report-to=...\""),
    HELMET_ENUM_HEADER("crossOriginResourcePolicy", "same-origin", "Cross-Origin-Resource-Policy",
                       helmet_corp_choices),
    HELMET_ENUM_HEADER("originAgentCluster", "?1", "Origin-Agent-Cluster", helmet_oac_choices),
    HELMET_ENUM_HEADER("xdnsPrefetchControl", "off", "X-DNS-Prefetch-Control", helmet_dns_choices),
    HELMET_ENUM_HEADER("xDownloadOptions", "noopen", "X-Download-Options", helmet_download_choices),
    HELMET_ENUM_HEADER("xPermittedCrossDomain", "none", "X-Permitted-Cross-Domain-Policies",
                       helmet_xpcdp_choices),
    PH_OPTION(PH_OPTION_BOOL, "hstsAlways", "false",
              "send Strict-Transport-Security on every response, not only on HTTPS requests "
              "(when plughost terminates TLS itself)"),
    PH_OPTION(PH_OPTION_BOOL, "override", "false",
              "replace a header the action or upstream already set (by default theirs is "
              "kept)"),
    PH_OPTIONS_END};

/* The plugin's own config: it has no init, so it takes nothing. */
static const ph_option no_options[] = {PH_OPTIONS_END};

static const ph_middleware_type helmet_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_STREAMS_BODIES,
    .id = "plugins.helmet.middlewares.HelmetMiddleware",
    .description = "Security response headers (X-Frame-Options, HSTS, CSP, COOP, ...)",
    .create = helmet_create,
    .destroy = helmet_destroy,
    .on_response = helmet_on_response,
    .options = helmet_options,
};

static const ph_middleware_type *const helmet_middlewares[] = {&helmet_middleware, NULL};

PH_PLUGIN_DEFINE(.name = "helmet", .version = "1.0.0",
                 .description = "Security response headers (Seam's helmet)",
                 .middlewares = helmet_middlewares, .options = no_options);
