/* osu_coll: the collective latency method of the OSU Micro-Benchmarks 7.x (osu_allreduce,
 * osu_bcast, ...) in one program, the MPI reference for mpibench (Sources/Benchmarks/mpibench),
 * which runs the same method with the same options and output through the Swift MPI library:
 *   osu_coll TEST [-m [MIN:]MAX] [-i ITERS] [-x WARMUP] [-f]
 *   TEST: allreduce bcast reduce allgather alltoall gather scatter reduce_scatter barrier
 * - Sizes in bytes double from MIN (default 1) to MAX (default 1 MiB). Reductions (allreduce,
 *   reduce, reduce_scatter) sum MPI_FLOATs, count = size / 4, so sizes under 4 B are skipped;
 *   the others move MPI_CHARs. Roots (bcast, reduce, gather, scatter) are rank 0. gather,
 *   scatter, allgather, alltoall: SIZE bytes per rank and block. reduce_scatter: SIZE bytes of
 *   floats in all, split as OMB splits them (count / ranks each, one more for the first
 *   count % ranks ranks; fewer floats than ranks: one each for the first ranks).
 * - Per size: a barrier, then WARMUP untimed and ITERS timed calls, each
 *   {t0 = MPI_Wtime(); collective; t += MPI_Wtime() - t0; MPI_Barrier}. Defaults: 1000 + 100
 *   up to 8 KiB, 100 + 10 above; -i and -x set both, as OMB's do. barrier times back-to-back
 *   MPI_Barrier calls (osu_barrier) and prints one row without a size.
 * - Each rank's average in microseconds is reduced to rank 0 with MPI_MIN, MPI_MAX and MPI_SUM;
 *   a row shows SUM / ranks, with -f also MIN, MAX and the iterations.
 * Output: OMB 7.x's layout (a blank line, a title, "# Datatype: ...", the column header, rows
 * "%-10d%18.2f", with -f "%18.2f%18.2f%12d" more; barrier "# Avg Latency(us)" and "%17.2f"),
 * except that the title names this program and the MPI it runs on instead of OMB's version.
 * Where OMB releases differ, this follows the figures it is compared with: MPI_FLOAT sums as
 * OMB up to 7.0 (later 7.x releases take the type from -T, default MPI_CHAR, reduced as
 * MPI_SIGNED_CHAR), and the switch to the large counts above 8 KiB of data for every test (OMB
 * up to 7.0 switched the reductions above 8192 floats).
 * Build: mpicc -O2 -o osu_coll osu_coll.c     Run: mpiexec -n 4 ./osu_coll allreduce -m 4:1048576
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "library_name.h"

enum test { ALLREDUCE, BCAST, REDUCE, ALLGATHER, ALLTOALL, GATHER, SCATTER, REDUCE_SCATTER, BARRIER,
             GATHERV, SCATTERV, ALLGATHERV, ALLTOALLV, SCAN, NTESTS };
static const struct {
    const char *name;  /* on the command line */
    const char *title; /* OMB's benchmark title, after "OSU MPI " */
    int reduction;     /* sums MPI_FLOATs (else moves MPI_CHARs) */
} tests[NTESTS] = {
    [ALLREDUCE] = {"allreduce", "Allreduce Latency Test", 1},
    [BCAST] = {"bcast", "Broadcast Latency Test", 0},
    [REDUCE] = {"reduce", "Reduce Latency Test", 1},
    [ALLGATHER] = {"allgather", "Allgather Latency Test", 0},
    [ALLTOALL] = {"alltoall", "All-to-All Personalized Exchange Latency Test", 0},
    [GATHER] = {"gather", "Gather Latency Test", 0},
    [SCATTER] = {"scatter", "Scatter Latency Test", 0},
    [REDUCE_SCATTER] = {"reduce_scatter", "Reduce_scatter Latency Test", 1},
    [BARRIER] = {"barrier", "Barrier Latency Test", 0},
    [GATHERV] = {"gatherv", "Gatherv Latency Test", 0},
    [SCATTERV] = {"scatterv", "Scatterv Latency Test", 0},
    [ALLGATHERV] = {"allgatherv", "Allgatherv Latency Test", 0},
    [ALLTOALLV] = {"alltoallv", "All-to-Allv Personalized Exchange Latency Test", 0},
    [SCAN] = {"scan", "Scan Latency Test", 1},
};
enum { LARGE_MESSAGE = 8192 };

static int rank, nranks;
static void *sbuf, *rbuf;
static int *recvcounts; /* reduce_scatter's split */
static int *vcounts, *vdispls; /* the v-variants: COUNT from every rank, blocks back to back */

