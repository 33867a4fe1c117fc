/* What every MPI command shares: one status on every rank, and the model's weights held once
 * per node. */
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/sweep.h"

/* Every rank returns the same status; the line is printed once, by rank 0 if it failed, else
 * by the failing rank. */
int mpi_agree(int rc, MPI_Comm comm) {
    int rank, worst, root_rc = rc;
    MPI_Comm_rank(comm, &rank);
    MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, comm);
    MPI_Bcast(&root_rc, 1, MPI_INT, 0, comm);
    if (rc && (rank == 0 || root_rc == 0)) report_error(rc);
    return worst;
}

/* The pieces advance through the buffer in bytes: type's extent, not its size, is the stride. */
static size_t extent_of(MPI_Datatype type) {
    MPI_Aint lower, extent;
    MPI_Type_get_extent(type, &lower, &extent);
    return (size_t)extent;
}

void mpi_send_long(const void *buf, size_t n, MPI_Datatype type, int dest, int tag, MPI_Comm comm, size_t piece) {
    const char *at = buf;
    size_t stride = extent_of(type);
    for (size_t done = 0; done < n; done += piece) {
        size_t count = n - done < piece ? n - done : piece;
        MPI_Send(at + done * stride, (int)count, type, dest, tag, comm);
    }
}

void mpi_recv_long(void *buf, size_t n, MPI_Datatype type, int source, int tag, MPI_Comm comm, size_t piece) {
    char *at = buf;
    size_t stride = extent_of(type);
    for (size_t done = 0; done < n; done += piece) {
        size_t count = n - done < piece ? n - done : piece;
        MPI_Recv(at + done * stride, (int)count, type, source, tag, comm, MPI_STATUS_IGNORE);
    }
}

/* The model, with its weights held once per node: the node's first rank reads the checkpoint
 * into an MPI shared-memory window that every rank on the node reads (nobody writes weights
 * during a sweep), so n ranks on a node hold one copy, not n. */
int model_load_shared(Model *m, const Job *job, MPI_Comm comm, SharedWeights *sw) {
    memset(m, 0, sizeof *m);
    const char *dir = job->model_dir;
    ModelConfig cfg;
    int rc = job_model_failure(job, model_read_config(dir, &cfg)), node_rank;
    if (!rc) rc = job_model_failure(job, model_check_checkpoint(&cfg, dir)); /* before the window is sized from it */
    rc = mpi_agree(rc, comm);
    if (rc) return rc;
    MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &sw->node);
    MPI_Comm_rank(sw->node, &node_rank);
    /* in the checkpoint's precision when it is BF16 / F16 (model_check_checkpoint chose) */
    MPI_Aint bytes = node_rank == 0 ? (MPI_Aint)model_weight_bytes(&cfg) : 0;
    void *weights;
    MPI_Win_allocate_shared(bytes, sizeof(float), MPI_INFO_NULL, sw->node, &weights, &sw->window);
    if (node_rank != 0) {
        MPI_Aint size;
        int unit;
        MPI_Win_shared_query(sw->window, 0, &size, &unit, &weights);
    }
    model_attach(m, &cfg, weights);
    MPI_Win_fence(0, sw->window);
    rc = node_rank == 0 ? job_model_failure(job, model_read_weights(m, dir)) : PS_OK;
    if (!rc && node_rank == 0) m->fingerprint = model_fingerprint(m);
    MPI_Win_fence(0, sw->window); /* the weights are in place before anyone reads them */
    MPI_Bcast(&m->fingerprint, 1, MPI_UINT64_T, 0, sw->node);
    if (!rc) rc = job_model_failure(job, model_read_tokenizer(m, dir));
    return mpi_agree(rc, comm);
}

void model_free_shared(Model *m, SharedWeights *sw) {
    model_free(m);
    if (sw->window != MPI_WIN_NULL) MPI_Win_free(&sw->window);
    if (sw->node != MPI_COMM_NULL) MPI_Comm_free(&sw->node);
}
