/* libFuzzer harness: the checked reader of results files (results_open, results_read_prompt,
 * results_read_cells).
 *
 * The input is not the file's bytes: it is a recipe from which the harness writes a structurally
 * valid HDF5 file with HDF5 itself, then opens it with the reader. Our reader's job is to check
 * what HDF5 returns (presence, class, rank, extents, storage, values, attribute types), not to
 * parse HDF5's on-disk format (HDF5 does that, and fuzzing its parser from raw bytes is slow and
 * finds bugs of HDF5, not ours). So the recipe chooses, for each dataset and attribute the reader
 * reads, whether it is as written by patchsweep (results format 2), absent, of another type, rank
 * or extent (up to 2^40, chunked so nothing is allocated), a group or a dangling link instead, and
 * its values; and which metric the reader asks for. An empty recipe (all zero bytes) gives a valid
 * file; each byte moves it away from valid in one respect.
 */
#include <stdint.h>
#include <string.h>
#include <hdf5.h>
#include "fuzz_util.h"
#include "patchsweep/core.h"
#include "patchsweep/results.h"

typedef struct {
    const uint8_t *p;
    size_t n;
} Recipe;

static unsigned next(Recipe *r) {
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

/* The layout the reader checks (docs/results.md, format 2). Dimensions by letter: P prompts,
 * T tokens, N nodes, S position columns, M metrics. */
enum { K_INT, K_DOUBLE, K_FLOAT, K_STRING };
static const struct {
    const char *path;
    int kind;
    const char *dims;
} datasets[] = {
    {"/prompts/base_tokens", K_INT, "PT"}, {"/prompts/length", K_INT, "P"},  {"/positions", K_INT, "S"},
    {"/baseline/base", K_DOUBLE, "PM"},    {"/baseline/source", K_DOUBLE, "PM"}, {"/nodes/name", K_STRING, "N"},
    {"/nodes/site", K_STRING, "N"},        {"/effects/exact", K_FLOAT, "PNSM"}, {"/effects/atp", K_FLOAT, "PNSM"},
    {"/metrics", K_STRING, "M"},           {"/prompts/position", K_INT, "PS"}, {"/position_names", K_STRING, "S"},
};
/* the datasets whose valid values are not 0 */
enum { D_LENGTH = 1, D_POSITIONS = 2, D_METRICS = 9, D_PROMPT_POSITIONS = 10 };
/* The root attributes, with the values patchsweep writes; format_version is the one integer. */
static const struct {
    const char *name, *value;
    int integer;
} attributes[] = {
    {"format", "patchsweep", 0}, {"metric", "logit_diff", 0}, {"direction", "denoise", 0},
    {"corruption", "pair", 0},   {"model_dir", "models/x", 0}, {"model_config", "{}", 0},
    {"job_fingerprint", "0123456789abcdef", 0}, {"format_version", "2", 1},
};
static const char *const metric_names[] = {"logit_diff", "logprob", "prob", "kl"};
/* Extents a dimension may take instead of its valid one. */
static const hsize_t extents[] = {0, 1, 2, 3, 7, 64, (1u << 31) - 1, 1u << 31, ((hsize_t)1 << 32) + 1, (hsize_t)1 << 40};

/* A file datatype: the valid one for kind (code 0), or another from the table. */
static hid_t make_type(int kind, unsigned code, unsigned width) {
    static const int valid[] = {[K_INT] = 1, [K_DOUBLE] = 5, [K_FLOAT] = 4, [K_STRING] = 6};
    hid_t t;
    switch (code ? code % 10 : (unsigned)valid[kind]) {
    case 0: return H5Tcopy(H5T_STD_I8LE);
    case 1: return H5Tcopy(H5T_STD_I32LE);
    case 2: return H5Tcopy(H5T_STD_U64BE);
    case 3: return H5Tcopy(H5T_STD_B8LE); /* a bitfield */
    case 4: return H5Tcopy(H5T_IEEE_F32LE);
    case 5: return H5Tcopy(H5T_IEEE_F64LE);
    case 6: /* fixed-length string: 16 wide, or of the recipe's width */
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, code ? (width ? width : 1) * (width % 3 == 0 ? 40 : 1) : 16);
        return t;
    case 7:
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        return t;
    case 8: t = H5Tcreate(H5T_OPAQUE, 4); H5Tset_tag(t, "fuzz"); return t;
    default:
        t = H5Tcreate(H5T_COMPOUND, sizeof(int));
        H5Tinsert(t, "a", 0, H5T_NATIVE_INT);
        return t;
    }
}

/* Writes n elements of type into d: values near the valid ones, moved by the recipe. size: the
 * valid extents, by letter. */
