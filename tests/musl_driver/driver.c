/*
** plughost musl driver: the host's C runtime (host/plughost/_runtime/ sources), built with the
** musl toolchain into a plain C program, drives plugins built for musl through the same ABI
** the Python host uses. The Python half of plughost cannot run on musl without an Alpine
** userland; this is the C half, so it proves that the runtime and the plugins work on musl.
**
**   plughost_musl_driver PLUGIN_DIR
**
** PLUGIN_DIR holds memory.so, requestid.so, static.so, session.so, limiter.so and csrf.so.
** The driver loads each the way plughost's loader does (dlopen, the entry's fixed header,
** the .note.plughost platform note, the type tables, init), then:
**   - memory storage: set/get, incr with TTL (and its expiry), del, reset, a config error;
**   - requestid middleware + static action through rt_serve, the one-call request path the
**     gateway uses: X-Request-ID generated (36 characters) or kept, static response;
**   - a stand-in for a Python element (plughost_py_call) mixed into a native chain, and a
**     failing element answering 500 with the request id;
**   - session, limiter and csrf over the memory storage: one chain each, headers come out;
**   - destroy every instance, close the storages, shut the plugins down, free the host.
** One line per check on stdout ("ok    ..." or "FAIL  ..."); exit status 0 when every check
** passed, 1 otherwise (2 for usage errors). Run it under valgrind to check memory too.
*/
#define _GNU_SOURCE 1

#include <dlfcn.h>
#include <elf.h>
#include <inttypes.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chain.h"
#include "runtime.h"
#include "util.h" /* the host functions (rt_api_*) the table points to */

/* The platform this driver is built for, as the plugins' notes spell it (plugin.h's own
** macros for this are private to the header). */
#if defined(__x86_64__)
#define DRIVER_ARCH "x86_64"
#elif defined(__aarch64__)
#define DRIVER_ARCH "aarch64"
#else
#define DRIVER_ARCH "unknown"
#endif
#if defined(__GLIBC__)
#define DRIVER_LIBC "gnu" /* notes say gnu-<version>; any version at most ours loads */
#else
#define DRIVER_LIBC "musl" /* Linux without __GLIBC__: musl defines no macro of its own */
#endif

/* ------------------------------------------------------------------------ checks --- */

static int n_checks, n_failed;

static void ok(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void ok(const char *what, const char *fmt, ...) {
  va_list ap;
  n_checks++;
  printf("ok    %s: ", what);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

static void fail(const char *what, const char *fmt, ...) {
  va_list ap;
  n_checks++;
  n_failed++;
  printf("FAIL  %s: ", what);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

/* Stops the run: later checks depend on this one. */
static void fatal(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fatal(const char *what, const char *fmt, ...) {
  va_list ap;
  n_checks++;
  n_failed++;
  printf("FAIL  %s: ", what);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\nmusl driver: stopped after %d of %d check(s) failed\n", n_failed, n_checks);
  exit(1);
}

static int streq(const char *a, const char *b) {
  return a != NULL && b != NULL && !strcmp(a, b);
}

/* ------------------------------------------- stand-ins for the cffi (Python) side --- */
/* _build_runtime.py gives the runtime two callbacks written in Python: the log sink passed
** to rt_host_new() and the element caller passed to rt_set_py_call(). These are their C
** stand-ins, with the same names and signatures. */

static int n_log_lines;

static void plughost_log_sink(int level, const char *label, const char *message) {
  n_log_lines++;
  fprintf(stderr, "log   %d [%s] %s\n", level, label, message);
}

/* What a "Python" element is here: a counter of its calls, and a switch to fail. */
typedef struct py_element {
  int requests, responses;
} py_element;

static int plughost_py_call(void *handle, int phase, ph_exchange *ex) {
  py_element *el = handle;
  if (phase == RT_PHASE_REQUEST) {
    el->requests++;
    if (rt_api_header_get(ex, PH_REQUEST, "X-Fail") != NULL) {
      rt_api_error(ex, "the python element was asked to fail");
      return PH_NEXT_ERROR;
    }
    return rt_api_local_set(ex, "py.seen", "yes", 3) == PH_OK ? PH_NEXT_CONTINUE : PH_NEXT_ERROR;
  }
  el->responses++;
  size_t len = 0;
  const uint8_t *rid = rt_api_local_get(ex, "requestId", &len);
  char buf[256];
  snprintf(buf, sizeof buf, "%.*s", (int)(rid ? len : 4), rid ? (const char *)rid : "none");
  return rt_api_header_set(ex, PH_RESPONSE, "X-Py-Element", buf);
}

/* ---------------------------------------------------------------- config trees --- */
/* The Python host builds these from YAML (cconfig.py); here they are built by hand. */

static ph_config *cfg_root(rt_host *host, const char *label, const char *path) {
  ph_config *c = rt_config_new_root(host, label, "driver.c", path, 1);
  if (c == NULL) fatal("config", "out of memory");
  return c;
}
static ph_config *cfg_add(ph_config *parent, const char *key, ph_config_kind kind) {
  ph_config *n = rt_config_add(parent, key, kind, 1);
  if (n == NULL) fatal("config", "out of memory");
  return n;
}
static void cfg_str(ph_config *parent, const char *key, const char *value) {
  rt_config_set_string(cfg_add(parent, key, PH_CONFIG_STRING), value);
}
static void cfg_int(ph_config *parent, const char *key, int64_t value) {
  char text[32];
  snprintf(text, sizeof text, "%" PRId64, value);
  rt_config_set_int(cfg_add(parent, key, PH_CONFIG_INT), value, text);
}

/* --------------------------------------------------------------------- plugins --- */

typedef struct plugin {
  char *path;
  void *dl;
  const ph_plugin *entry;
  ph_config *config;
  void *state;
} plugin;

#define MAX_PLUGINS 16
static plugin plugins[MAX_PLUGINS];
static size_t n_plugins;

/* Finds the .note.plughost text of the object holding `addr`, by walking the program
** headers of every loaded object (PT_NOTE segments), as a loader that trusts nothing but
** the ELF file would. */
typedef struct note_search {
  uintptr_t addr;
  char text[256];
  int found;
} note_search;

static int note_cb(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  note_search *s = data;
  int mine = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_LOAD && s->addr >= lo && s->addr < lo + ph->p_memsz) mine = 1;
  }
  if (!mine) return 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE) continue;
    const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
    const unsigned char *end = p + ph->p_memsz;
    size_t align = ph->p_align > 4 ? ph->p_align : 4;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)(const void *)p;
      const char *name = (const char *)(p + sizeof *nh);
      const char *desc = name + ((nh->n_namesz + align - 1) & ~(align - 1));
      if (nh->n_namesz == 9 && !memcmp(name, "plughost", 9) && nh->n_type == PH_NOTE_TYPE) {
        snprintf(s->text, sizeof s->text, "%.*s", (int)nh->n_descsz, desc);
        s->found = 1;
        return 1;
      }
      p = (const unsigned char *)desc + ((nh->n_descsz + align - 1) & ~(align - 1));
    }
  }
  return 1; /* the right object, without a note */
}