static void collective(enum test t, int count) {
    switch (t) {
    case ALLREDUCE: MPI_Allreduce(sbuf, rbuf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); break;
    case BCAST: MPI_Bcast(sbuf, count, MPI_CHAR, 0, MPI_COMM_WORLD); break;
    case REDUCE: MPI_Reduce(sbuf, rbuf, count, MPI_FLOAT, MPI_SUM, 0, MPI_COMM_WORLD); break;
    case ALLGATHER: MPI_Allgather(sbuf, count, MPI_CHAR, rbuf, count, MPI_CHAR, MPI_COMM_WORLD); break;
    case ALLTOALL: MPI_Alltoall(sbuf, count, MPI_CHAR, rbuf, count, MPI_CHAR, MPI_COMM_WORLD); break;
    case GATHER: MPI_Gather(sbuf, count, MPI_CHAR, rbuf, count, MPI_CHAR, 0, MPI_COMM_WORLD); break;
    case SCATTER: MPI_Scatter(sbuf, count, MPI_CHAR, rbuf, count, MPI_CHAR, 0, MPI_COMM_WORLD); break;
    case REDUCE_SCATTER: MPI_Reduce_scatter(sbuf, rbuf, recvcounts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); break;
    case BARRIER: MPI_Barrier(MPI_COMM_WORLD); break;
    case GATHERV: MPI_Gatherv(sbuf, count, MPI_CHAR, rbuf, vcounts, vdispls, MPI_CHAR, 0, MPI_COMM_WORLD); break;
    case SCATTERV: MPI_Scatterv(sbuf, vcounts, vdispls, MPI_CHAR, rbuf, count, MPI_CHAR, 0, MPI_COMM_WORLD); break;
    case ALLGATHERV: MPI_Allgatherv(sbuf, count, MPI_CHAR, rbuf, vcounts, vdispls, MPI_CHAR, MPI_COMM_WORLD); break;
    case ALLTOALLV: MPI_Alltoallv(sbuf, vcounts, vdispls, MPI_CHAR, rbuf, vcounts, vdispls, MPI_CHAR, MPI_COMM_WORLD); break;
    case SCAN: MPI_Scan(sbuf, rbuf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); break;
    case NTESTS: break;
    }
}

/* This rank's average time of one call, in microseconds. */
static double latency(enum test t, int count, long iters, long warm) {
    double total = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    for (long i = 0; i < warm + iters; i++) {
        double t0 = MPI_Wtime();
        collective(t, count);
        double dt = MPI_Wtime() - t0;
        if (i >= warm) total += dt;
        if (t != BARRIER) MPI_Barrier(MPI_COMM_WORLD);
    }
    return total * 1e6 / (double)iters;
}

/* OMB's split of reduce_scatter's COUNT floats over the ranks. */
static void split(int count) {
    for (int r = 0; r < nranks; r++) {
        if (count < nranks) recvcounts[r] = r < count;
        else recvcounts[r] = count / nranks + (r < count % nranks);
    }
}

static void usage(void) {
    fprintf(stderr, "usage: mpiexec -n N osu_coll TEST [-m [MIN:]MAX] [-i ITERS] [-x WARMUP] [-f]\n  TEST:");
    for (int t = 0; t < NTESTS; t++) fprintf(stderr, " %s", tests[t].name);
    fprintf(stderr, "\n");
}

static int usage_error(const char *fmt, const char *what) {
    if (rank == 0) {
        fprintf(stderr, "osu_coll: ");
        fprintf(stderr, fmt, what);
        fprintf(stderr, "\n");
        usage();
    }
    MPI_Finalize();
    return 2;
}