static void write_values(Recipe *r, hid_t d, hid_t type, size_t n, int dataset, const hsize_t *size) {
    hsize_t T = size['T' - 'A'], S = size['S' - 'A'];
    H5T_class_t cls = H5Tget_class(type);
    if (cls == H5T_STRING && H5Tis_variable_str(type) > 0) {
        char **s = calloc(n, sizeof *s), text[24];
        for (size_t i = 0; i < n; i++) snprintf(text, sizeof text, "v%zu", i), s[i] = strdup(text);
        H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, s);
        for (size_t i = 0; i < n; i++) free(s[i]);
        free(s);
    } else if (cls == H5T_STRING || cls == H5T_OPAQUE) {
        size_t w = H5Tget_size(type);
        char *buf = calloc(n, w);
        for (size_t i = 0; i < n; i++) {
            if (dataset == D_METRICS) snprintf(buf + i * w, w, "%s", metric_names[i % 4]);
            else snprintf(buf + i * w, w, "L0.H%zu.z", i);
            unsigned b = next(r);
            if (b) buf[i * w + b % w] = (char)next(r); /* may remove the terminator, or shorten */
        }
        H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        free(buf);
    } else if (cls == H5T_COMPOUND || cls == H5T_INTEGER) {
        int *v = calloc(n, sizeof *v);
        for (size_t i = 0; i < n; i++) {
            /* lengths T, positions in range (column j at j % T in every prompt) */
            int valid = dataset == D_LENGTH               ? (int)T
                        : dataset == D_POSITIONS          ? (int)(i % T)
                        : dataset == D_PROMPT_POSITIONS ? (int)(i % S % T)
                                                          : 0;
            v[i] = valid + (int8_t)next(r);
        }
        H5Dwrite(d, cls == H5T_COMPOUND ? type : H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        free(v);
    } else {
        double *v = calloc(n, sizeof *v);
        for (size_t i = 0; i < n; i++) {
            unsigned b = next(r);
            v[i] = b == 0x80 ? 0.0 / 0.0 : (int8_t)b * 0.5;
        }
        H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        free(v);
    }
}

/* Puts dataset i at its path: as valid, or changed in the way the recipe's byte says. */
static void make_dataset(Recipe *r, unsigned how, hid_t file, int i, const hsize_t *size) {
    unsigned kind = how % 8;
    const char *path = datasets[i].path;
    if (kind == 1) return; /* absent */
    if (kind == 5) { H5Gclose(H5Gcreate2(file, path, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)); return; }
    if (kind == 6) { H5Lcreate_soft("/nowhere", file, path, H5P_DEFAULT, H5P_DEFAULT); return; }
    int rank = (int)strlen(datasets[i].dims);
    hsize_t dims[4];
    for (int k = 0; k < rank; k++) dims[k] = size[datasets[i].dims[k] - 'A'];
    unsigned type_code = kind == 2 || kind == 7 ? next(r) + 1 : 0, width = kind ? next(r) : 0;
    if (kind == 3 || kind == 7) { /* another rank: 0 scalar, 1..4, or 5 an empty (null) dataspace */
        rank = (int)(next(r) % 6);
        for (int k = 0; k < rank && k < 4; k++) dims[k] = 1 + next(r) % 4;
    }
    if (kind == 4 || kind == 7) /* other extents */
        for (int k = 0; k < rank && k < 4; k++) {
            unsigned b = next(r);
            if (b) dims[k] = extents[b % (sizeof extents / sizeof extents[0])];
        }
    hid_t type = make_type(datasets[i].kind, type_code, width);
    hid_t space, dcpl = H5Pcreate(H5P_DATASET_CREATE);
    size_t n = 1;
    int huge = 0;
    if (rank == 5) {
        space = H5Screate(H5S_NULL), n = 0;
    } else if (rank == 0) {
        space = H5Screate(H5S_SCALAR);
    } else {
        hsize_t max[4] = {H5S_UNLIMITED, H5S_UNLIMITED, H5S_UNLIMITED, H5S_UNLIMITED}, chunk[4];
        for (int k = 0; k < rank; k++) {
            n *= dims[k];
            huge |= dims[k] == 0 || dims[k] > 4096;
            chunk[k] = dims[k] && dims[k] < 16 ? dims[k] : 16;
        }
        huge |= n > 4096;
        space = H5Screate_simple(rank, dims, huge ? max : NULL);
        if (huge) H5Pset_chunk(dcpl, rank, chunk); /* nothing is stored: every element is the fill value */
    }
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(file, path, type, space, lcpl, dcpl, H5P_DEFAULT);
    if (d >= 0 && !huge && n) write_values(r, d, type, n, i, size);
    if (d >= 0) H5Dclose(d);
    H5Pclose(lcpl), H5Pclose(dcpl), H5Sclose(space), H5Tclose(type);
}