/* The value of `key` in a note "k=v k2=v2", copied into out. */
static const char *note_field(const char *note, const char *key, char *out, size_t cap) {
  size_t klen = strlen(key);
  for (const char *p = note; p && *p;) {
    if (!strncmp(p, key, klen) && p[klen] == '=') {
      const char *v = p + klen + 1;
      size_t n = strcspn(v, " ");
      snprintf(out, cap, "%.*s", (int)n, v);
      return out;
    }
    p = strchr(p, ' ');
    if (p) p++;
  }
  snprintf(out, cap, "?");
  return out;
}

static int check_id(const char *id, const char *plugin_name, const char *kind) {
  char prefix[128];
  snprintf(prefix, sizeof prefix, "plugins.%s.%s.", plugin_name, kind);
  return id != NULL && !strncmp(id, prefix, strlen(prefix)) && id[strlen(prefix)] != '\0';
}

static size_t count_types(const void *const *array) {
  size_t n = 0;
  while (array && array[n]) n++;
  return n;
}

static plugin *load_plugin(rt_host *host, const char *dir, const char *file) {
  char what[64], path[4096];
  snprintf(what, sizeof what, "load %s", file);
  snprintf(path, sizeof path, "%s/%s", dir, file);
  if (n_plugins == MAX_PLUGINS) fatal(what, "too many plugins");

  void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (dl == NULL) fatal(what, "the dynamic loader refused it: %s", dlerror());
  const ph_plugin *p = dlsym(dl, PH_ENTRY_SYMBOL);
  if (p == NULL) fatal(what, "no %s symbol", PH_ENTRY_SYMBOL);

  /* The fixed header first, before anything else in the entry is trusted. */
  if (p->header.magic != PH_PLUGIN_MAGIC)
    fatal(what, "magic %#010x, not %#010x", p->header.magic, PH_PLUGIN_MAGIC);
  if (p->header.abi_major != rt_abi_major() || p->header.abi_minor > rt_abi_minor())
    fatal(what, "built for ABI %u.%u, the runtime implements %d.%d", p->header.abi_major,
          p->header.abi_minor, rt_abi_major(), rt_abi_minor());
  if (p->header.size < offsetof(ph_plugin, storages) + sizeof(void *))
    fatal(what, "entry size %u is below ABI 1.0's", p->header.size);

  /* The platform note: the plugin must be built for this very C library and CPU. */
  note_search ns = {.addr = (uintptr_t)p};
  dl_iterate_phdr(note_cb, &ns);
  if (!ns.found) fatal(what, "no .note.plughost note in a PT_NOTE segment");
  char libc[32], arch[32];
  note_field(ns.text, "libc", libc, sizeof libc);
  note_field(ns.text, "arch", arch, sizeof arch);
  size_t family = strcspn(libc, "-");
  if (family != strlen(DRIVER_LIBC) || strncmp(libc, DRIVER_LIBC, family) != 0 ||
      strcmp(arch, DRIVER_ARCH) != 0)
    fatal(what, "note says libc=%s arch=%s, this driver is libc=%s arch=%s", libc, arch,
          DRIVER_LIBC, DRIVER_ARCH);

  /* Type tables: sizes, ids and required hooks, as the loader checks them. */
  for (size_t i = 0; p->middlewares && p->middlewares[i]; i++) {
    const ph_middleware_type *t = p->middlewares[i];
    if (t->size < sizeof *t || !check_id(t->id, p->name, "middlewares") || !t->create)
      fatal(what, "bad middleware table %s", t->id ? t->id : "(no id)");
  }
  for (size_t i = 0; p->actions && p->actions[i]; i++) {
    const ph_action_type *t = p->actions[i];
    if (t->size < sizeof *t || !check_id(t->id, p->name, "actions") || !t->create || !t->handle)
      fatal(what, "bad action table %s", t->id ? t->id : "(no id)");
  }
  for (size_t i = 0; p->storages && p->storages[i]; i++) {
    const ph_storage_type *t = p->storages[i];
    if (t->size < sizeof *t || !check_id(t->id, p->name, "storages") || !t->create || !t->close ||
        !t->get || !t->set || !t->del || !t->incr || !t->reset)
      fatal(what, "bad storage table %s", t->id ? t->id : "(no id)");
  }

  plugin *pl = &plugins[n_plugins++];
  pl->path = strdup(path);
  pl->dl = dl;
  pl->entry = p;
  char label[128], cpath[128];
  snprintf(label, sizeof label, "plugin %s", p->name);
  snprintf(cpath, sizeof cpath, "plugins.%s.config", p->name);
  pl->config = cfg_root(host, label, cpath);
  if (rt_call_init(p, pl->config, &pl->state) != PH_OK)
    fatal(what, "init failed: %s", rt_config_error(pl->config));
  ok(what,
     "plugin %s %s, ABI %u.%u, note \"%s\", %zu middleware(s) %zu action(s) "
     "%zu storage(s), initialised",
     p->name, p->version ? p->version : "", p->header.abi_major, p->header.abi_minor, ns.text,
     count_types((const void *const *)p->middlewares), count_types((const void *const *)p->actions),
     count_types((const void *const *)p->storages));
  return pl;
}

