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
