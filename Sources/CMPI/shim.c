#include "CMPI.h"
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Open MPI's handles are the addresses of exported objects (MPI_COMM_WORLD is
// &ompi_mpi_comm_world, MPI_FLOAT &ompi_mpi_float, MPI_SUM &ompi_mpi_op_sum, …), so they are
// looked up by name like the functions.
typedef void *handle;
static struct {
    int started, rank, size;
    handle comm, f32, f64, byte, sum;
    int (*init)(int *, char ***);
    int (*finalize)(void);
    int (*comm_rank)(handle, int *);
    int (*comm_size)(handle, int *);
    int (*allreduce)(const void *, void *, int, handle, handle, handle);
    int (*barrier)(handle);
    int (*bcast)(void *, int, handle, int, handle);
    int (*abort)(handle, int);
} mpi = {0, 0, 1};

int tmf_mpi_launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMIX_RANK") != NULL;
}

int tmf_mpi_local_size(void) {
    const char *v = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int n = v ? atoi(v) : 1;
    return n < 1 ? 1 : n;
}

#define LOOKUP(field, name)                                                                  \
    do {                                                                                     \
        *(void **)&mpi.field = dlsym(lib, name);                                             \
        if (!mpi.field) {                                                                    \
            snprintf(error, capacity, "libmpi has no %s (tmf runs under Open MPI)", name);   \
            return -1;                                                                       \
        }                                                                                    \
    } while (0)

int tmf_mpi_start(char *error, size_t capacity) {
    if (mpi.started) return 0;
    // RTLD_GLOBAL: Open MPI's own plugins resolve symbols of libmpi.
    void *lib = dlopen("libmpi.so.40", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) lib = dlopen("libmpi.so", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        snprintf(error, capacity, "started by mpirun, but Open MPI's libmpi cannot be loaded (%s); install openmpi-bin and libopenmpi-dev", dlerror());
        return -1;
    }
    LOOKUP(init, "MPI_Init");
    LOOKUP(finalize, "MPI_Finalize");
    LOOKUP(comm_rank, "MPI_Comm_rank");
    LOOKUP(comm_size, "MPI_Comm_size");
    LOOKUP(allreduce, "MPI_Allreduce");
    LOOKUP(barrier, "MPI_Barrier");
    LOOKUP(bcast, "MPI_Bcast");
    LOOKUP(abort, "MPI_Abort");
    LOOKUP(comm, "ompi_mpi_comm_world");
    LOOKUP(f32, "ompi_mpi_float");
    LOOKUP(f64, "ompi_mpi_double");
    LOOKUP(byte, "ompi_mpi_byte");
    LOOKUP(sum, "ompi_mpi_op_sum");
    int rc = mpi.init(NULL, NULL);
    if (rc != 0) {
        snprintf(error, capacity, "MPI_Init failed (error %d)", rc);
        return -1;
    }
    mpi.comm_rank(mpi.comm, &mpi.rank);
    mpi.comm_size(mpi.comm, &mpi.size);
    mpi.started = 1;
    return 0;
}

int tmf_mpi_rank(void) { return mpi.rank; }
int tmf_mpi_size(void) { return mpi.size; }

// MPI counts are ints: large buffers go in chunks.
#define CHUNK (1 << 28)

static int allreduce(void *values, size_t count, size_t width, handle type) {
    if (!mpi.started || mpi.size == 1 || count == 0) return 0;
    size_t chunk = count < CHUNK ? count : CHUNK;
    void *scratch = malloc(chunk * width);
    if (!scratch) return -1;
    int rc = 0;
    for (size_t at = 0; at < count && rc == 0; at += chunk) {
        size_t n = count - at < chunk ? count - at : chunk;
        char *p = (char *)values + at * width;
        memcpy(scratch, p, n * width);
        rc = mpi.allreduce(scratch, p, (int)n, type, mpi.sum, mpi.comm);
    }
    free(scratch);
    return rc;
}

int tmf_mpi_allreduce_f32(float *values, size_t count) { return allreduce(values, count, sizeof(float), mpi.f32); }
int tmf_mpi_allreduce_f64(double *values, size_t count) { return allreduce(values, count, sizeof(double), mpi.f64); }

int tmf_mpi_barrier(void) { return mpi.started ? mpi.barrier(mpi.comm) : 0; }

int tmf_mpi_broadcast(void *buffer, size_t bytes, int root) {
    if (!mpi.started || mpi.size == 1) return 0;
    int rc = 0;
    for (size_t at = 0; at < bytes && rc == 0; at += CHUNK) {
        size_t n = bytes - at < CHUNK ? bytes - at : CHUNK;
        rc = mpi.bcast((char *)buffer + at, (int)n, mpi.byte, root, mpi.comm);
    }
    return rc;
}

void tmf_mpi_finish(void) {
    if (mpi.started) {
        mpi.finalize();
        mpi.started = 0;
    }
}

void tmf_mpi_abort(int code) {
    if (mpi.started) mpi.abort(mpi.comm, code);
    exit(code);
}
