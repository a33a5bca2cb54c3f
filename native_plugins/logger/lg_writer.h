/*
** lg_writer: where the logger's lines go, without ever blocking a request on I/O. The
** response hook hands each formatted line to a bounded in-memory queue (a mutex held for a
** few instructions); a thread owned by the writer writes the queued lines in batches to
** stdout, stderr or a file (opened non-blocking; a FIFO without a reader is opened when one
** appears). A full queue drops lines and counts them; the thread reports the count in the
** output. Part of the logger plugin (private header).
*/
#ifndef LG_WRITER_H
#define LG_WRITER_H

#include "plugin.h"

#include <stddef.h>
#include <stdint.h>

typedef struct lg_writer lg_writer;

/* Opens output ("stdout", "stderr" or a file path, appended to and created with mode
** 0640) and starts the writer thread with room for queue lines. json: the dropped-lines
** report is a JSON object. A bad output is a config error on "output" (through cfg).
** *out is set as soon as the writer exists: call lg_writer_stop(*out) even when this
** fails. */
ph_status lg_writer_start(lg_writer **out, const ph_config *cfg, const char *output, size_t queue,
                          int64_t flush_timeout_ms, int json);

/* Never blocks: a full queue drops the line and counts it. Takes ownership of line
** (malloc'd, n bytes). Thread-safe. */
void lg_writer_enqueue(lg_writer *w, char *line, size_t n);

/* Stops the thread after it wrote every queued line (waiting at most flush_timeout_ms for
** a file or FIFO that does not take them; lines lost then are reported on stderr), closes
** a file output and frees w. NULL does nothing. */
void lg_writer_stop(lg_writer *w);

#endif
