/* Small HDF5 helpers shared by the results file writer and the commands that read it. */
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

void *h5_read_all(hid_t file, const char *name, hid_t type, size_t elem, hsize_t *dims, int *rank) {
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t space = H5Dget_space(d);
    *rank = H5Sget_simple_extent_dims(space, dims, NULL);
    size_t n = 1;
    for (int i = 0; i < *rank; i++) n *= dims[i];
    void *buf = xmalloc(n * elem + 1);
    herr_t rc = H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Sclose(space);
    H5Dclose(d);
    if (rc < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

char *h5_read_strings(hid_t file, const char *name, size_t *width) {
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT), type = H5Dget_type(d), space = H5Dget_space(d);
    size_t n = (size_t)H5Sget_simple_extent_npoints(space), stored = H5Tget_size(type);
    char *raw = xmalloc(n * stored + 1), *out = xcalloc(n, stored + 1);
    H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
    for (size_t i = 0; i < n; i++) memcpy(out + i * (stored + 1), raw + i * stored, stored);
    free(raw);
    H5Sclose(space), H5Tclose(type), H5Dclose(d);
    *width = stored + 1;
    return out;
}

