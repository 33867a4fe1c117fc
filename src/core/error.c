/* One recorded error line per process. Functions fail by recording and returning a status;
 * only the CLI prints. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "patchsweep/core.h"

static char error_line[1024];

int ps_fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_line, sizeof error_line, fmt, ap);
    va_end(ap);
    /* One line: a message never carries a newline into the user's terminal. */
    for (char *c = error_line; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    return status;
}

int ps_fail_context(int status, const char *fmt, ...) {
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof error_line];
    memcpy(old, error_line, sizeof old);
    return ps_fail(status, "%s: %s", prefix, old);
}

const char *ps_error(void) { return error_line[0] ? error_line : "unknown error"; }

void ps_error_clear(void) { error_line[0] = 0; }

int report_error(int status) {
    if (status) fprintf(stderr, "patchsweep: %s\n", ps_error());
    return status;
}
