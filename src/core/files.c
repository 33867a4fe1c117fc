#include <errno.h>
#include <fcntl.h>
#include <sys/types.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "patchsweep/core.h"

int open_regular_file(const char *path, size_t *size) {
    int fd = open(path, O_RDONLY | O_NONBLOCK); /* a plain open of a FIFO waits for a writer */
    if (fd < 0) {
        ps_fail(PS_EUSER, "%s: cannot open (%s)", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        ps_fail(PS_EUSER, "%s: not a regular file", path);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK); /* back to plain reads */
    if (size) *size = (size_t)st.st_size;
    return fd;
}

int read_text_file(const char *path, char **out, size_t *len) {
    size_t size = 0;
    int fd = open_regular_file(path, &size);
    if (fd < 0) return PS_EUSER;
    if (size > READ_FILE_MAX) {
        close(fd);
        return ps_fail(PS_EUSER, "%s: %zu bytes, more than the %zu a text input may have", path, size, READ_FILE_MAX);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return ps_fail(PS_EUSER, "%s: cannot open (%s)", path, strerror(errno));
    }
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) { /* read to the end, not to st_size: the file may still grow (it stays capped) */
        if (n + 1 >= cap) buf = xrealloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0 || n > READ_FILE_MAX) break;
    }
    if (n > READ_FILE_MAX) {
        free(buf), fclose(f);
        return ps_fail(PS_EUSER, "%s: grew past the %zu bytes a text input may have", path, READ_FILE_MAX);
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

int is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int path_join(char *out, size_t cap, const char *dir, const char *name) {
    int n = name[0] == '/' || !dir || !dir[0] ? snprintf(out, cap, "%s", name) : snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return ps_fail(PS_EUSER, "%.200s.../%.200s: the path is longer than the %zu characters it may have", dir ? dir : "",
                       name, cap - 1);
    path_normalize(out);
    return PS_OK;
}

void path_normalize(char *path) {
    int absolute = path[0] == '/';
    char *parts[PATH_CAP / 2 + 1], copy[PATH_CAP]; /* a path of PATH_CAP characters has at most half as many parts */
    int n = 0;
    snprintf(copy, sizeof copy, "%s", path);
    for (char *tok = strtok(copy, "/"); tok; tok = strtok(NULL, "/")) {
        if (strcmp(tok, ".") == 0) continue;
        if (strcmp(tok, "..") == 0 && n > 0 && strcmp(parts[n - 1], "..") != 0) {
            n--;
            continue;
        }
        if (strcmp(tok, "..") == 0 && absolute) continue; /* "/.." is "/" */
        parts[n++] = tok;
    }
    char out[PATH_CAP];
    size_t used = (size_t)snprintf(out, sizeof out, "%s", absolute ? "/" : "");
    for (int i = 0; i < n && used < sizeof out; i++)
        used += (size_t)snprintf(out + used, sizeof out - used, "%s%s", i ? "/" : "", parts[i]);
    if (!n && !absolute) snprintf(out, sizeof out, ".");
    strcpy(path, out); /* never longer than the input */
}

/* Splits an absolute path in place into its components; returns how many. */
static int components(char *path, char **parts, int cap) {
    int n = 0;
    for (char *tok = strtok(path, "/"); tok && n < cap; tok = strtok(NULL, "/")) parts[n++] = tok;
    return n;
}

int path_relative(char *out, size_t cap, const char *from_dir, const char *to) {
    char from[PATH_CAP], target[PATH_CAP], *f[PATH_CAP / 2 + 1], *t[PATH_CAP / 2 + 1];
    if (!realpath(from_dir, from) || !realpath(to, target)) return -1;
    int nf = components(from, f, PATH_CAP / 2 + 1), nt = components(target, t, PATH_CAP / 2 + 1), common = 0;
    while (common < nf && common < nt && strcmp(f[common], t[common]) == 0) common++;
    size_t used = 0;
    out[0] = 0;
    for (int i = common; i < nf + (nt - common); i++) { /* ".." for each of from's own parts, then to's */
        const char *part = i < nf ? ".." : t[common + i - nf];
        int n = snprintf(out + used, cap - used, "%s%s", used ? "/" : "", part);
        if (n < 0 || used + (size_t)n >= cap) return -1;
        used += (size_t)n;
    }
    if (!used) snprintf(out, cap, ".");
    return 0;
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
