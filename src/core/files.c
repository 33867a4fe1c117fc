#include <errno.h>
#include <sys/types.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "patchsweep/core.h"

int read_text_file(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return ps_fail(PS_EUSER, "%s: cannot open (%s)", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = xrealloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return ps_fail(PS_EUSER, "%s: read error", path);
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return PS_OK;
}

int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

void path_join(char *out, size_t cap, const char *dir, const char *name) {
    if (name[0] == '/' || !dir || !dir[0])
        snprintf(out, cap, "%s", name);
    else
        snprintf(out, cap, "%s/%s", dir, name);
    path_normalize(out);
}

void path_normalize(char *path) {
    int absolute = path[0] == '/';
    char *parts[512], copy[4096];
    int n = 0;
    snprintf(copy, sizeof copy, "%s", path);
    for (char *tok = strtok(copy, "/"); tok && n < 512; tok = strtok(NULL, "/")) {
        if (strcmp(tok, ".") == 0) continue;
        if (strcmp(tok, "..") == 0 && n > 0 && strcmp(parts[n - 1], "..") != 0) {
            n--;
            continue;
        }
        if (strcmp(tok, "..") == 0 && absolute) continue; /* "/.." is "/" */
        parts[n++] = tok;
    }
    char out[4096];
    size_t used = (size_t)snprintf(out, sizeof out, "%s", absolute ? "/" : "");
    for (int i = 0; i < n && used < sizeof out; i++)
        used += (size_t)snprintf(out + used, sizeof out - used, "%s%s", i ? "/" : "", parts[i]);
    if (!n && !absolute) snprintf(out, sizeof out, ".");
    strcpy(path, out); /* never longer than the input */
}

void path_dirname(char *out, size_t cap, const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, cap, ".");
    else if (slash == path)
        snprintf(out, cap, "/");
    else
        snprintf(out, cap, "%.*s", (int)(slash - path), path);
}

int make_dirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

int env_int(const char *name, long lo, long hi, long *out) {
    *out = -1;
    const char *text = getenv(name);
    if (!text || !*text) return PS_OK;
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (*end || errno || v < lo || v > hi)
        return ps_fail(PS_EUSER, "%s=%s: expected an integer from %ld to %ld", name, text, lo, hi);
    *out = v;
    return PS_OK;
}
