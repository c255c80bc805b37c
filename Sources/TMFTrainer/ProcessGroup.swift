import CMPI
import Foundation
import TMFData
import TMFTensor

/// An error starting or using MPI.
public struct ProcessGroupError: Error, LocalizedError, Equatable {
    public var message: String
    public var errorDescription: String? { message }
}

/// The ranks of a data-parallel job: every rank runs the same command on the same data; rank 0
/// alone writes files and prints. A plain run is a group of one, and every method is then free.
///
/// Started by `mpirun -np N tmf …`, `ProcessGroup.world` opens Open MPI's library (at run time:
/// neither building nor a plain run needs MPI) and joins the job.
public final class ProcessGroup: DataParallelGroup, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// Ranks on this host (for the default thread count).
    public let localSize: Int

    public var isRoot: Bool { rank == 0 }

    private init(rank: Int, size: Int, localSize: Int) {
        self.rank = rank
        self.size = size
        self.localSize = localSize
    }

    /// A group of one (no MPI).
    public static let single = ProcessGroup(rank: 0, size: 1, localSize: 1)

    nonisolated(unsafe) private static var current: ProcessGroup = .single

    /// The job this process belongs to: `single` unless `start()` joined an MPI job.
    public static var world: ProcessGroup { current }

    /// Ranks of this process's job on this host (1 unless started by mpirun); known before `start()`.
    public static var localRanks: Int { isLaunchedByMPI ? Int(tmf_mpi_local_size()) : 1 }

    /// Whether this process was started by mpirun (Open MPI's or another PMIx launcher).
    public static var isLaunchedByMPI: Bool { tmf_mpi_launched() != 0 }

    /// Joins the MPI job when started by mpirun (once; later calls return the same group).
    /// - Throws: `ProcessGroupError` when mpirun started us but MPI cannot be opened.
    @discardableResult
    public static func start() throws -> ProcessGroup {
        guard current.size == 1, isLaunchedByMPI else { return current }
        var buffer = [CChar](repeating: 0, count: 512)
        if tmf_mpi_start(&buffer, buffer.count) != 0 {
            throw ProcessGroupError(message: String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        current = ProcessGroup(rank: Int(tmf_mpi_rank()), size: Int(tmf_mpi_size()), localSize: Int(tmf_mpi_local_size()))
        return current
    }

    /// Leaves the job (MPI_Finalize) at a normal exit.
    public static func finish() { tmf_mpi_finish() }

    /// Ends every rank of the job with `code`.
    public static func abort(_ code: Int32) -> Never {
        tmf_mpi_abort(code)
        exit(code)
    }

    /// Sums `values` over the ranks, in place.
    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) {
        guard isDistributed, let base = values.baseAddress else { return }
        check(tmf_mpi_allreduce_f32(base, values.count))
    }

    /// Sums `values` over the ranks.
    public func allReduceSum(_ values: [Double]) -> [Double] {
        guard isDistributed else { return values }
        var v = values
        v.withUnsafeMutableBufferPointer { check(tmf_mpi_allreduce_f64($0.baseAddress!, $0.count)) }
        return v
    }

    /// Sums `tensors`' gradients and `loss` over the ranks in one all-reduce of one flat buffer.
    /// A gradient any rank has exists on every rank afterwards (zeros where a rank's slice did
    /// not reach it); one no rank has stays nil. Returns the summed loss.
    public func sumGradients(of tensors: [Tensor], loss: Float) -> Float {
        guard isDistributed else { return loss }
        let present = allReduceSum(tensors.map { $0.grad == nil ? 0.0 : 1.0 })
        let used = tensors.indices.filter { present[$0] > 0 }
        var flat = [Float](repeating: 0, count: used.reduce(1) { $0 + tensors[$1].count })
        var at = 0
        flat.withUnsafeMutableBufferPointer { buffer in
            for i in used {
                if let g = tensors[i].grad { (buffer.baseAddress! + at).update(from: g.pointer, count: g.count) }
                at += tensors[i].count
            }
            buffer[at] = loss
            allReduceSum(buffer)
            at = 0
            for i in used {
                let t = tensors[i]
                let g = t.grad ?? Tensor(zeros: t.shape)
                g.pointer.update(from: buffer.baseAddress! + at, count: g.count)
                t.grad = g
                at += t.count
            }
        }
        return flat[at]
    }

    /// Rank 0's values of `tensors`, on every rank (one all-reduce: the other ranks add zeros).
    public func broadcastValues(of tensors: [Tensor]) {
        guard isDistributed else { return }
        var flat = [Float](repeating: 0, count: tensors.reduce(0) { $0 + $1.count })
        flat.withUnsafeMutableBufferPointer { buffer in
            var at = 0
            if isRoot { for t in tensors { (buffer.baseAddress! + at).update(from: t.pointer, count: t.count); at += t.count } }
            allReduceSum(buffer)
            at = 0
            for t in tensors { t.pointer.update(from: buffer.baseAddress! + at, count: t.count); at += t.count }
        }
    }

    /// Waits until every rank gets here.
    public func barrier() {
        guard isDistributed else { return }
        check(tmf_mpi_barrier())
    }

    /// Rank `root`'s bytes, on every rank.
    public func broadcast(_ bytes: [UInt8], root: Int = 0) -> [UInt8] {
        guard isDistributed else { return bytes }
        var count = [Double(bytes.count)]
        if rank != root { count = [0] }
        let n = Int(allReduceSum(count)[0])
        var buffer = rank == root ? bytes : [UInt8](repeating: 0, count: n)
        buffer.withUnsafeMutableBytes { check(tmf_mpi_broadcast($0.baseAddress!, n, Int32(root))) }
        return buffer
    }

    /// An MPI call that returned an error ends the job (MPI's default handler normally does first).
    private func check(_ rc: Int32) {
        if rc != 0 { Self.abort(1) }
    }
}

extension EvalMetrics {
    /// The counts summed over `group`'s ranks.
    public func reduced(over group: ProcessGroup) -> EvalMetrics {
        guard group.isDistributed else { return self }
        let s = group.allReduceSum([Double(examples), Double(valid), Double(correct)])
        var m = EvalMetrics()
        m.examples = Int(s[0]); m.valid = Int(s[1]); m.correct = Int(s[2])
        return m
    }
}

extension RankMetrics {
    /// The sums summed over `group`'s ranks.
    public func reduced(over group: ProcessGroup) -> RankMetrics {
        guard group.isDistributed else { return self }
        let s = group.allReduceSum([Double(examples), Double(hits1), Double(hits3), ndcgSum, reciprocalRankSum])
        var m = RankMetrics()
        m.examples = Int(s[0]); m.hits1 = Int(s[1]); m.hits3 = Int(s[2]); m.ndcgSum = s[3]; m.reciprocalRankSum = s[4]
        return m
    }
}
