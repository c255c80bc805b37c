// Shared between the kernel files of this shim (not exported: not in include/).
#ifndef TMF_CKERNELS_INTERNAL_H
#define TMF_CKERNELS_INTERNAL_H
#include <stddef.h>

#define TMF_HIDDEN __attribute__((visibility("hidden")))

// CPU flag bits, as tmf_internal_cpu_flags() returns them.
#define TMF_CPU_AVX512F 1
#define TMF_CPU_AVX512BF16 2
#define TMF_CPU_AVX2_FMA 4
#define TMF_CPU_F16C 8
#define TMF_CPU_AVX512BW 16

/// The CPU's flags (TMF_CPU_*), read once.
TMF_HIDDEN int tmf_internal_cpu_flags(void);

typedef void (*tmf_range_fn)(void *ctx, size_t begin, size_t end);

/// Runs fn over [0, total) on the kernel threads in contiguous parts, each cut at a multiple
/// of `align` and (but the last) at least `min_part` long; small jobs stay on the caller.
TMF_HIDDEN void tmf_internal_parallel_for(tmf_range_fn fn, void *ctx, size_t total, size_t align, size_t min_part,
                                          int latency_bound);  // latency_bound: the workers poll for the next job a while

#endif