/* The type table with `id` in any loaded plugin, and the plugin that declares it. */
static const void *find_type(const char *id, const char *kind, plugin **owner) {
  for (size_t i = 0; i < n_plugins; i++) {
    const ph_plugin *p = plugins[i].entry;
    *owner = &plugins[i];
    if (!strcmp(kind, "middleware"))
      for (size_t j = 0; p->middlewares && p->middlewares[j]; j++)
        if (streq(p->middlewares[j]->id, id)) return p->middlewares[j];
    if (!strcmp(kind, "action"))
      for (size_t j = 0; p->actions && p->actions[j]; j++)
        if (streq(p->actions[j]->id, id)) return p->actions[j];
    if (!strcmp(kind, "storage"))
      for (size_t j = 0; p->storages && p->storages[j]; j++)
        if (streq(p->storages[j]->id, id)) return p->storages[j];
  }
  fatal(id, "no loaded plugin declares this %s type", kind);
  return NULL;
}

/* -------------------------------------------------------------------- instances --- */

typedef struct instance {
  rt_instance *rt;
  void (*destroy)(void *);
  void *self;
  ph_config *config;
} instance;

#define MAX_INSTANCES 32
static instance instances[MAX_INSTANCES];
static size_t n_instances;

typedef struct storage {
  ph_storage *st;
  ph_config *config;
} storage;

#define MAX_STORAGES 8
static storage storages[MAX_STORAGES];
static size_t n_storages;

/* Creates a middleware or action instance called `name` from `config` (consumed). NULL
** when create refused the configuration; *error then holds the message. */
static rt_instance *create_instance(rt_host *host, const char *kind, const char *id,
                                    const char *name, ph_config *config, char *error,
                                    size_t error_cap) {
  plugin *owner = NULL;
  const void *type = find_type(id, kind, &owner);
  ph_status (*create)(const ph_config *, void **);
  void (*destroy)(void *);
  uint32_t flags;
  if (!strcmp(kind, "middleware")) {
    const ph_middleware_type *t = type;
    create = t->create, destroy = t->destroy, flags = t->flags;
  } else {
    const ph_action_type *t = type;
    create = t->create, destroy = t->destroy, flags = t->flags;
  }
  (void)host;
  rt_config_set_plugin_state(config, owner->state);
  void *self = NULL;
  if (rt_call_create(create, config, &self) != PH_OK) {
    snprintf(error, error_cap, "%s",
             rt_config_error(config) ? rt_config_error(config) : "create failed without a reason");
    rt_call_destroy(destroy, self);
    rt_config_free(config);
    return NULL;
  }
  char label[256];
  snprintf(label, sizeof label, "%s '%s' (%s)", kind, name, id);
  rt_instance *inst =
      rt_instance_new(!strcmp(kind, "middleware") ? RT_MIDDLEWARE : RT_ACTION, type, self, label,
                      (flags & PH_TYPE_THREAD_SAFE) != 0, (flags & PH_TYPE_MAY_BLOCK) != 0);
  if (inst == NULL || n_instances == MAX_INSTANCES) fatal(label, "cannot allocate an instance");
  instances[n_instances++] = (instance){inst, destroy, self, config};
  return inst;
}

static rt_instance *must_create(rt_host *host, const char *kind, const char *id, const char *name,
                                ph_config *config) {
  char error[512];
  rt_instance *inst = create_instance(host, kind, id, name, config, error, sizeof error);
  char what[128];
  snprintf(what, sizeof what, "create %s '%s'", kind, name);
  if (inst == NULL) fatal(what, "%s", error);
  ok(what, "%s", id);
  return inst;
}

static ph_storage *create_storage(rt_host *host, const char *id, const char *name,
                                  ph_config *config, char *error, size_t error_cap) {
  plugin *owner = NULL;
  const ph_storage_type *t = find_type(id, "storage", &owner);
  rt_config_set_plugin_state(config, owner->state);
  void *self = NULL;
  if (rt_call_create(t->create, config, &self) != PH_OK) {
    snprintf(error, error_cap, "%s",
             rt_config_error(config) ? rt_config_error(config) : "create failed without a reason");
    rt_call_destroy(t->close, self);
    rt_config_free(config);
    return NULL;
  }
  ph_storage *st = rt_storage_register(host, name, t, self);
  if (st == NULL || n_storages == MAX_STORAGES) fatal(name, "cannot register the storage");
  storages[n_storages++] = (storage){st, config};
  return st;
}

/* ------------------------------------------------------------------- requests --- */

typedef struct header {
  const char *name, *value;
} header;