static void *allocate(size_t bytes) {
    void *p = NULL;
    if (bytes < 4096) bytes = 4096;
    if (posix_memalign(&p, 4096, bytes)) {
        fprintf(stderr, "osu_coll: rank %d cannot allocate %zu bytes (lower -m MAX)\n", rank, bytes);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return p;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);

    if (argc < 2 || argv[1][0] == '-') return usage_error("%s", argc < 2 ? "which test? TEST comes first" : "TEST comes first, before the options");
    enum test t = NTESTS;
    for (int k = 0; k < NTESTS; k++) if (strcmp(argv[1], tests[k].name) == 0) t = (enum test)k;
    if (t == NTESTS) return usage_error("unknown test '%s'", argv[1]);

    long lo = 1, hi = 1L << 20, iters_small = 1000, iters_large = 100, warm_small = 100, warm_large = 10;
    int full = 0, c;
    opterr = 0;
    optind = 2;
    while ((c = getopt(argc, argv, "m:i:x:f")) != -1) {
        char *end;
        long v;
        switch (c) {
        case 'm':
            v = strtol(optarg, &end, 10);
            if (end == optarg) return usage_error("-m must be [MIN:]MAX, e.g. -m 4:1048576, not '%s'", optarg);
            if (*end == ':') {
                lo = v;
                char *max = end + 1;
                hi = strtol(max, &end, 10);
                if (end == max || *end) return usage_error("-m must be [MIN:]MAX, e.g. -m 4:1048576, not '%s'", optarg);
            } else if (*end) {
                return usage_error("-m must be [MIN:]MAX, e.g. -m 4:1048576, not '%s'", optarg);
            } else {
                hi = v;
            }
            break;
        case 'i':
            v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 1 || v > 1000000000) return usage_error("-i must be 1...1000000000, not '%s'", optarg);
            iters_small = iters_large = v;
            break;
        case 'x':
            v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 0 || v > 1000000000) return usage_error("-x must be 0...1000000000, not '%s'", optarg);
            warm_small = warm_large = v;
            break;
        case 'f': full = 1; break;
        default: {
            char opt[3] = {'-', (char)optopt, '\0'};
            return usage_error(optopt == 'm' || optopt == 'i' || optopt == 'x' ? "%s needs a value" : "unknown option %s", opt);
        }
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (lo < 1 || lo > hi || hi > (1L << 30)) return usage_error("%s", "-m must be [MIN:]MAX with 1 <= MIN <= MAX <= 1073741824 (1 GiB)");
    int elem = tests[t].reduction ? (int)sizeof(float) : 1;
    long last = lo; /* the largest size of the doubling sequence */
    while (last <= hi / 2) last *= 2;
    if (t == BARRIER) lo = last = 0;
    else if (last < elem) return usage_error("-m: %s sums floats, and no size from MIN to MAX doubling is 4 B or more (try -m 4:MAX with MAX >= 4)", tests[t].name);
    if (nranks < 2) {
        if (rank == 0) fprintf(stderr, "osu_coll: needs at least 2 ranks, got %d (mpiexec -n 2 ...)\n", nranks);
        MPI_Finalize();
        return 2;
    }

    size_t block = (size_t)hi, all = block * (size_t)nranks, sbytes = block, rbytes = block;
    if (t == ALLTOALL || t == SCATTER || t == ALLTOALLV || t == SCATTERV) sbytes = all;
    if (t == ALLTOALL || t == ALLGATHER || t == GATHER || t == ALLTOALLV || t == ALLGATHERV || t == GATHERV) rbytes = all;
    sbuf = allocate(sbytes);
    rbuf = allocate(rbytes);
    recvcounts = calloc((size_t)nranks, sizeof *recvcounts);
    vcounts = calloc((size_t)nranks, sizeof *vcounts);
    vdispls = calloc((size_t)nranks, sizeof *vdispls);
    if (tests[t].reduction) for (size_t k = 0; k < sbytes / sizeof(float); k++) ((float *)sbuf)[k] = 1.0f;
    else memset(sbuf, 1, sbytes);
    memset(rbuf, 0, rbytes);

    if (rank == 0) {
        char lib[256];
        library_name(lib, sizeof lib);
        printf("\n# OSU 7.x method, osu_coll: %s (%s, %d ranks)\n", tests[t].title, lib, nranks);
        if (t == BARRIER) printf("# Avg Latency(us)");
        else printf("# Datatype: %s.\n%-10s%18s", tests[t].reduction ? "MPI_FLOAT" : "MPI_CHAR", "# Size", "Avg Latency(us)");
        if (full) printf("%18s%18s%12s", "Min Latency(us)", "Max Latency(us)", "Iterations");
        printf("\n");
        fflush(stdout);
    }
    for (long size = lo; size <= last; size = size ? size * 2 : 1) {
        int count = (int)(size / elem);
        if (t != BARRIER && count == 0) continue;
        if (t == REDUCE_SCATTER) split(count);
        for (int r = 0; r < nranks; r++) { vcounts[r] = count; vdispls[r] = r * count; }
        int large = size > LARGE_MESSAGE;
        long iters = large ? iters_large : iters_small, warm = large ? warm_large : warm_small;
        double mine = latency(t, count, iters, warm), lowest = 0, highest = 0, sum = 0;
        MPI_Reduce(&mine, &lowest, 1, MPI_DOUBLE, MPI_MIN, 0, MPI_COMM_WORLD);
        MPI_Reduce(&mine, &highest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        MPI_Reduce(&mine, &sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        if (rank == 0) {
            if (t == BARRIER) printf("%17.2f", sum / nranks);
            else printf("%-10ld%18.2f", size, sum / nranks);
            if (full) printf("%18.2f%18.2f%12ld", lowest, highest, iters);
            printf("\n");
            fflush(stdout);
        }
    }
    free(sbuf);
    free(rbuf);
    free(recvcounts);
    free(vcounts);
    free(vdispls);
    MPI_Finalize();
    return 0;
}
