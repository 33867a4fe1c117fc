/* Small HDF5 helpers shared by the results file writer and the commands that read it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/store.h"

void h5_set_string_attr(hid_t obj, const char *name, const char *value) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(value) + 1);
    H5Tset_strpad(type, H5T_STR_NULLTERM);
    hid_t space = H5Screate(H5S_SCALAR);
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, type, value);
    H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
}

void h5_set_number_attr(hid_t obj, const char *name, hid_t type, const void *value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT)
                                       : H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, type, value);
    H5Aclose(a);
    H5Sclose(space);
}

/* Whether attribute a holds exactly one value of class cls. H5Aread writes every element of the
 * attribute's dataspace, so a file that stores an array where we expect one value (a damaged or
 * crafted file) would overflow the buffer of one: check before reading. */
static int single_value(hid_t a, H5T_class_t cls) {
    hid_t space = H5Aget_space(a), type = H5Aget_type(a);
    int one = space >= 0 && H5Sget_simple_extent_npoints(space) == 1 && type >= 0 && H5Tget_class(type) == cls;
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    return one;
}

int h5_int_attr(hid_t obj, const char *name, int missing) {
    int value = missing;
    hid_t a = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : H5I_INVALID_HID;
    if (a >= 0 && (!single_value(a, H5T_INTEGER) || H5Aread(a, H5T_NATIVE_INT, &value) < 0)) value = missing;
    if (a >= 0) H5Aclose(a);
    return value;
}

char *h5_string_attr(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t type = H5Aget_type(a);
    char *out = NULL;
    if (single_value(a, H5T_STRING) && !H5Tis_variable_str(type)) {
        size_t n = H5Tget_size(type);
        out = xcalloc(n + 1, 1);
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, n);
        if (H5Aread(a, mem, out) < 0) {
            free(out);
            out = NULL;
        }
        H5Tclose(mem);
    }
    H5Tclose(type);
    H5Aclose(a);
    return out;
}

/* How many times its stored bytes a dataset's values may take: 1, or for a compressed one
 * (h5repack -f GZIP=9, say) 1032, the most deflate expands. */
static hsize_t expansion(hid_t d) {
    hid_t dcpl = H5Dget_create_plist(d);
    int filtered = dcpl >= 0 && H5Pget_nfilters(dcpl) > 0;
    if (dcpl >= 0) H5Pclose(dcpl);
    return filtered ? 1032 : 1;
}

int h5_stored_count(hid_t d, int rank, const hsize_t *dims, size_t *count, hsize_t *stored) {
    hid_t type = H5Dget_type(d), file = H5Iget_file_id(d);
    size_t width = type >= 0 ? H5Tget_size(type) : 0;
    if (type >= 0) H5Tclose(type);
    hsize_t have = H5Dget_storage_size(d), file_size = 0;
    if (file < 0 || H5Fget_filesize(file, &file_size) < 0 || have > file_size) have = file_size;
    if (file >= 0) H5Fclose(file);
    *stored = have;
    /* elements the file holds (a file below 2^54 bytes: no overflow), and elements claimed */
    hsize_t room = width ? have / width * expansion(d) : 0, n = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] && n > room / dims[i]) return 0; /* n * dims[i] > room, without overflow */
        n *= dims[i];
    }
    if (n > SIZE_MAX / 16) return 0;
    *count = (size_t)n;
    return 1;
}

/* Dataset name, when it has exactly `rank` dimensions (at most 4; its extents into dims) and the
 * file stores its values (h5_stored_count: *count of them); H5I_INVALID_HID otherwise. */
static hid_t open_stored(hid_t file, const char *name, int rank, hsize_t *dims, size_t *count) {
    hid_t d = H5Lexists(file, name, H5P_DEFAULT) > 0 ? H5Dopen2(file, name, H5P_DEFAULT) : H5I_INVALID_HID;
    hid_t space = d >= 0 ? H5Dget_space(d) : H5I_INVALID_HID;
    /* the rank first: H5Sget_simple_extent_dims writes as many extents as the dataset has */
    int ok = space >= 0 && rank <= 4 && H5Sget_simple_extent_ndims(space) == rank &&
             H5Sget_simple_extent_dims(space, dims, NULL) == rank;
    hsize_t stored;
    ok = ok && h5_stored_count(d, rank, dims, count, &stored);
    if (space >= 0) H5Sclose(space);
    if (ok) return d;
    if (d >= 0) H5Dclose(d);
    return H5I_INVALID_HID;
}

void *h5_read_all(hid_t file, const char *name, hid_t type, size_t elem, int rank, hsize_t *dims) {
    size_t n = 0;
    hid_t d = open_stored(file, name, rank, dims, &n);
    if (d < 0) return NULL;
    void *buf = xmalloc(n * elem + 1);
    herr_t rc = H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(d);
    if (rc < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

char *h5_read_strings(hid_t file, const char *name, size_t *width, size_t *count) {
    hsize_t dims[1];
    size_t n = 0;
    hid_t d = open_stored(file, name, 1, dims, &n);
    if (d < 0) return NULL;
    hid_t type = H5Dget_type(d);
    size_t stored = H5Tget_size(type);
    int ok = H5Tget_class(type) == H5T_STRING && H5Tis_variable_str(type) == 0 && stored > 0 && stored < 4096;
    char *raw = ok ? xmalloc(n * stored + 1) : NULL, *out = NULL;
    if (ok && H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) >= 0) {
        out = xcalloc(n ? n : 1, stored + 1);
        for (size_t i = 0; i < n; i++) memcpy(out + i * (stored + 1), raw + i * stored, stored);
    }
    free(raw);
    H5Tclose(type), H5Dclose(d);
    *width = stored + 1;
    *count = n;
    return out;
}

hid_t h5_create_dataset(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims, const void *fill) {
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (fill) H5Pset_fill_value(dcpl, type, fill);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_ALLOC);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY); /* required in parallel; also what makes resume safe */
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(file, name, type, space, lcpl, dcpl, H5P_DEFAULT);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Sclose(space);
    return d;
}

int h5_write_small(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims, const void *data) {
    hid_t d = h5_create_dataset(file, name, type, rank, dims, NULL);
    int failed = d < 0 || H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0;
    if (d >= 0) failed |= H5Dclose(d) < 0;
    return failed;
}

int h5_write_strings(hid_t file, const char *name, const char *rows, size_t n, size_t width) {
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, width);
    hsize_t dims[1] = {(hsize_t)n};
    int failed = h5_write_small(file, name, str, 1, dims, rows);
    H5Tclose(str);
    return failed;
}