/* A chain of one middleware and a static action named `action` answering 200. */
static rt_chain *then_ok(rt_host *host, rt_instance *middleware, const char *action) {
  char path[96];
  snprintf(path, sizeof path, "actions.%s.config", action);
  ph_config *c = cfg_root(host, "action 'Ok'", path);
  rt_instance *okact =
      must_create(host, "action", "plugins.static.actions.StaticAction", action, c);
  rt_chain *chain = rt_chain_new(&middleware, 1, okact);
  if (chain == NULL) fatal("chain", "out of memory");
  return chain;
}

/* Runs one request through `chain` with rt_serve, the gateway's one-call path. The caller
** frees out->ex with rt_exchange_free. */
static void serve(rt_host *host, const rt_chain *chain, const char *method, const char *path,
                  const header *headers, rt_result *out) {
  char packed[2048];
  size_t len = 0;
  for (const header *h = headers; h && h->name; h++) {
    size_t nl = strlen(h->name) + 1, vl = strlen(h->value) + 1;
    if (len + nl + vl > sizeof packed) fatal("serve", "headers too long");
    memcpy(packed + len, h->name, nl);
    len += nl;
    memcpy(packed + len, h->value, vl);
    len += vl;
  }
  rt_serve(host, chain, method, path, "", "10.1.2.3", packed, len, NULL, 0, NULL, 0, out);
  if (out->ex == NULL) fatal("serve", "rt_serve built no exchange: %s", out->failure);
  if (out->outcome != RT_DONE) fatal("serve", "unexpected upstream outcome");
}

static const char *resp(const rt_result *r, const char *name) {
  return rt_api_header_get(r->ex, PH_RESPONSE, name);
}

/* The value of cookie `name` in a Set-Cookie header, copied into out ("" if absent). */
static const char *cookie_value(const char *set_cookie, const char *name, char *out, size_t cap) {
  size_t n = strlen(name);
  out[0] = '\0';
  if (set_cookie && !strncmp(set_cookie, name, n) && set_cookie[n] == '=')
    snprintf(out, cap, "%.*s", (int)strcspn(set_cookie + n + 1, ";"), set_cookie + n + 1);
  return out;
}

static int is_uuid(const char *s) {
  if (s == NULL || strlen(s) != 36) return 0;
  for (int i = 0; i < 36; i++) {
    int dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !strchr("0123456789abcdef", s[i])) return 0;
  }
  return s[14] == '4';
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {}
}

/* ---------------------------------------------------------------------- checks --- */

static void check_memory_storage(rt_host *host, ph_storage *st) {
  const char *what = "memory storage";
  char *err = NULL;
  uint8_t *value = NULL;
  size_t len = 0;
  const uint8_t k[] = "greeting", v[] = "hello from musl";

  if (rt_storage_set(st, k, sizeof k - 1, v, sizeof v - 1, 0, &err) != PH_OK)
    fail(what, "set failed: %s", err);
  else if (rt_storage_get(st, k, sizeof k - 1, &value, &len, &err) != PH_OK)
    fail(what, "get after set failed: %s", err ? err : "not found");
  else if (len != sizeof v - 1 || memcmp(value, v, len) != 0)
    fail(what, "get returned %zu byte(s) '%.*s'", len, (int)len, (const char *)value);
  else
    ok("storage set/get", "'%.*s' round trip", (int)len, (const char *)value);
  rt_free(value), value = NULL;
  rt_free(err), err = NULL;

  /* incr with TTL: starts from 0 with the TTL, keeps it, expires. */
  const uint8_t c[] = "counter";
  int64_t n1 = 0, n2 = 0, n3 = 0, left1 = 0, left2 = 0, left3 = 0;
  ph_status s1 = rt_storage_incr(st, c, sizeof c - 1, 1, 150, &n1, &left1, &err);
  ph_status s2 = rt_storage_incr(st, c, sizeof c - 1, 5, 150, &n2, &left2, &err);
  const uint8_t t[] = "short-lived";
  rt_storage_set(st, t, sizeof t - 1, v, sizeof v - 1, 100, &err);
  sleep_ms(250);
  ph_status s3 = rt_storage_incr(st, c, sizeof c - 1, 1, 0, &n3, &left3, &err);
  ph_status s4 = rt_storage_get(st, t, sizeof t - 1, &value, &len, &err);
  if (s1 != PH_OK || s2 != PH_OK || s3 != PH_OK)
    fail("storage incr with TTL", "incr failed: %s", err ? err : "?");
  else if (n1 != 1 || n2 != 6 || left1 <= 0 || left1 > 150 || left2 <= 0 || left2 > left1)
    fail("storage incr with TTL",
         "got %" PRId64 " (ttl %" PRId64 "ms) then %" PRId64 " (ttl %" PRId64
         "ms); want 1 then 6 with a TTL counting down from 150ms",
         n1, left1, n2, left2);
  else if (n3 != 1 || left3 != -1)
    fail("storage incr with TTL",
         "after expiry incr gave %" PRId64 " (ttl %" PRId64 "), want 1 without TTL (-1)", n3,
         left3);
  else
    ok("storage incr with TTL",
       "1 then 6 (ttl %" PRId64 "ms, %" PRId64
       "ms), expired, "
       "then 1 without TTL",
       left1, left2);
  if (s4 == PH_NOT_FOUND)
    ok("storage set with TTL", "the key expired after 100ms");
  else
    fail("storage set with TTL", "get after expiry returned status %d", (int)s4);
  rt_free(value), value = NULL;
  rt_free(err), err = NULL;

  ph_status d1 = rt_storage_del(st, k, sizeof k - 1, &err);
  ph_status d2 = rt_storage_del(st, k, sizeof k - 1, &err);
  ph_status g = rt_storage_get(st, k, sizeof k - 1, &value, &len, &err);
  if (d1 == PH_OK && d2 == PH_NOT_FOUND && g == PH_NOT_FOUND)
    ok("storage del", "deleted once, then not found");
  else
    fail("storage del", "del %d, del again %d, get %d (want 0, 1, 1)", d1, d2, g);
  rt_free(value), value = NULL;
  rt_free(err), err = NULL;

  rt_storage_set(st, k, sizeof k - 1, v, sizeof v - 1, 0, &err);
  ph_status r = rt_storage_reset(st, &err);
  g = rt_storage_get(st, k, sizeof k - 1, &value, &len, &err);
  if (r == PH_OK && g == PH_NOT_FOUND)
    ok("storage reset", "every key gone");
  else
    fail("storage reset", "reset %d, get afterwards %d", r, g);
  rt_free(value), value = NULL;
  rt_free(err), err = NULL;

  /* A bad configuration: the error names the key. */
  ph_config *bad = cfg_root(host, "storage 'Bad' (plugins.memory.storages.MemoryStorage)",
                            "storages.Bad.config");
  cfg_str(bad, "maxEntries", "lots");
  char error[512];
  ph_storage *none = create_storage(host, "plugins.memory.storages.MemoryStorage", "Bad", bad,
                                    error, sizeof error);
  if (none == NULL && strstr(error, "storages.Bad.config.maxEntries") != NULL)
    ok("storage config error", "%s", error);
  else
    fail("storage config error", "maxEntries: lots was %s (%s)",
         none ? "accepted" : "refused without naming the key", none ? "" : error);
  (void)what;
}

