/* Reader for the safetensors format (huggingface/safetensors): 8-byte little-endian header
 * length N, N bytes of JSON, then the raw tensor bytes. Files are mmap'd and validated in full
 * before any offset is trusted. A model is one file or a sharded set with an index. */
#ifndef PATCHSWEEP_SAFETENSORS_H
#define PATCHSWEEP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    char dtype[12];       /* "F32", "F16", "BF16", ... as written in the header */
    int elem_size;        /* bytes per element */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t begin, end;    /* byte range inside the data area */
} StTensor;

typedef struct {
    char *path;
    unsigned char *map;   /* the whole file */
    size_t size;
    size_t data_start;    /* 8 + N */
    int n_tensors;
    StTensor *tensors;    /* sorted by name (st_find is a binary search) */
} StFile;

int st_open(StFile *f, const char *path);
void st_close(StFile *f);
const StTensor *st_find(const StFile *f, const char *name);

/* A sharded set's index entry: a tensor name and the file (index into StSet.files) holding it. */
typedef struct {
    char *name;
    int file;
} StEntry;

/* The tensors of one model folder: model.safetensors, or the shards named by
 * model.safetensors.index.json. */
typedef struct {
    int n_files;
    StFile *files;
    int n_entries;        /* sharded: the index's entries, sorted by name */
    StEntry *entries;
} StSet;

int st_set_open(StSet *s, const char *model_dir);
void st_set_close(StSet *s);
/* Finds a tensor; NULL when absent (no error recorded). */
const StTensor *st_set_find(const StSet *s, const char *name, const StFile **file);
/* PS_EUSER with one line unless the set has the tensor with exactly this shape (reads no data). */
int st_check(const StSet *s, const char *name, int ndim, const int64_t *shape);
/* Reads a tensor that must have exactly this shape, converting F32/F16/BF16 to float32. */
int st_read_f32(const StSet *s, const char *name, int ndim, const int64_t *shape, float *dst);
/* Reads a tensor of this shape stored as dtype ("BF16" or "F16") as it is, 16 bits an element;
 * PS_EUSER with one line if its dtype differs or it holds a NaN or an infinity. */
int st_read_16(const StSet *s, const char *name, int ndim, const int64_t *shape, const char *dtype, uint16_t *dst);

#endif
