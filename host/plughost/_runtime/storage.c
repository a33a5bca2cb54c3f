/* Storages: the host's handles around configured storage instances, and the calls that
** reach them from Python and from other plugins. */
#include <stdlib.h>
#include <string.h>

#include "util.h"

ph_storage *rt_storage_register(rt_host *host, const char *name, const ph_storage_type *type,
                                void *self) {
  ph_storage *st = calloc(1, sizeof *st);
  if (!st) return NULL;
  char *label = rt_format("storage '%s' (%s)", name, type->id);
  rt_ctx_init(&st->ctx, RT_CTX_STORAGE, host, label);
  free(label);
  st->head.api = rt_host_api();
  st->head.host_private = &st->ctx;
  st->type = type;
  st->self = self;
  st->serialise = !(type->flags & PH_TYPE_THREAD_SAFE);
  pthread_mutex_init(&st->lock, NULL);

  pthread_mutex_lock(&host->lock);
  if (host->n_storages == host->cap_storages) {
    size_t cap = host->cap_storages ? host->cap_storages * 2 : 4;
    ph_storage **items = realloc(host->storages, cap * sizeof *items);
    char **names = items ? realloc(host->storage_names, cap * sizeof *names) : NULL;
    if (items) host->storages = items;
    if (!items || !names) {
      pthread_mutex_unlock(&host->lock);
      rt_ctx_clear(&st->ctx);
      free(st);
      return NULL;
    }
    host->storage_names = names;
    host->cap_storages = cap;
  }
  host->storages[host->n_storages] = st;
  host->storage_names[host->n_storages++] = rt_strdup(name);
  pthread_mutex_unlock(&host->lock);
  return st;
}

void rt_storage_close(ph_storage *st) {
  if (!st) return;
  rt_host *host = st->ctx.host;
  pthread_mutex_lock(&host->lock);
  for (size_t i = 0; i < host->n_storages; i++)
    if (host->storages[i] == st) {
      free(host->storage_names[i]);
      host->storages[i] = host->storages[host->n_storages - 1];
      host->storage_names[i] = host->storage_names[host->n_storages - 1];
      host->n_storages--;
      break;
    }
  pthread_mutex_unlock(&host->lock);
  if (st->type->close) st->type->close(st->self);
  pthread_mutex_destroy(&st->lock);
  rt_ctx_clear(&st->ctx);
  free(st);
}

ph_storage *rt_api_storage_lookup(const ph_config *node, const char *key, const char *name) {
  rt_host *host = rt_ctx_of(node)->host;
  ph_storage *found = NULL;
  int default_one = name && *name == '\0';
  if (default_one) name = RT_DEFAULT_STORAGE;
  if (host && name) {
    pthread_mutex_lock(&host->lock);
    for (size_t i = 0; i < host->n_storages; i++)
      if (strcmp(host->storage_names[i], name) == 0) found = host->storages[i];
    pthread_mutex_unlock(&host->lock);
  }
  if (found && (found->type->flags & PH_TYPE_MAY_BLOCK))
    rt_ctx_of(node)->storage_may_block = true; /* for PH_TYPE_BLOCKS_VIA_STORAGES */
  if (!found && default_one)
    rt_api_config_error(node, key,
                        "names no storage, and there is no default one: name a storage of "
                        "storages.yaml, or list memory.so (which provides the in-process "
                        "default, plugins.memory.storages.MemoryStorage) in plugins.yaml "
                        "before this plugin");
  else if (!found)
    rt_api_config_error(node, key,
                        "no storage named '%s': define it in storages.yaml before the "
                        "instances that use it, or fix the name",
                        name ? name : "(null)");
  return found;
}

static void call_init(ph_call *call, ph_storage *st) {
  memset(call, 0, sizeof *call);
  call->head.api = rt_host_api();
  call->head.host_private = &call->ctx;
  call->ctx.kind = RT_CTX_CALL;
  call->ctx.host = st->ctx.host;
  call->ctx.label = st->ctx.label; /* borrowed: never freed through this call */
}

/* Takes the call's error (or a generic one) as a malloc'd message. */
static char *call_take_error(ph_call *call, ph_storage *st, const char *op) {
  atomic_fetch_add_explicit(&st->failures, 1, memory_order_relaxed);
  const char *label = st->ctx.label ? st->ctx.label : "a storage";
  char *msg = call->ctx.error ? rt_format("%s: %s", label, call->ctx.error)
                              : rt_format("%s: %s failed without saying why", label, op);
  free(call->ctx.error);
  call->ctx.error = NULL;
  return msg;
}

static void call_done(ph_call *call) {
  free(call->ctx.error);
  free(call->value);
}

static void lock(ph_storage *st) {
  if (st->serialise) pthread_mutex_lock(&st->lock);
}
static void unlock(ph_storage *st) {
  if (st->serialise) pthread_mutex_unlock(&st->lock);
}