static void check_requestid_static(rt_host *host) {
  ph_config *c = cfg_root(host, "middleware 'ReqID'", "middlewares.ReqID.config");
  rt_instance *rid = must_create(host, "middleware",
                                 "plugins.requestid.middlewares.RequestIdMiddleware", "ReqID", c);
  c = cfg_root(host, "action 'Hello'", "actions.Hello.config");
  cfg_int(c, "status", 201);
  cfg_str(c, "body", "hello from musl");
  ph_config *hs = cfg_add(c, "headers", PH_CONFIG_MAP);
  cfg_str(hs, "X-Static", "yes");
  rt_instance *hello =
      must_create(host, "action", "plugins.static.actions.StaticAction", "Hello", c);

  /* A "Python" element between the native ones. */
  static py_element py;
  rt_instance *pyinst =
      rt_instance_new(RT_PY_MIDDLEWARE, NULL, &py, "middleware 'Py' (python stand-in)", 1, 0);
  rt_instance *mws[] = {rid, pyinst};
  rt_chain *chain = rt_chain_new(mws, 2, hello);
  rt_chain_set_route(chain, "HelloRoute");

  rt_result r;
  serve(host, chain, "GET", "/hello", (const header[]){{NULL, NULL}}, &r);
  const char *id = resp(&r, "X-Request-ID");
  const char *req_id = rt_api_header_get(r.ex, PH_REQUEST, "X-Request-ID");
  if (r.status == 201 && r.body_len == 15 && !memcmp(r.body, "hello from musl", 15) &&
      streq(resp(&r, "X-Static"), "yes"))
    ok("static action", "201 'hello from musl', X-Static: yes");
  else
    fail("static action", "status %d body '%.*s'", r.status, (int)r.body_len, r.body);
  if (is_uuid(id) && streq(id, req_id))
    ok("requestid middleware", "generated X-Request-ID %s (%zu chars) on request and response", id,
       strlen(id));
  else
    fail("requestid middleware",
         "X-Request-ID response '%s' request '%s': want one UUIDv4 "
         "(36 chars) on both",
         id ? id : "(none)", req_id ? req_id : "(none)");
  const char *pyh = resp(&r, "X-Py-Element");
  size_t sl = 0;
  const uint8_t *seen = rt_api_local_get(r.ex, "py.seen", &sl);
  if (py.requests == 1 && py.responses == 1 && streq(pyh, id) && seen && sl == 3)
    ok("python element stand-in",
       "called through plughost_py_call in both phases, read the "
       "requestid local");
  else
    fail("python element stand-in", "requests %d responses %d header '%s'", py.requests,
         py.responses, pyh ? pyh : "(none)");
  rt_result_pack(&r);
  if (r.headers_len > 0 && memmem(r.headers, r.headers_len,
                                  "content-length\0"
                                  "15",
                                  18))
    ok("packed response", "%zu bytes of packed headers, content-length 15", r.headers_len);
  else
    fail("packed response", "no content-length 15 in %zu packed bytes", r.headers_len);
  rt_exchange_free(r.ex);

  serve(host, chain, "GET", "/hello",
        (const header[]){{"x-request-id", "client-id-42"}, {NULL, NULL}}, &r);
  if (streq(resp(&r, "X-Request-ID"), "client-id-42"))
    ok("requestid keeps a sane id", "client-id-42 echoed");
  else
    fail("requestid keeps a sane id", "got '%s'", resp(&r, "X-Request-ID"));
  rt_exchange_free(r.ex);

  /* A failing element: 500 with a JSON body carrying the request id, the response phase
  ** still runs for the middlewares already passed. */
  serve(host, chain, "GET", "/hello",
        (const header[]){{"X-Request-ID", "failing-1"}, {"X-Fail", "1"}, {NULL, NULL}}, &r);
  const char *label = NULL;
  const char *why = rt_exchange_failure(r.ex, &label);
  if (r.status == 500 && memmem(r.body, r.body_len, "\"requestId\":\"failing-1\"", 23) &&
      streq(resp(&r, "X-Request-ID"), "failing-1") && strstr(why, "asked to fail"))
    ok("failing element", "500 %.*s (%s: %s)", (int)r.body_len, r.body, label, why);
  else
    fail("failing element", "status %d body '%.*s' failure '%s'", r.status, (int)r.body_len, r.body,
         why);
  rt_exchange_free(r.ex);

  rt_chain_free(chain);
  rt_instance_free(pyinst);
}

