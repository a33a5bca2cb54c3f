/*
** tzcheck: the logger's time-zone code (native_plugins/logger/lg_tz.c) alone, for
** tests/test_logger_tz.py. Reads commands from standard input, one a line, and answers each
** with one line on standard output:
**
**   load PATH   "ok", or "refused <why>" (lg_tz_load's reason); the zone replaces the last
**   at T        "<offset east of UTC in seconds> <abbreviation>" in the loaded zone at T
**               (seconds since 1970-01-01 UTC)
**   name S      "valid" or "invalid" (lg_tz_valid_name)
**
** Exit status 0, or 2 for a malformed command.
*/
#define _POSIX_C_SOURCE 200809L

#include "lg_tz.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  char line[4096];
  lg_tz *zone = NULL;
  int status = 0;
  while (fgets(line, sizeof line, stdin) != NULL) {
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, "load ", 5) == 0) {
      lg_tz_free(zone);
      const char *why = NULL;
      zone = lg_tz_load(line + 5, &why);
      if (zone != NULL)
        puts("ok");
      else
        printf("refused %s\n", why != NULL ? why : "(no reason)");
    } else if (strncmp(line, "at ", 3) == 0 && zone != NULL) {
      char *end = NULL;
      int64_t t = (int64_t)strtoll(line + 3, &end, 10);
      if (end == line + 3 || *end != '\0') {
        fprintf(stderr, "tzcheck: bad time: %s\n", line);
        status = 2;
        break;
      }
      int32_t offset = 0;
      const char *abbr = NULL;
      lg_tz_at(zone, t, &offset, &abbr);
      printf("%" PRId32 " %s\n", offset, abbr);
    } else if (strncmp(line, "name ", 5) == 0) {
      puts(lg_tz_valid_name(line + 5) ? "valid" : "invalid");
    } else {
      fprintf(stderr, "tzcheck: unknown command (or no zone loaded): %s\n", line);
      status = 2;
      break;
    }
  }
  lg_tz_free(zone);
  return status;
}
