/* A C MPI program for swiftrun's interoperability tests: built with mpicc.mpich, it starts
 * through PMI-1, checks rank and size against what it was told, sums the ranks with an
 * allreduce and prints one line. Exit code 0 only when everything agreed. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int sum = 0;
    MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    int ok = sum == size * (size - 1) / 2;
    if (argc > 1 && strcmp(argv[1], "abort") == 0 && rank == size - 1) MPI_Abort(MPI_COMM_WORLD, 7);
    if (argc > 1 && strcmp(argv[1], "crash") == 0 && rank == size - 1) abort();
    /* Rank 1 leaves without MPI_Finalize while the others wait for it in MPI_Barrier. */
    if (argc > 1 && strcmp(argv[1], "vanish") == 0 && rank == 1) _exit(0);
    printf("rank %d of %d: sum %d %s\n", rank, size, sum, ok ? "ok" : "WRONG");
    fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    return ok ? 0 : 1;
}