static void check_session(rt_host *host, ph_storage *st) {
  ph_config *c = cfg_root(host, "middleware 'Session'", "middlewares.Session.config");
  cfg_str(c, "storage", "Store");
  rt_instance *ses = must_create(host, "middleware",
                                 "plugins.session.middlewares.LoadSessionMiddleware", "Session", c);
  c = cfg_root(host, "action 'Ok'", "actions.Ok.config");
  cfg_str(c, "body", "ok");
  rt_instance *okact =
      must_create(host, "action", "plugins.static.actions.StaticAction", "SessionOk", c);
  rt_chain *chain = rt_chain_new(&ses, 1, okact);
  rt_result r;
  /* a new session: an id sent back, nothing stored */
  serve(host, chain, "GET", "/session", (const header[]){{NULL, NULL}}, &r);
  char id[80], key[128], cookie[128];
  cookie_value(resp(&r, "Set-Cookie"), "session_id", id, sizeof id);
  snprintf(key, sizeof key, "session:%s", id);
  uint8_t *value = NULL;
  size_t len = 0;
  char *err = NULL;
  ph_status g = rt_storage_get(st, (const uint8_t *)key, strlen(key), &value, &len, &err);
  int new_ok = r.status == 200 && strlen(id) == 32 && g == PH_NOT_FOUND;
  rt_free(value);
  rt_free(err);
  rt_exchange_free(r.ex);
  /* the application logs the user in: data under that id; the next request rotates it */
  err = NULL;
  ph_status s =
      rt_storage_set(st, (const uint8_t *)key, strlen(key), (const uint8_t *)"u=1", 3, 60000, &err);
  rt_free(err);
  snprintf(cookie, sizeof cookie, "session_id=%s", id);
  serve(host, chain, "GET", "/session", (const header[]){{"Cookie", cookie}, {NULL, NULL}}, &r);
  char moved[80], new_key[128];
  cookie_value(resp(&r, "Set-Cookie"), "session_id", moved, sizeof moved);
  snprintf(new_key, sizeof new_key, "session:%s", moved);
  value = NULL;
  err = NULL;
  ph_status g2 = rt_storage_get(st, (const uint8_t *)new_key, strlen(new_key), &value, &len, &err);
  if (new_ok && s == PH_OK && r.status == 200 && strlen(moved) == 32 && strcmp(moved, id) != 0 &&
      g2 == PH_OK)
    ok("session middleware",
       "new session %s sent and not stored; after a login rotated to %s, "
       "stored as %zu byte(s)",
       id, moved, len);
  else
    fail("session middleware", "new %d (get %d), set %d, status %d Set-Cookie '%s', get %d %s",
         new_ok, g, s, r.status, resp(&r, "Set-Cookie") ? resp(&r, "Set-Cookie") : "(none)", g2,
         err ? err : "");
  rt_free(value);
  rt_free(err);
  rt_exchange_free(r.ex);
  rt_chain_free(chain);
}

static void check_limiter(rt_host *host) {
  ph_config *c = cfg_root(host, "middleware 'Limiter'", "middlewares.Limiter.config");
  cfg_str(c, "storage", "Store");
  cfg_int(c, "maxConnections", 2);
  cfg_str(c, "expiration", "1h"); /* windows are wall-clock aligned: no rollover mid-test */
  rt_instance *lim = must_create(host, "middleware",
                                 "plugins.limiter.middlewares.LimiterMiddleware", "Limiter", c);
  rt_chain *chain = then_ok(host, lim, "LimitedOk");
  int statuses[3];
  char remaining[3][16], retry[16] = "";
  for (int i = 0; i < 3; i++) {
    rt_result r;
    serve(host, chain, "GET", "/limited", (const header[]){{NULL, NULL}}, &r);
    statuses[i] = r.status;
    const char *rem = resp(&r, "X-RateLimit-Remaining");
    snprintf(remaining[i], sizeof remaining[i], "%s", rem ? rem : "-");
    if (i == 2 && resp(&r, "Retry-After"))
      snprintf(retry, sizeof retry, "%s", resp(&r, "Retry-After"));
    rt_exchange_free(r.ex);
  }
  if (statuses[0] == 200 && statuses[1] == 200 && statuses[2] == 429 && *retry &&
      streq(remaining[0], "1") && streq(remaining[1], "0"))
    ok("limiter middleware", "200, 200, 429 (Retry-After %s), X-RateLimit-Remaining 1, 0", retry);
  else
    fail("limiter middleware", "statuses %d %d %d, remaining %s %s, Retry-After '%s'", statuses[0],
         statuses[1], statuses[2], remaining[0], remaining[1], retry);
  rt_chain_free(chain);
}