ph_status rt_api_call_value(ph_call *call, const void *data, size_t len) {
  uint8_t *copy = malloc(len + 1);
  if (!copy) {
    rt_ctx_set_error(&call->ctx, rt_format("out of memory copying a %zu-byte value", len));
    return PH_ERROR;
  }
  if (len) memcpy(copy, data, len);
  copy[len] = 0;
  free(call->value);
  call->value = copy;
  call->value_len = len;
  return PH_OK;
}

void rt_api_free_value(uint8_t *value) {
  free(value);
}

/* Each operation runs the hook and, on PH_ERROR, hands the message to *error. */
ph_status rt_storage_get(ph_storage *st, const uint8_t *key, size_t key_len, uint8_t **value,
                         size_t *value_len, char **error) {
  ph_call call;
  call_init(&call, st);
  *value = NULL;
  *value_len = 0;
  *error = NULL;
  lock(st);
  ph_status r = st->type->get(st->self, &call, key, key_len);
  unlock(st);
  if (r == PH_OK && !call.value) r = rt_api_call_value(&call, "", 0);
  if (r == PH_OK) {
    *value = call.value;
    *value_len = call.value_len;
    call.value = NULL;
  } else if (r != PH_NOT_FOUND) {
    r = PH_ERROR;
    *error = call_take_error(&call, st, "get");
  }
  call_done(&call);
  return r;
}

ph_status rt_storage_set(ph_storage *st, const uint8_t *key, size_t key_len, const uint8_t *value,
                         size_t value_len, int64_t ttl_ms, char **error) {
  ph_call call;
  call_init(&call, st);
  *error = NULL;
  lock(st);
  ph_status r = st->type->set(st->self, &call, key, key_len, value, value_len, ttl_ms);
  unlock(st);
  if (r != PH_OK) {
    r = PH_ERROR;
    *error = call_take_error(&call, st, "set");
  }
  call_done(&call);
  return r;
}

ph_status rt_storage_del(ph_storage *st, const uint8_t *key, size_t key_len, char **error) {
  ph_call call;
  call_init(&call, st);
  *error = NULL;
  lock(st);
  ph_status r = st->type->del(st->self, &call, key, key_len);
  unlock(st);
  if (r != PH_OK && r != PH_NOT_FOUND) {
    r = PH_ERROR;
    *error = call_take_error(&call, st, "delete");
  }
  call_done(&call);
  return r;
}

ph_status rt_storage_incr(ph_storage *st, const uint8_t *key, size_t key_len, int64_t delta,
                          int64_t ttl_ms, int64_t *value, int64_t *ttl_left_ms, char **error) {
  ph_call call;
  call_init(&call, st);
  *error = NULL;
  *value = 0;
  *ttl_left_ms = -1;
  lock(st);
  ph_status r = st->type->incr(st->self, &call, key, key_len, delta, ttl_ms, value, ttl_left_ms);
  unlock(st);
  if (r != PH_OK) {
    r = PH_ERROR;
    *error = call_take_error(&call, st, "incr");
  }
  call_done(&call);
  return r;
}

ph_status rt_storage_reset(ph_storage *st, char **error) {
  ph_call call;
  call_init(&call, st);
  *error = NULL;
  lock(st);
  ph_status r = st->type->reset(st->self, &call);
  unlock(st);
  if (r != PH_OK) {
    r = PH_ERROR;
    *error = call_take_error(&call, st, "reset");
  }
  call_done(&call);
  return r;
}

/* Plugin-side calls: the error goes to `who` (an exchange or config), if given. */
static ph_status forward_error(const void *who, char *msg) {
  if (who)
    rt_ctx_set_error(rt_ctx_of(who), msg);
  else
    free(msg);
  return PH_ERROR;
}

ph_status rt_api_storage_get(ph_storage *st, const void *who, const uint8_t *key, size_t key_len,
                             uint8_t **value, size_t *value_len) {
  char *err;
  ph_status r = rt_storage_get(st, key, key_len, value, value_len, &err);
  return r == PH_ERROR ? forward_error(who, err) : r;
}

ph_status rt_api_storage_set(ph_storage *st, const void *who, const uint8_t *key, size_t key_len,
                             const uint8_t *value, size_t value_len, int64_t ttl_ms) {
  char *err;
  ph_status r = rt_storage_set(st, key, key_len, value, value_len, ttl_ms, &err);
  return r == PH_ERROR ? forward_error(who, err) : r;
}

ph_status rt_api_storage_del(ph_storage *st, const void *who, const uint8_t *key, size_t key_len) {
  char *err;
  ph_status r = rt_storage_del(st, key, key_len, &err);
  return r == PH_ERROR ? forward_error(who, err) : r;
}

ph_status rt_api_storage_incr(ph_storage *st, const void *who, const uint8_t *key, size_t key_len,
                              int64_t delta, int64_t ttl_ms, int64_t *value, int64_t *ttl_left_ms) {
  char *err;
  ph_status r = rt_storage_incr(st, key, key_len, delta, ttl_ms, value, ttl_left_ms, &err);
  return r == PH_ERROR ? forward_error(who, err) : r;
}

uint64_t rt_storage_failures(const ph_storage *st) {
  return atomic_load_explicit(&st->failures, memory_order_relaxed);
}
