/*
** requestid: gives every request an id, like Seam's requestid plugin.
**
** Middleware plugins.requestid.middlewares.RequestIdMiddleware
**   headerName  string, default "X-Request-ID"  request/response header carrying the id
**   contextKey  string, default "requestId"     per-request local the id is stored under
**
** Request phase: keeps the incoming header's value when it is sane (1 to 200 printable
** ASCII characters, no leading or trailing space), otherwise makes a random UUID version 4
** from the kernel's CSPRNG (getrandom) and sets it on the request header. Either way the
** id goes into the locals under contextKey, and becomes the request's id for the host
** (ph_request_id_set): its error answers, failure logs and crash reports name the request
** by it. Response phase: copies the id from the locals to the response header. headerName
** is required single (ph_require_single_header): a request carrying it twice gets 400 from
** the host. No state changes after create:
** thread-safe, never blocks.
*/
#define _POSIX_C_SOURCE 200809L

#include "plugin.h"
#include "phu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define RID_MAX_LEN 200
#define RID_DEFAULT_HEADER "X-Request-ID"
#define RID_DEFAULT_CONTEXT_KEY "requestId"

typedef struct rid_middleware {
  char *header_name;
  char *context_key;
} rid_middleware;

static int rid_valid_header_name(const char *s) {
  if (*s == '\0') return 0;
  for (; *s != '\0'; s++)
    if (!phu_is_tchar((unsigned char)*s)) return 0;
  return 1;
}

/* A client-supplied id is kept only if it is 1..200 printable ASCII characters without
** leading or trailing space: safe to log, to forward and to echo in a response header. */
static int rid_sane(const char *s, size_t len) {
  if (len == 0 || len > RID_MAX_LEN) return 0;
  if (s[0] == ' ' || s[len - 1] == ' ') return 0;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return 0;
  return 1;
}

/* Writes a random UUID version 4 ("xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx", N in 8..b)
** and its NUL into out[37], from the per-thread CSPRNG pool (phu_random). Returns 0, or an
** errno value when the kernel gave no bytes. */
static int rid_uuid4(char out[37]) {
  static const char hex[] = "0123456789abcdef";
  uint8_t b[16];
  int err = phu_random(b, sizeof b);
  if (err != 0) return err;
  b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* variant 10xx */
  size_t j = 0;
  for (size_t i = 0; i < sizeof b; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[j++] = '-';
    out[j++] = hex[b[i] >> 4];
    out[j++] = hex[b[i] & 0x0f];
  }
  out[j] = '\0';
  return 0;
}

static void rid_destroy(void *self) {
  rid_middleware *m = self;
  if (m == NULL) return;
  free(m->header_name);
  free(m->context_key);
  free(m);
}

static ph_status rid_create(const ph_config *cfg, void **self) {
  const char *header_name, *context_key;
  if (ph_config_string(cfg, "headerName", RID_DEFAULT_HEADER, &header_name) != PH_OK)
    return PH_ERROR;
  if (!rid_valid_header_name(header_name))
    return ph_config_error(cfg, "headerName",
                           "'%s' is not a valid HTTP header name: use letters, digits and "
                           "!#$%%&'*+-.^_`|~ only, like \"X-Request-ID\"",
                           header_name);
  if (ph_config_string(cfg, "contextKey", RID_DEFAULT_CONTEXT_KEY, &context_key) != PH_OK)
    return PH_ERROR;
  if (context_key[0] == '\0')
    return ph_config_error(cfg, "contextKey",
                           "must not be empty: name the local the request id is stored "
                           "under, like \"requestId\"");
  /* the id names the request in every log and upstream: a client sends it once at most */
  if (ph_require_single_header(cfg, header_name) != PH_OK) return PH_ERROR;

  rid_middleware *m = calloc(1, sizeof *m);
  if (m == NULL) return ph_config_error(cfg, NULL, "out of memory");
  m->header_name = phu_strdup(header_name);
  m->context_key = phu_strdup(context_key);
  if (m->header_name == NULL || m->context_key == NULL) {
    rid_destroy(m);
    return ph_config_error(cfg, NULL, "out of memory");
  }
  *self = m;
  return PH_OK;
}

static ph_next rid_on_request(void *self, ph_exchange *ex) {
  const rid_middleware *m = self;
  char generated[37];
  const char *id = ph_header_get(ex, m->header_name);

  if (id == NULL || !rid_sane(id, strlen(id))) {
    int err = rid_uuid4(generated);
    if (err != 0) {
      ph_error(ex, "requestid: the kernel's random generator failed (errno %d)", err);
      return PH_NEXT_ERROR;
    }
    id = generated;
    if (ph_header_set(ex, m->header_name, id) != PH_OK) return PH_NEXT_ERROR;
  }
  /* `id` may point into the host's header store; local_set and request_id_set copy it. The
  ** host names the request by it in its error answers, failure logs and crash reports. */
  if (ph_local_set(ex, m->context_key, id, strlen(id)) != PH_OK) return PH_NEXT_ERROR;
  if (ph_request_id_set(ex, id) != PH_OK) return PH_NEXT_ERROR;
  return PH_NEXT_CONTINUE;
}

static ph_status rid_on_response(void *self, ph_exchange *ex) {
  const rid_middleware *m = self;
  size_t len = 0;
  const uint8_t *id = ph_local_get(ex, m->context_key, &len);
  /* Another element may have changed the local: only a sane value reaches the header. */
  if (id == NULL || !rid_sane((const char *)id, len)) return PH_OK;
  char buf[RID_MAX_LEN + 1];
  memcpy(buf, id, len);
  buf[len] = '\0';
  return ph_resp_header_set(ex, m->header_name, buf) == PH_OK ? PH_OK : PH_ERROR;
}

/* The options of a RequestIdMiddleware (Seam's names); the host checks every config
** against them before rid_create runs (which keeps its own checks of the values). */
static const ph_option requestid_options[] = {
    PH_OPTION(PH_OPTION_STRING, "headerName", "X-Request-ID",
              "the request and response header that carries the id"),
    PH_OPTION(PH_OPTION_STRING, "contextKey", "requestId",
              "the per-request local the id is stored under"),
    PH_OPTIONS_END};

static const ph_option no_options[] = {PH_OPTIONS_END};

static const ph_middleware_type requestid_middleware = {
    .size = sizeof(ph_middleware_type),
    .flags = PH_TYPE_THREAD_SAFE | PH_TYPE_STREAMS_BODIES,
    .id = "plugins.requestid.middlewares.RequestIdMiddleware",
    .description = "Keeps or generates a request id (UUIDv4) in a header and the locals",
    .create = rid_create,
    .destroy = rid_destroy,
    .on_request = rid_on_request,
    .on_response = rid_on_response,
    .options = requestid_options,
};

static const ph_middleware_type *const requestid_middlewares[] = {&requestid_middleware, NULL};

PH_PLUGIN_DEFINE(.name = "requestid", .version = "1.0.0",
                 .description =
                     "Request ids in a header and the per-request locals "
                     "(Seam's requestid)",
                 .middlewares = requestid_middlewares, .options = no_options);