static void check_csrf(rt_host *host) {
  ph_config *c = cfg_root(host, "middleware 'Csrf'", "middlewares.Csrf.config");
  cfg_str(c, "storage", "Store");
  rt_instance *csrf =
      must_create(host, "middleware", "plugins.csrf.middlewares.CSRFMiddleware", "Csrf", c);
  rt_chain *chain = then_ok(host, csrf, "CsrfOk");
  rt_result r;
  serve(host, chain, "GET", "/form", (const header[]){{NULL, NULL}}, &r);
  char token[80], cookie[128];
  cookie_value(resp(&r, "Set-Cookie"), "csrf_token", token, sizeof token);
  int get_status = r.status;
  rt_exchange_free(r.ex);

  serve(host, chain, "POST", "/form", (const header[]){{NULL, NULL}}, &r);
  int forged = r.status;
  rt_exchange_free(r.ex);

  snprintf(cookie, sizeof cookie, "csrf_token=%s", token);
  serve(host, chain, "POST", "/form",
        (const header[]){{"Cookie", cookie}, {"X-Csrf-Token", token}, {NULL, NULL}}, &r);
  int posted = r.status;
  rt_exchange_free(r.ex);
  if (get_status == 200 && strlen(token) == 32 && forged == 403 && posted == 200)
    ok("csrf middleware", "GET issued token %s, POST without it 403, POST with it 200", token);
  else
    fail("csrf middleware", "GET %d token '%s', POST without %d, POST with %d", get_status, token,
         forged, posted);
  rt_chain_free(chain);
}

static void check_cors(rt_host *host) {
  ph_config *c = cfg_root(host, "middleware 'Cors'", "middlewares.Cors.config");
  cfg_str(c, "allowOrigins", "https://app.example");
  rt_instance *cors =
      must_create(host, "middleware", "plugins.cors.middlewares.CORSMiddleware", "Cors", c);
  rt_chain *chain = then_ok(host, cors, "CorsOk");
  rt_result r;
  serve(host, chain, "OPTIONS", "/api",
        (const header[]){{"Origin", "https://app.example"},
                         {"Access-Control-Request-Method", "POST"},
                         {NULL, NULL}},
        &r);
  int preflight = r.status;
  char allowed[128];
  snprintf(allowed, sizeof allowed, "%s",
           resp(&r, "Access-Control-Allow-Origin") ? resp(&r, "Access-Control-Allow-Origin") : "-");
  rt_exchange_free(r.ex);
  serve(host, chain, "GET", "/api",
        (const header[]){{"Origin", "https://evil.example"}, {NULL, NULL}}, &r);
  int other = r.status;
  int refused = resp(&r, "Access-Control-Allow-Origin") == NULL;
  rt_exchange_free(r.ex);
  if (preflight == 204 && streq(allowed, "https://app.example") && other == 200 && refused)
    ok("cors middleware", "preflight 204 allowing %s; another origin 200 without CORS headers",
       allowed);
  else
    fail("cors middleware", "preflight %d allow '%s', other origin %d (refused %d)", preflight,
         allowed, other, refused);
  rt_chain_free(chain);
}

static void check_helmet(rt_host *host) {
  ph_config *c = cfg_root(host, "middleware 'Helmet'", "middlewares.Helmet.config");
  rt_instance *helmet =
      must_create(host, "middleware", "plugins.helmet.middlewares.HelmetMiddleware", "Helmet", c);
  rt_chain *chain = then_ok(host, helmet, "HelmetOk");
  rt_result r;
  serve(host, chain, "GET", "/page", (const header[]){{NULL, NULL}}, &r);
  const char *nosniff = resp(&r, "X-Content-Type-Options");
  const char *frame = resp(&r, "X-Frame-Options");
  if (r.status == 200 && streq(nosniff, "nosniff") && streq(frame, "SAMEORIGIN"))
    ok("helmet middleware", "200 with X-Content-Type-Options %s, X-Frame-Options %s", nosniff,
       frame);
  else
    fail("helmet middleware", "status %d, nosniff '%s', frame '%s'", r.status,
         nosniff ? nosniff : "-", frame ? frame : "-");
  rt_exchange_free(r.ex);
  rt_chain_free(chain);
}

/* The logger writes from its own thread; the line is checked after shutdown (destroy
** flushes), by check_logger_output(). */
static char logger_file[256];

static void check_logger(rt_host *host) {
  snprintf(logger_file, sizeof logger_file, "/tmp/plughost-musl-driver-%ld.log", (long)getpid());
  unlink(logger_file);
  ph_config *c = cfg_root(host, "middleware 'Logger'", "middlewares.Logger.config");
  cfg_str(c, "format", "${method} ${path} ${status}");
  cfg_str(c, "output", logger_file);
  rt_instance *logger =
      must_create(host, "middleware", "plugins.logger.middlewares.LoggerMiddleware", "Logger", c);
  rt_chain *chain = then_ok(host, logger, "LoggedOk");
  rt_result r;
  serve(host, chain, "GET", "/logged", (const header[]){{NULL, NULL}}, &r);
  int status = r.status;
  rt_exchange_free(r.ex);
  rt_chain_free(chain);
  if (status != 200) fail("logger middleware", "status %d", status);
}

static void check_logger_output(void) {
  char line[256] = "";
  FILE *f = fopen(logger_file, "r");
  if (f != NULL) {
    if (fgets(line, sizeof line, f) == NULL) line[0] = '\0';
    fclose(f);
  }
  unlink(logger_file);
  line[strcspn(line, "\n")] = '\0';
  if (streq(line, "GET /logged 200"))
    ok("logger middleware", "its writer thread wrote '%s' (flushed at destroy)", line);
  else
    fail("logger middleware", "%s holds '%s', not 'GET /logged 200'", logger_file, line);
}

