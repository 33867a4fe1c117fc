/* The /bound group of a results file (docs/results.md): created once (replacing an earlier
 * one), then one prompt's row per write; every HDF5 status is checked, and a failure is one line
 * naming the dataset. */
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include "patchsweep/bound.h"
#include "patchsweep/core.h"
#include "patchsweep/store.h"

/* Chunks of one prompt, compressed (most cells are outside the site: NaN or 0). */
static hid_t create_dataset(hid_t group, const char *name, hid_t type, int rank, const hsize_t *dims) {
    hid_t space = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[4];
    for (int i = 0; i < rank; i++) chunk[i] = i == 0 ? 1 : dims[i];
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_deflate(dcpl, 4);
    hid_t d = H5Dcreate2(group, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl), H5Sclose(space);
    return d;
}

static const char *const bound_names[N_BOUND_DATASETS] = {"subset_effect", "verified", "estimate", "se", "ucb",
                                                          "theta", "theta_sign", "boundary_ties"};

int bound_file_create(BoundFile *bf, hid_t f, const char *path, int P, int K, int N, int S) {
    memset(bf, 0, sizeof *bf);
    bf->path = path;
    bf->group = -1;
    for (int i = 0; i < N_BOUND_DATASETS; i++) bf->datasets[i] = -1;
    /* Room first, for all of it uncompressed: HDF5 1.10 cannot close a file whose write failed
     * without crashing at exit, and the results in the file must stay readable. */
    char folder[PATH_CAP];
    struct statvfs fs;
    double need = (double)P * ((double)K * 8.0 + (double)N * S * 25.0 + 20.0) + 1.0e6, have = 0;
    path_dirname(folder, sizeof folder, path);
    if (statvfs(folder, &fs) == 0 && (have = (double)fs.f_bavail * (double)fs.f_frsize) < need)
        return ps_fail(PS_EUSER, "%s: no space left: /bound needs up to %.1f MB and the file system has %.1f MB free", path,
                       need / 1e6, have / 1e6);
    if (H5Lexists(f, "/bound", H5P_DEFAULT) > 0 && H5Ldelete(f, "/bound", H5P_DEFAULT) < 0) /* a rerun replaces it */
        return ps_fail(PS_EUSER, "%s: cannot replace the /bound group", path);
    bf->group = H5Gcreate2(f, "/bound", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (bf->group < 0) return ps_fail(PS_EUSER, "%s: cannot create the /bound group", path);
    hsize_t pk[2] = {(hsize_t)P, (hsize_t)K};
    hsize_t pns[3] = {(hsize_t)P, (hsize_t)N, (hsize_t)S}, p1[1] = {(hsize_t)P};
    /* type in the file; in memory every value is what PromptBound holds (boundary_ties: a double
     * of its summary, converted by HDF5 to the file's int32) */
    struct { hid_t type, memory; int rank; const hsize_t *dims; } shape[N_BOUND_DATASETS] = {
        {H5T_NATIVE_DOUBLE, H5T_NATIVE_DOUBLE, 2, pk}, {H5T_NATIVE_UINT8, H5T_NATIVE_UINT8, 3, pns},
        {H5T_NATIVE_DOUBLE, H5T_NATIVE_DOUBLE, 3, pns}, {H5T_NATIVE_DOUBLE, H5T_NATIVE_DOUBLE, 3, pns},
        {H5T_NATIVE_DOUBLE, H5T_NATIVE_DOUBLE, 3, pns}, {H5T_NATIVE_DOUBLE, H5T_NATIVE_DOUBLE, 1, p1},
        {H5T_NATIVE_DOUBLE, H5T_NATIVE_DOUBLE, 1, p1}, {H5T_STD_I32LE, H5T_NATIVE_DOUBLE, 1, p1},
    };
    for (int i = 0; i < N_BOUND_DATASETS; i++) {
        bf->types[i] = shape[i].memory;
        bf->datasets[i] = create_dataset(bf->group, bound_names[i], shape[i].type, shape[i].rank, shape[i].dims);
        if (bf->datasets[i] < 0) return ps_fail(PS_EUSER, "%s: cannot create /bound/%s (disk full?)", path, bound_names[i]);
    }
    return PS_OK;
}

/* Writes one prompt's row (the slab [p, ...]) of a dataset. */
static herr_t write_row(hid_t d, hid_t type, int p, const void *data) {
    hid_t space = H5Dget_space(d);
    hsize_t dims[4], start[4] = {0, 0, 0, 0};
    int rank = H5Sget_simple_extent_dims(space, dims, NULL);
    start[0] = (hsize_t)p, dims[0] = 1;
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, dims, NULL);
    hid_t mem = H5Screate_simple(rank, dims, NULL);
    herr_t status = H5Dwrite(d, type, mem, space, H5P_DEFAULT, data);
    H5Sclose(mem), H5Sclose(space);
    return status;
}

int bound_file_write(BoundFile *bf, int p, const PromptBound *b) {
    const void *rows[N_BOUND_DATASETS] = {b->subset_effect, b->verified, b->estimate, b->se, b->ucb,
                                          &b->summary[BOUND_THETA], &b->summary[BOUND_THETA_SIGN],
                                          &b->summary[BOUND_BOUNDARY_TIES]};
    for (int i = 0; i < N_BOUND_DATASETS; i++)
        if (write_row(bf->datasets[i], bf->types[i], p, rows[i]) < 0)
            return ps_fail(PS_EUSER, "%s: writing /bound/%s failed (disk full?)", bf->path, bound_names[i]);
    return PS_OK;
}

void bound_file_close(BoundFile *bf) {
    for (int i = 0; i < N_BOUND_DATASETS; i++)
        if (bf->datasets[i] >= 0) H5Dclose(bf->datasets[i]);
    if (bf->group >= 0) H5Gclose(bf->group);
    memset(bf, 0, sizeof *bf);
}
