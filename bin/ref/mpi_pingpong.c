/* mpi_pingpong: the MPI reference for mx_pingpong (Sources/mx_pingpong/main.swift).
 * Same method, same options, same output format, so the two can be compared line by line:
 *   latency   = half the round trip of MPI_Send/MPI_Recv;
 *   bandwidth = a window of MPI_Isend (MPI_Irecv on the peer), MPI_Waitall, then a 4-byte ack;
 *               MB/s = size * iters * window / seconds / 1e6.
 * Sizes double from MIN to MAX (-m MIN:MAX). Iterations (-i) and warm-up (-x) apply to sizes up
 * to 8 KiB; above, a tenth of them. Defaults: latency 10000 + 100 (1000 + 10 above 8 KiB),
 * bandwidth 100 + 10 (20 + 2 above 8 KiB). Exactly two ranks.
 * Build: mpicc -O2 -o mpi_pingpong mpi_pingpong.c     Run: mpiexec -n 2 ./mpi_pingpong -m 1:4194304
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "library_name.h"

enum { TAG_PING = 1, TAG_DATA = 2, TAG_ACK = 3, MAX_WINDOW = 1024 };

static long opt_iters = -1, opt_warm = -1; /* -1: defaults */
static int window = 64;
static int rank;

static void counts(long size, int latency, long *iters, long *warm) {
    int big = size > 8192;
    if (opt_iters > 0) *iters = big ? (opt_iters / 10 > 1 ? opt_iters / 10 : 1) : opt_iters;
    else *iters = latency ? (big ? 1000 : 10000) : (big ? 20 : 100);
    if (opt_warm >= 0) *warm = big ? opt_warm / 10 : opt_warm;
    else *warm = latency ? (big ? 10 : 100) : (big ? 2 : 10);
}

/* Half round trip in microseconds. */
static double latency(char *sbuf, char *rbuf, int size) {
    long iters, warm;
    counts(size, 1, &iters, &warm);
    double start = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    for (long it = 0; it < iters + warm; it++) {
        if (it == warm) start = MPI_Wtime();
        if (rank == 0) {
            MPI_Send(sbuf, size, MPI_CHAR, 1, TAG_PING, MPI_COMM_WORLD);
            MPI_Recv(rbuf, size, MPI_CHAR, 1, TAG_PING, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(rbuf, size, MPI_CHAR, 0, TAG_PING, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(sbuf, size, MPI_CHAR, 0, TAG_PING, MPI_COMM_WORLD);
        }
    }
    return (MPI_Wtime() - start) * 1e6 / (2.0 * iters);
}

/* MB/s with a window of nonblocking sends and a 4-byte ack per window. */
static double bandwidth(char *sbuf, char *rbuf, int size) {
    static MPI_Request req[MAX_WINDOW];
    static MPI_Status st[MAX_WINDOW]; /* not MPI_STATUSES_IGNORE: GCC 12 misreads MPICH's (MPI_Status *)1 */
    long iters, warm;
    counts(size, 0, &iters, &warm);
    double start = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    for (long it = 0; it < iters + warm; it++) {
        if (it == warm) start = MPI_Wtime();
        if (rank == 0) {
            for (int w = 0; w < window; w++) MPI_Isend(sbuf, size, MPI_CHAR, 1, TAG_DATA, MPI_COMM_WORLD, &req[w]);
            MPI_Waitall(window, req, st);
            MPI_Recv(rbuf, 4, MPI_CHAR, 1, TAG_ACK, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            for (int w = 0; w < window; w++) MPI_Irecv(rbuf, size, MPI_CHAR, 0, TAG_DATA, MPI_COMM_WORLD, &req[w]);
            MPI_Waitall(window, req, st);
            MPI_Send(sbuf, 4, MPI_CHAR, 0, TAG_ACK, MPI_COMM_WORLD);
        }
    }
    double seconds = MPI_Wtime() - start;
    return (double)size * iters * window / seconds / 1e6;
}

static int usage_error(const char *msg) {
    if (rank == 0) fprintf(stderr, "mpi_pingpong: %s\nusage: mpiexec -n 2 mpi_pingpong [-m MIN:MAX] [-i ITERS] [-x WARMUP] [-W WINDOW]\n", msg);
    MPI_Finalize();
    return 2;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int nranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);

    long lo = 1, hi = 4194304;
    int c;
    opterr = 0;
    while ((c = getopt(argc, argv, "m:i:x:W:")) != -1) {
        char *end;
        switch (c) {
        case 'm':
            lo = strtol(optarg, &end, 10);
            if (end == optarg || *end != ':') return usage_error("-m must be MIN:MAX, e.g. -m 1:4194304");
            hi = strtol(end + 1, &end, 10);
            if (*end || end[-1] == ':') return usage_error("-m must be MIN:MAX, e.g. -m 1:4194304");
            break;
        case 'i': opt_iters = strtol(optarg, &end, 10); if (*end || opt_iters < 1) return usage_error("-i must be at least 1"); break;
        case 'x': opt_warm = strtol(optarg, &end, 10); if (*end || opt_warm < 0) return usage_error("-x must be >= 0"); break;
        case 'W': window = (int)strtol(optarg, &end, 10); if (*end || window < 1 || window > MAX_WINDOW) return usage_error("-W must be 1...1024"); break;
        default: return usage_error("unknown option or missing value");
        }
    }
    if (optind < argc) return usage_error("unexpected argument");
    if (lo < 0 || lo > hi || hi > (1L << 30)) return usage_error("-m must be MIN:MAX with 0 <= MIN <= MAX <= 1 GiB");
    if (nranks != 2) {
        if (rank == 0) fprintf(stderr, "mpi_pingpong: needs exactly 2 ranks, got %d (mpiexec -n 2 ...)\n", nranks);
        MPI_Finalize();
        return 2;
    }

    size_t bytes = (size_t)(hi > 4 ? hi : 4);
    void *sp = NULL, *rp = NULL;
    if (posix_memalign(&sp, 4096, bytes) || posix_memalign(&rp, 4096, bytes)) {
        fprintf(stderr, "mpi_pingpong: cannot allocate %zu bytes\n", bytes);
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
    char *sbuf = sp, *rbuf = rp;
    for (size_t k = 0; k < bytes; k++) sbuf[k] = (char)(k * 31 + 7);
    memset(rbuf, 0, bytes);

    if (rank == 0) {
        char lib[256], host[256] = "";
        library_name(lib, sizeof lib);
        gethostname(host, sizeof host - 1);
        printf("# MPI mpi_pingpong (%s, %s, same host)\n", lib, host);
        printf("%-10s%18s%18s\n", "# Size", "Latency (us)", "Bandwidth (MB/s)");
        fflush(stdout);
    }
    for (long size = lo; size <= hi; size = size ? size * 2 : 1) {
        double lat = latency(sbuf, rbuf, (int)size);
        double bw = bandwidth(sbuf, rbuf, (int)size);
        if (rank == 0) {
            printf("%-10ld%18.2f%18.2f\n", size, lat, bw);
            fflush(stdout);
        }
    }
    free(sbuf);
    free(rbuf);
    MPI_Finalize();
    return 0;
}
