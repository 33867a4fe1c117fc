#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include "patchsweep/cli.h"
#include "patchsweep/core.h"

int parse_token_list(const char *option, const char *text, int vocab, int **tokens, int *n) {
    int cap = 16, count = 0;
    int *out = xmalloc(sizeof(int) * (size_t)cap);
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || (*end && *end != ',')) {
            free(out);
            return ps_fail(PS_EUSER, "%s: \"%s\" is not a comma-separated list of integers", option, text);
        }
        if (v < 0 || v >= vocab) {
            free(out);
            return ps_fail(PS_EUSER, "%s: token %d is %ld, outside the vocabulary [0, %d)", option, count, v, vocab);
        }
        if (count == cap) out = xrealloc(out, sizeof(int) * (size_t)(cap *= 2));
        out[count++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (count == 0) {
        free(out);
        return ps_fail(PS_EUSER, "%s: empty token list", option);
    }
    *tokens = out;
    *n = count;
    return PS_OK;
}
