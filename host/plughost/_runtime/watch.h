/* What each thread of a worker is running, for reports when a plugin crashes or hangs.
**
** The chain runner marks the element it calls (rt_watch_enter / rt_watch_leave: a few
** relaxed stores, no clock, no lock). A crash handler (rt_watch_install_crash_report) reads
** the mark of the crashing thread and writes one line naming the signal, the element (its
** instance name, type id and plugin), the route and the request id to stderr, then lets the
** signal kill the process, so that its supervisor replaces it. A watchdog thread
** (rt_watch_start) notices a mark that has not changed for longer than a limit, writes the
** same line and ends the process with RT_WATCH_HANG_EXIT. Both read memory only: they are
** async-signal-safe, and never free or allocate. */
#ifndef PLUGHOST_WATCH_H
#define PLUGHOST_WATCH_H

#include "chain.h"

/* The exit status of a worker the watchdog ended because an element hung. */
#define RT_WATCH_HANG_EXIT 70

/* Marks `inst` as running on this thread for `ex` (may be NULL); returns the mark to pass
** to rt_watch_leave (NULL when the thread could not be given a slot: then nothing is
** watched on it). */
void *rt_watch_enter(const rt_instance *inst, const ph_exchange *ex);
void rt_watch_leave(void *mark);
/* The same around a plugin hook outside the chain (init, create, destroy, shutdown): `what`
** ("the create hook of middleware 'A' (…)") must live until rt_watch_leave_hook. */
void *rt_watch_enter_hook(const char *what);
void rt_watch_leave_hook(void *mark);

/* Installs the crash report for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT (with an
** alternate signal stack for this thread). Returns 0, or -1 when sigaction failed. */
int rt_watch_install_crash_report(void);

/* Starts the watchdog thread: an element that runs longer than limit_ms ends the process.
** Returns 0, or -1 (already started, or the thread could not be made). */
int rt_watch_start(long limit_ms);

/* Sets the plugin name reported for `inst` (copied; "" for Python elements). */
void rt_instance_set_plugin(rt_instance *inst, const char *plugin);

#endif
