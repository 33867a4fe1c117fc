/* MPI unit test (3 ranks): messages longer than one MPI count (mpi_send_long, mpi_recv_long,
 * sweep.h) arrive whole and in order. The real pieces are 2^30 elements, too large for a test,
 * so the same code runs with pieces of a few elements: lengths of 0, under one piece, exactly
 * k pieces and one element over, both directions, two types, back to back with one tag.
 *
 * As in test_mpi_sweep.c, every check is combined over all ranks before it is asserted. */
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include "patchsweep/core.h"
#include "patchsweep/sweep.h"
#include "../unit/test_support.h"

static int all_ranks(int ok) {
    int all;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    return all;
}

/* The value element i of message m from rank r should hold. */
static double value(int r, int m, size_t i) { return 1000.0 * r + 100.0 * m + (double)i + 0.5; }

static void test_long_messages(void **state) {
    (void)state;
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    static const size_t lengths[] = {0, 1, 6, 7, 21, 22, 1000};
    enum { N_LENGTHS = sizeof lengths / sizeof lengths[0], PIECE = 7, BYTE_PIECE = 3 };
    int ok = 1;
    for (int m = 0; m < N_LENGTHS; m++) {
        size_t n = lengths[m];
        double *d = alloc_doubles(n + 1);
        uint8_t *b = xcalloc(n + 1, 1);
        if (rank != 0) { /* every other rank to rank 0: doubles, then bytes, one tag */
            for (size_t i = 0; i < n; i++) d[i] = value(rank, m, i), b[i] = (uint8_t)(i * 7 + rank);
            mpi_send_long(d, n, MPI_DOUBLE, 0, 5, MPI_COMM_WORLD, PIECE);
            mpi_send_long(b, n, MPI_UINT8_T, 0, 5, MPI_COMM_WORLD, BYTE_PIECE);
            mpi_recv_long(d, n, MPI_DOUBLE, 0, 6, MPI_COMM_WORLD, PIECE); /* and back, negated */
            for (size_t i = 0; i < n; i++) ok &= d[i] == -value(rank, m, i);
        } else {
            for (int r = 1; r < size; r++) {
                mpi_recv_long(d, n, MPI_DOUBLE, r, 5, MPI_COMM_WORLD, PIECE);
                mpi_recv_long(b, n, MPI_UINT8_T, r, 5, MPI_COMM_WORLD, BYTE_PIECE);
                for (size_t i = 0; i < n; i++) ok &= d[i] == value(r, m, i) && b[i] == (uint8_t)(i * 7 + r);
                for (size_t i = 0; i < n; i++) d[i] = -d[i];
                mpi_send_long(d, n, MPI_DOUBLE, r, 6, MPI_COMM_WORLD, PIECE);
            }
        }
        free(d), free(b);
    }
    assert_true(all_ranks(ok));
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0) setenv("CMOCKA_MESSAGE_OUTPUT", "TAP", 1); /* one readable report, from rank 0 */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_messages),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed;
}