/* Puts attribute i on the root: a scalar holding its valid value (a fixed-length string, or a
 * 32-bit integer for format_version), or not. */
static void make_attribute(Recipe *r, unsigned how, hid_t file, int i) {
    unsigned kind = how % 8;
    const char *name = attributes[i].name;
    char value[256];
    snprintf(value, sizeof value, "%s", attributes[i].value);
    if (kind == 1) return; /* absent */
    /* kind 3: the other class (an integer for a string, the string "2" for format_version);
     * kind 2: a variable-length string */
    int integer = kind != 2 && (attributes[i].integer ^ (kind == 3)), number = attributes[i].integer ? atoi(value) : 7;
    hid_t type = H5Tcopy(integer ? H5T_STD_I32LE : H5T_C_S1), space;
    if (kind == 2) H5Tset_size(type, H5T_VARIABLE);
    if (kind == 4) { /* an array of strings, not one */
        hsize_t k = 2 + next(r) % 6;
        space = H5Screate_simple(1, &k, NULL);
    } else {
        space = H5Screate(kind == 6 ? H5S_NULL : H5S_SCALAR);
    }
    if (integer && (kind == 5 || kind == 7)) { /* another value, and for 7 another width */
        number = (int8_t)next(r);
        if (kind == 7) H5Tclose(type), type = H5Tcopy(H5T_STD_I64BE);
    } else if (kind == 5 || kind == 7) { /* another width, and the recipe's bytes as the value */
        size_t w = 1 + next(r) % 255;
        for (size_t k = 0; k < w; k++) value[k] = (char)next(r);
        value[w] = 0;
        if (kind == 7) H5Tset_cset(type, H5T_CSET_UTF8), H5Tset_strpad(type, H5T_STR_NULLPAD);
        H5Tset_size(type, w);
    } else if (kind != 2 && !integer) {
        H5Tset_size(type, strlen(value) + 1);
    }
    hid_t a = H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0 && kind != 6) {
        hssize_t count = H5Sget_simple_extent_npoints(space);
        size_t w = kind == 2 ? sizeof(char *) : integer ? sizeof(int) : H5Tget_size(type);
        char *buf = calloc((size_t)count, w);
        const char *text = value;
        for (hssize_t k = 0; k < count; k++)
            memcpy(buf + k * w, kind == 2 ? (const void *)&text : integer ? (const void *)&number : value, w);
        H5Awrite(a, integer ? H5T_NATIVE_INT : type, buf);
        free(buf);
    }
    if (a >= 0) H5Aclose(a);
    H5Sclose(space), H5Tclose(type);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* The first bytes say what to change (5 sizes, 8 attributes, 12 datasets); the rest, read in
     * order as needed, give the details and the values. */
    enum { N_SIZE = 5, N_ATTR = sizeof attributes / sizeof attributes[0], N_DSET = sizeof datasets / sizeof datasets[0] };
    uint8_t head[N_SIZE + N_ATTR + N_DSET] = {0};
    memcpy(head, data, size < sizeof head ? size : sizeof head);
    Recipe r = {data + (size < sizeof head ? size : sizeof head), size < sizeof head ? 0 : size - sizeof head};
    char path[512];
    fuzz_path(path, sizeof path, "results.h5");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) abort();
    hsize_t dims[26] = {0};
    dims['P' - 'A'] = 1 + head[0] % 4, dims['T' - 'A'] = 1 + head[1] % 6;
    dims['N' - 'A'] = 1 + head[2] % 5, dims['S' - 'A'] = 1 + head[3] % 4, dims['M' - 'A'] = 1 + head[4] % 4;
    for (int i = 0; i < N_ATTR; i++) make_attribute(&r, head[N_SIZE + i], file, i);
    for (int i = 0; i < N_DSET; i++) make_dataset(&r, head[N_SIZE + N_ATTR + i], file, i, dims);
    H5Fclose(file);

    /* The metric asked for: the file's first (NULL), one it may hold, or one it does not. */
    const char *const asked[] = {NULL, "prob", "no_such_metric"};
    Results res;
    int rc = results_open(&res, path, 0, asked[head[4] / 4 % 3]);
    fuzz_outcome(rc);
    if (rc == PS_OK) {
        /* prompt by prompt, as bound reads (the sizes of a file that opened are small) */
        float *row = xmalloc(sizeof(float) * (size_t)res.N * (size_t)res.S);
        int present = 1;
        for (int p = 0; p < res.P && present; p++)
            if (results_read_prompt(&res, "atp", p, row, &present) != PS_OK) break;
        free(row);
        float *cells = NULL;
        if (results_read_cells(&res, "exact", &cells) == PS_OK) free(cells);
        if (results_read_cells(&res, "atp", &cells) == PS_OK) free(cells);
    }
    results_close(&res);
    ps_error_clear();
    return 0;
}
