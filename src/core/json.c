/* Typed access to cJSON objects with errors that name the key and what was expected. */
#include <math.h>
#include <stdlib.h>
#include "patchsweep/core.h"

int json_parse_file(const char *path, cJSON **out) {
    char *text;
    size_t len;
    int rc = read_text_file(path, &text, &len);
    if (rc) return rc;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        /* Report the line of the syntax error: that is where the user must look. */
        int line = 1;
        const char *at = end ? end : text;
        for (const char *c = text; c < at && *c; c++)
            if (*c == '\n') line++;
        free(text);
        return ps_fail(PS_EUSER, "%s:%d: JSON syntax error", path, line);
    }
    free(text);
    *out = root;
    return PS_OK;
}

static const cJSON *lookup(const cJSON *obj, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

int json_get_number(const cJSON *obj, const char *key, const char *where, int required, double *out) {
    const cJSON *it = lookup(obj, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) return ps_fail(PS_EUSER, "%s: missing key \"%s\"", where, key);
        return PS_OK;
    }
    if (!cJSON_IsNumber(it)) return ps_fail(PS_EUSER, "%s: \"%s\" must be a number", where, key);
    *out = it->valuedouble;
    return PS_OK;
}

int json_get_int(const cJSON *obj, const char *key, const char *where, int required, long *out) {
    double v = NAN;
    int rc = json_get_number(obj, key, where, required, &v);
    if (rc || isnan(v)) return rc;
    if (v != floor(v) || fabs(v) > 9.0e15)
        return ps_fail(PS_EUSER, "%s: \"%s\" must be an integer, got %g", where, key, v);
    *out = (long)v;
    return PS_OK;
}

int json_get_string(const cJSON *obj, const char *key, const char *where, int required, const char **out) {
    const cJSON *it = lookup(obj, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) return ps_fail(PS_EUSER, "%s: missing key \"%s\"", where, key);
        return PS_OK;
    }
    if (!cJSON_IsString(it)) return ps_fail(PS_EUSER, "%s: \"%s\" must be a string", where, key);
    *out = it->valuestring;
    return PS_OK;
}

int json_get_bool(const cJSON *obj, const char *key, const char *where, int required, int *out) {
    const cJSON *it = lookup(obj, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) return ps_fail(PS_EUSER, "%s: missing key \"%s\"", where, key);
        return PS_OK;
    }
    if (!cJSON_IsBool(it)) return ps_fail(PS_EUSER, "%s: \"%s\" must be true or false", where, key);
    *out = cJSON_IsTrue(it);
    return PS_OK;
}

char *json_take_text(cJSON *obj) {
    char *text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    char *copy = xstrdup(text); /* cJSON's allocator is not necessarily malloc */
    cJSON_free(text);
    return copy;
}
