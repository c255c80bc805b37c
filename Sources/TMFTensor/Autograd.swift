extension Tensor {
    /// Reverse-mode autograd from this tensor: walks the tape in reverse topological order
    /// (iteratively, so deep graphs cannot overflow the stack) and accumulates gradients into
    /// every reachable tensor with `requiresGrad`. Intermediate gradients are released as soon
    /// as they have been propagated unless `retainsGrad` is set; leaves keep theirs.
    ///
    /// - Parameter gradient: d(output)/d(self); defaults to ones (for a scalar loss).
    public func backward(_ gradient: Tensor? = nil) {
        precondition(requiresGrad, "backward() on a tensor that does not require grad")
        let seed = gradient ?? Tensor(repeating: 1, shape: shape)
        precondition(seed.count == count, "backward gradient shape \(seed.shape) vs \(shape)")
        accumulateGrad(seed, owned: gradient == nil)

        // Iterative post-order DFS for a topological order.
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Int)] = [(self, 0)]
        visited.insert(ObjectIdentifier(self))
        while let (t, i) = stack.popLast() {
            let parents = t.node?.parents ?? []
            if i < parents.count {
                stack.append((t, i + 1))
                let p = parents[i]
                if p.requiresGrad && p.node != nil && !visited.contains(ObjectIdentifier(p)) {
                    visited.insert(ObjectIdentifier(p))
                    stack.append((p, 0))
                }
            } else {
                order.append(t)
            }
        }
        withNoGrad {
            for t in order.reversed() {
                guard let node = t.node, let g = t.grad else { continue }
                node.backward(g)
                if !t.retainsGrad { t.grad = nil }
            }
        }
    }

    /// Drops the tape below this tensor (its inputs can then be freed).
    public func detachGraph() { node = nil }
}

/// Activation recomputation (PyTorch's `torch.utils.checkpoint`): `body(x)` runs without
/// recording its inside, and its output gets one tape node whose backward runs `body` again on a
/// detached copy of `x` with the tape on and back-propagates the output's gradient through it —
/// into `x` and into every leaf `body` uses (e.g. LoRA weights). Memory held for the backward
/// pass is then `x` alone instead of every activation inside `body`, for one more forward pass.
///
/// `body` must compute the same function both times: a dropout inside it draws new masks the
/// second time (PyTorch restores the RNG state; use dropout 0 with recomputation). Without
/// gradient mode this is `body(x)`.
/// - Parameters:
///   - x: the input, any shape.
///   - body: a function of `x` (and of captured tensors) to a tensor of any shape.
public func recomputed(_ x: Tensor, _ body: @escaping (Tensor) -> Tensor) -> Tensor {
    guard GradMode.isEnabled else { return body(x) }
    let y = withNoGrad { body(x) }
    y.requiresGrad = true
    y.node = GradNode(parents: [x]) { g in
        let input = x.detached()
        input.requiresGrad = x.requiresGrad
        let again = GradMode.$isEnabled.withValue(true) { body(input) }
        guard again.requiresGrad else { return }
        again.backward(g)
        if x.requiresGrad, let gx = input.grad { x.accumulateGrad(gx, owned: true) }
    }
    return y
}
