// Private shim: the few OpenBLAS entry points TMFTensor calls. Not API.
// Declared here rather than by including <cblas.h> so that the build does not depend on
// where a distribution puts its headers; the library is linked as -lopenblas.
#ifndef TMF_COPENBLAS_H
#define TMF_COPENBLAS_H

enum TMF_CBLAS_ORDER { TMFCblasRowMajor = 101, TMFCblasColMajor = 102 };
enum TMF_CBLAS_TRANSPOSE { TMFCblasNoTrans = 111, TMFCblasTrans = 112 };

void cblas_sgemm(enum TMF_CBLAS_ORDER order, enum TMF_CBLAS_TRANSPOSE transA,
                 enum TMF_CBLAS_TRANSPOSE transB, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
void cblas_sgemv(enum TMF_CBLAS_ORDER order, enum TMF_CBLAS_TRANSPOSE trans, int M, int N,
                 float alpha, const float *A, int lda, const float *X, int incX, float beta,
                 float *Y, int incY);
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char *openblas_get_corename(void);

#endif
