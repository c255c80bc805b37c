/// Matrix products. Every product is one or a loop of `cblas_sgemm` calls on the operands'
/// own storage: transposes are BLAS flags, never copies, and backward accumulates straight
/// into the gradient buffers (beta = 1).
extension Tensor {
    /// Matrix product with optional transposes of the stored operands.
    ///
    /// - `a`: [..., M, K] (stored [..., K, M] when `transposeA`).
    /// - `b`: [K, N] (stored [N, K] when `transposeB`), or batched [..., K, N] with the same
    ///   leading dimensions as `a`.
    /// - Returns: [..., M, N]. With a 2-D `b` and no `transposeA`, all leading dimensions of `a`
    ///   fold into M: one sgemm for the whole batch (the `linear` case).
    public static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false,
                              transposeB: Bool = false) -> Tensor {
        precondition(a.rank >= 2 && b.rank >= 2, "matmul needs matrices, got \(a.shape) and \(b.shape)")
        let aRows = a.shape[a.rank - 2], aCols = a.shape[a.rank - 1]
        let bRows = b.shape[b.rank - 2], bCols = b.shape[b.rank - 1]
        let m = transposeA ? aCols : aRows, k = transposeA ? aRows : aCols
        let kb = transposeB ? bCols : bRows, n = transposeB ? bRows : bCols
        precondition(k == kb, "matmul inner dimensions differ: \(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : "")")
        let aBatch = Array(a.shape.dropLast(2))
        let bBatch = Array(b.shape.dropLast(2))

        if b.rank == 2 && !transposeA {
            // Fold a's leading dims into M: a is contiguous [R, K] with R = prod(leading) * M.
            let rows = a.count / max(k, 1)
            let out = Tensor(uninitialized: aBatch + [m, n])
            BLAS.sgemm(transA: false, transB: transposeB, m: rows, n: n, k: k,
                       a: a.pointer, lda: k, b: b.pointer, ldb: bCols,
                       beta: 0, c: out.pointer, ldc: n)
            return out.record([a, b]) { g in
                if a.requiresGrad {
                    // dA[R, K] = dC[R, N] · op(B)ᵀ
                    let ga = a.gradBuffer()
                    BLAS.sgemm(transA: false, transB: !transposeB, m: rows, n: k, k: n,
                               a: g.pointer, lda: n, b: b.pointer, ldb: bCols, beta: 1, c: ga.pointer, ldc: k)
                }
                if b.requiresGrad {
                    let gb = b.gradBuffer()
                    if transposeB {
                        // B stored [N, K]: dB = dCᵀ[N, R] · A[R, K]
                        BLAS.sgemm(transA: true, transB: false, m: n, n: k, k: rows,
                                   a: g.pointer, lda: n, b: a.pointer, ldb: k, beta: 1, c: gb.pointer, ldc: k)
                    } else {
                        // dB[K, N] = Aᵀ[K, R] · dC[R, N]
                        BLAS.sgemm(transA: true, transB: false, m: k, n: n, k: rows,
                                   a: a.pointer, lda: k, b: g.pointer, ldb: n, beta: 1, c: gb.pointer, ldc: n)
                    }
                }
            }
        }

        // Batched: equal leading dims, or a 2-D operand broadcast over the other's batch.
        let batchShape: [Int]
        if aBatch == bBatch { batchShape = aBatch }
        else if bBatch.isEmpty { batchShape = aBatch }
        else if aBatch.isEmpty { batchShape = bBatch }
        else { preconditionFailure("matmul batch dimensions differ: \(a.shape) · \(b.shape)") }
        let batch = Tensor.elementCount(batchShape)
        let aStride = aBatch.isEmpty ? 0 : aRows * aCols
        let bStride = bBatch.isEmpty ? 0 : bRows * bCols
        let out = Tensor(uninitialized: batchShape + [m, n])
        for i in 0..<batch {
            BLAS.sgemm(transA: transposeA, transB: transposeB, m: m, n: n, k: k,
                       a: a.pointer + i * aStride, lda: aCols, b: b.pointer + i * bStride, ldb: bCols,
                       beta: 0, c: out.pointer + i * m * n, ldc: n)
        }
        return out.record([a, b]) { g in
            if a.requiresGrad {
                let ga = a.gradBuffer()
                for i in 0..<batch {
                    let gp = g.pointer + i * m * n, bp = b.pointer + i * bStride, dst = ga.pointer + i * aStride
                    if !transposeA {
                        // dA[M, K] = dC · op(B)ᵀ
                        BLAS.sgemm(transA: false, transB: !transposeB, m: m, n: k, k: n,
                                   a: gp, lda: n, b: bp, ldb: bCols, beta: 1, c: dst, ldc: aCols)
                    } else {
                        // A stored [K, M]: dA = op(B) · dCᵀ
                        BLAS.sgemm(transA: transposeB, transB: true, m: k, n: m, k: n,
                                   a: bp, lda: bCols, b: gp, ldb: n, beta: 1, c: dst, ldc: aCols)
                    }
                }
            }
            if b.requiresGrad {
                let gb = b.gradBuffer()
                for i in 0..<batch {
                    let gp = g.pointer + i * m * n, ap = a.pointer + i * aStride, dst = gb.pointer + i * bStride
                    if !transposeB {
                        // dB[K, N] = op(A)ᵀ · dC
                        BLAS.sgemm(transA: !transposeA, transB: false, m: k, n: n, k: m,
                                   a: ap, lda: aCols, b: gp, ldb: n, beta: 1, c: dst, ldc: bCols)
                    } else {
                        // B stored [N, K]: dB = dCᵀ · op(A)
                        BLAS.sgemm(transA: true, transB: transposeA, m: n, n: k, k: m,
                                   a: gp, lda: n, b: ap, ldb: aCols, beta: 1, c: dst, ldc: bCols)
                    }
                }
            }
        }
    }

    /// `self · other` (see `matmul(_:_:transposeA:transposeB:)`).
    public func matmul(_ other: Tensor) -> Tensor { Tensor.matmul(self, other) }

    /// A linear layer with a low-rank term, as LoRA adds it: x [..., in] · weight [out, in]ᵀ +
    /// scale · down [..., r] · up [out, r]ᵀ → [..., out]. Two sgemm calls into one output (the
    /// second accumulates, beta = 1): no separate sum, scaled copy or zero-filled product.
    /// Gradients flow to every input that requires them.
    public static func linear(_ x: Tensor, weight: Tensor, down: Tensor, up: Tensor, scale: Float) -> Tensor {
        let inF = weight.shape[1], outF = weight.shape[0], r = up.shape[1]
        precondition(x.shape.last == inF && down.shape.last == r && up.shape[0] == outF,
                     "linear with low rank: x \(x.shape), weight \(weight.shape), down \(down.shape), up \(up.shape)")
        let rows = x.count / max(inF, 1)
        precondition(down.count == rows * r, "linear with low rank: down \(down.shape) for \(rows) rows")
        let out = Tensor(uninitialized: Array(x.shape.dropLast()) + [outF])
        BLAS.sgemm(transA: false, transB: true, m: rows, n: outF, k: inF, a: x.pointer, lda: inF,
                   b: weight.pointer, ldb: inF, beta: 0, c: out.pointer, ldc: outF)
        BLAS.sgemm(transA: false, transB: true, m: rows, n: outF, k: r, alpha: scale, a: down.pointer, lda: r,
                   b: up.pointer, ldb: r, beta: 1, c: out.pointer, ldc: outF)
        return out.record([x, weight, down, up]) { g in
            accumulateLinearGradients(g, a: x, b: weight, rows: rows, k: inF, n: outF, alpha: 1)
            accumulateLinearGradients(g, a: down, b: up, rows: rows, k: r, n: outF, alpha: scale)
        }
    }

    /// Backward of out[R, N] += alpha · a[R, K] · b[N, K]ᵀ, into the gradients of those that need
    /// them: da += alpha · g · b, db += alpha · gᵀ · a.
    private static func accumulateLinearGradients(_ g: Tensor, a: Tensor, b: Tensor, rows: Int, k: Int, n: Int,
                                                  alpha: Float) {
        if a.requiresGrad {
            BLAS.sgemm(transA: false, transB: false, m: rows, n: k, k: n, alpha: alpha, a: g.pointer, lda: n,
                       b: b.pointer, ldb: k, beta: 1, c: a.gradBuffer().pointer, ldc: k)
        }
        if b.requiresGrad {
            BLAS.sgemm(transA: true, transB: false, m: n, n: k, k: rows, alpha: alpha, a: g.pointer, lda: n,
                       b: a.pointer, ldb: k, beta: 1, c: b.gradBuffer().pointer, ldc: k)
        }
    }

    /// A linear layer in PyTorch's convention: x [..., in] · weight [out, in]ᵀ (+ bias [out]).
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
        let y = matmul(x, weight, transposeB: true)
        if let bias { return y + bias }
        return y
    }
}