/* httpfw's HttpAction asks for an upstream request (RT_UPSTREAM): the driver checks the
** directive, then answers it as the host would and runs the rest of the chain. */
static void check_httpfw(rt_host *host) {
  ph_config *c = cfg_root(host, "action 'Forward'", "actions.Forward.config");
  cfg_str(c, "upstreamEndpoint", "http://127.0.0.1:9/api");
  rt_instance *fw = must_create(host, "action", "plugins.httpfw.actions.HttpAction", "Forward", c);
  rt_chain *chain = rt_chain_new(NULL, 0, fw);
  /* (a string break after each \0: "\0" "203" is not the octal escape "\020" "3") */
  char packed[] =
      "host\0"
      "gw.example\0"
      "x-forwarded-for\0"
      "203.0.113.7\0";
  rt_result r;
  rt_serve(host, chain, "POST", "/users", "q=1", "10.1.2.3", packed, sizeof packed - 1,
           (const uint8_t *)"data", 4, NULL, 0, &r);
  if (r.ex == NULL) fatal("httpfw", "rt_serve built no exchange: %s", r.failure);
  char url[256] = "", xff[128] = "", host_header[128] = "";
  int asked = r.outcome == RT_UPSTREAM && r.ex->has_upstream;
  if (asked) {
    snprintf(url, sizeof url, "%s", r.ex->upstream_url);
    const char *v = rt_api_header_get(r.ex, PH_REQUEST, "X-Forwarded-For");
    snprintf(xff, sizeof xff, "%s", v ? v : "-");
    v = rt_api_header_get(r.ex, PH_REQUEST, "X-Forwarded-Host");
    snprintf(host_header, sizeof host_header, "%s", v ? v : "-");
    char answer[] = "content-type\0text/plain\0";
    rt_result done;
    rt_serve_upstream(chain, r.ex, r.passed, 200, answer, sizeof answer - 1,
                      (const uint8_t *)"from upstream", 13, NULL, &done);
    if (done.status != 200 || done.body_len != 13) asked = 0;
  }
  rt_exchange_free(r.ex);
  if (asked && !strncmp(url, "http://127.0.0.1:9/api", 22) && strstr(url, "q=1") &&
      streq(xff, "203.0.113.7, 10.1.2.3") && streq(host_header, "gw.example"))
    ok("httpfw action", "upstream %s, X-Forwarded-For '%s', X-Forwarded-Host %s; answered 200", url,
       xff, host_header);
  else
    fail("httpfw action", "outcome %d url '%s' X-Forwarded-For '%s' X-Forwarded-Host '%s'",
         r.outcome, url, xff, host_header);
  rt_chain_free(chain);
}

/* ------------------------------------------------------------------------ main --- */

int main(int argc, char **argv) {
  if (argc != 2 || argv[1][0] == '-') {
    fprintf(stderr,
            "usage: %s PLUGIN_DIR\n(runs plughost's C runtime against the plugins in "
            "PLUGIN_DIR: memory, requestid, static, session, limiter, csrf, cors, helmet, logger, "
            "httpfw)\n",
            argv[0]);
    return 2;
  }
  const char *dir = argv[1];
  const ph_host_api *api = rt_host_api();
  if (api->size == rt_host_api_size() && api->size >= PH_HOST_API_SIZE_1_0)
    ok("runtime", "ABI %d.%d, host table %u bytes, built for libc=%s arch=%s", rt_abi_major(),
       rt_abi_minor(), api->size, DRIVER_LIBC, DRIVER_ARCH);
  else
    fatal("runtime", "host table of %u bytes", api->size);

  rt_host *host = rt_host_new(plughost_log_sink);
  if (host == NULL) fatal("runtime", "rt_host_new failed");
  rt_set_py_call(plughost_py_call);

  static const char *const files[] = {"memory.so",  "requestid.so", "static.so", "session.so",
                                      "limiter.so", "csrf.so",      "cors.so",   "helmet.so",
                                      "logger.so",  "httpfw.so"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) load_plugin(host, dir, files[i]);

  ph_config *c = cfg_root(host, "storage 'Store'", "storages.Store.config");
  cfg_int(c, "maxEntries", 1000);
  char error[512];
  ph_storage *st = create_storage(host, "plugins.memory.storages.MemoryStorage", "Store", c, error,
                                  sizeof error);
  if (st == NULL) fatal("create storage 'Store'", "%s", error);
  ok("create storage 'Store'", "plugins.memory.storages.MemoryStorage, maxEntries 1000");

  check_memory_storage(host, st);
  check_requestid_static(host);
  check_session(host, st);
  check_limiter(host);
  check_csrf(host);
  check_cors(host);
  check_helmet(host);
  check_logger(host);
  check_httpfw(host);

  /* Shutdown, in the host's order: instances newest first, storages, plugins in reverse. */
  size_t destroyed = n_instances, closed = n_storages, shut = n_plugins;
  while (n_instances > 0) {
    instance *in = &instances[--n_instances];
    rt_call_destroy(in->destroy, in->self);
    rt_instance_free(in->rt);
    rt_config_free(in->config);
  }
  while (n_storages > 0) {
    storage *s = &storages[--n_storages];
    rt_storage_close(s->st);
    rt_config_free(s->config);
  }
  int unloaded = 1;
  while (n_plugins > 0) {
    plugin *p = &plugins[--n_plugins];
    rt_call_shutdown(p->entry, p->state);
    rt_config_free(p->config);
    if (dlclose(p->dl) != 0) unloaded = 0;
    free(p->path);
  }
  rt_host_free(host);
  check_logger_output();
  if (unloaded)
    ok("shutdown",
       "%zu instance(s) destroyed, %zu storage(s) closed, %zu plugin(s) shut "
       "down and unloaded, host freed",
       destroyed, closed, shut);
  else
    fail("shutdown", "dlclose failed: %s", dlerror());

  if (n_failed) {
    printf("musl driver: %d of %d check(s) FAILED\n", n_failed, n_checks);
    return 1;
  }
  printf("musl driver: all %d checks passed (%d log line(s) from plugins)\n", n_checks,
         n_log_lines);
  return 0;
}
