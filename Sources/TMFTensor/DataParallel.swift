/// The collective operations a data-parallel training loop needs from its process group, so
/// that model modules (MBHT in `TMFGraph`) can train over MPI without importing it. Every rank
/// runs the same loop; `TMFTrainer.ProcessGroup` is the implementation.
public protocol DataParallelGroup: AnyObject {
    /// This process's index, 0 ..< `size`.
    var rank: Int { get }
    /// The number of processes.
    var size: Int { get }
    /// Sums `tensors`' gradients and `loss` over the ranks (one all-reduce of one flat buffer);
    /// a gradient any rank has exists on every rank afterwards. Returns the summed loss.
    func sumGradients(of tensors: [Tensor], loss: Float) -> Float
    /// `values` summed over the ranks.
    func allReduceSum(_ values: [Double]) -> [Double]
}

extension DataParallelGroup {
    /// Whether more than one process takes part.
    public var isDistributed: Bool { size > 1 }

    /// This rank's contiguous slice of `count` items (rank k takes the k-th of `size` near-equal
    /// runs; empty when there are more ranks than items).
    public func slice(of count: Int) -> Range<Int> {
        let per = (count + size - 1) / size
        let start = min(rank * per, count)
        return start..<min(start + per, count)
    }

    /// The part of `0 ..< count` this rank takes when `count` items are dealt out in whole
    /// blocks of `block` (block k to rank k mod size), as the indices it owns in order.
    public func blocks(of count: Int, block: Int) -> [Range<Int>] {
        let b = max(block, 1)
        return stride(from: rank * b, to: count, by: size * b).map { $0..<min($0 + b, count) }
    }

    /// Whether any rank says `flag` (one all-reduce; just `flag` in one process).
    public func any(_ flag: Bool) -> Bool {
        guard isDistributed else { return flag }
        return allReduceSum([flag ? 1 : 0])[0] > 0
    }
}
