// Private shim: the few MPI calls tmf makes for data-parallel training and evaluation. Not API.
// Open MPI's libmpi is opened at run time (dlopen) only when the process was started by
// mpirun/mpiexec, so neither building nor a plain run needs MPI installed.
#ifndef TMF_CMPI_H
#define TMF_CMPI_H

#include <stddef.h>

/// 1 when the environment says this process was started by Open MPI's mpirun (or another PMIx
/// launcher), else 0.
int tmf_mpi_launched(void);

/// Opens libmpi and calls MPI_Init. Returns 0, or -1 with a one-line reason in `error`.
int tmf_mpi_start(char *error, size_t capacity);

/// This process's rank and the number of ranks (0 and 1 before or without tmf_mpi_start).
int tmf_mpi_rank(void);
int tmf_mpi_size(void);
/// Ranks on this host (OMPI_COMM_WORLD_LOCAL_SIZE; 1 when unknown).
int tmf_mpi_local_size(void);

/// In-place sums over all ranks. Return 0, or an MPI error code.
int tmf_mpi_allreduce_f32(float *values, size_t count);
int tmf_mpi_allreduce_f64(double *values, size_t count);
/// Waits for every rank.
int tmf_mpi_barrier(void);
/// Sends `bytes` bytes from `root`'s buffer to every rank's.
int tmf_mpi_broadcast(void *buffer, size_t bytes, int root);
/// MPI_Finalize (no-op when not started).
void tmf_mpi_finish(void);
/// Ends every rank of the job with `code` (MPI_Abort).
void tmf_mpi_abort(int code);

#endif
