import Foundation
import TMFTensor

/// Keys and values of the tokens seen so far, per layer, for incremental decoding of a batch.
///
/// Preallocated for `capacity` tokens per sequence; a forward pass with a cache appends its
/// tokens (after rotary embedding) and attends to everything cached. Padding tokens (left
/// padding of a batch) stay in the cache but are masked out of attention.
public final class KVCache: @unchecked Sendable {
    /// Per layer (B, capacity, kvHeads · headDim), rotary already applied.
    public let keys: [Tensor]
    /// Per layer (B, capacity, kvHeads · headDim).
    public let values: [Tensor]
    /// Batch size B.
    public let batchSize: Int
    /// Tokens per sequence the cache can hold.
    public let capacity: Int
    /// Tokens cached so far (the same for every sequence; padding counts).
    public internal(set) var length = 0
    /// Per sequence, per cached slot: whether it is a real token (visible to attention).
    public internal(set) var keyMask: [[Bool]]
    /// Per sequence: the rotary position of its next real token.
    public internal(set) var nextPositions: [Int]

    /// An empty cache for `batchSize` sequences of up to `capacity` tokens.
    public convenience init(configuration c: LlamaConfiguration, batchSize: Int, capacity: Int) {
        self.init(layers: c.hiddenLayers, width: c.kvHeads * c.headDim, batchSize: batchSize, capacity: capacity)
    }

    init(layers: Int, width: Int, batchSize: Int, capacity: Int) {
        precondition(batchSize > 0 && capacity > 0, "KVCache needs a positive batch size and capacity")
        keys = (0..<layers).map { _ in Tensor(zeros: [batchSize, capacity, width]) }
        values = (0..<layers).map { _ in Tensor(zeros: [batchSize, capacity, width]) }
        self.batchSize = batchSize
        self.capacity = capacity
        keyMask = Array(repeating: Array(repeating: false, count: capacity), count: batchSize)
        nextPositions = Array(repeating: 0, count: batchSize)
    }

    /// Empties the cache (keeps its memory).
    public func reset() {
        length = 0
        keyMask = Array(repeating: Array(repeating: false, count: capacity), count: batchSize)
        nextPositions = Array(repeating: 0, count: batchSize)
    }

    /// Marks `mask` ([B][T]) as the visibility of the next T slots and returns the rotary
    /// positions of those tokens ([B·T]; padding gets position 1 as in transformers).
    func beginAppend(_ mask: [[Bool]]) -> [Int] {
        let t = mask.first?.count ?? 0
        precondition(mask.count == batchSize, "batch of \(mask.count) for a cache of \(batchSize)")
        precondition(length + t <= capacity, "KVCache full: \(length) + \(t) tokens exceed capacity \(capacity)")
        var positions: [Int] = []
        positions.reserveCapacity(batchSize * t)
        for b in 0..<batchSize {
            for i in 0..<t {
                keyMask[b][length + i] = mask[b][i]
                if mask[b][i] { positions.append(nextPositions[b]); nextPositions[b] += 1 } else { positions.append(1) }
            }
        }
        return positions
    }

    /// Copies keys/values [B, T, width] into slots start..<start+T of `layer`.
    func store(layer: Int, keys k: Tensor, values v: Tensor, at start: Int) {
        let t = k.shape[1], w = k.shape[2]
        for (src, dst) in [(k, keys[layer]), (v, values[layer])] {
            for b in 0..<batchSize {
                (dst.pointer + (b * capacity + start) * w).update(from: src.pointer + b * t * w, count: t * w)
            }
        }
    }

    func endAppend(_ t: Int) { length += t }

    /// A new cache whose sequence `i` is a copy of this cache's sequence `rows[i]` (keys, values,
    /// visibility and next positions), with room for `capacity` tokens per sequence: a prompt
    /// computed once and continued in several ways (candidate ranking).
    ///
    /// - Parameters:
    ///   - rows: source sequence of each new sequence, each in `0..<batchSize` (repeats allowed).
    ///   - capacity: tokens per sequence of the new cache, at least `length`.
    public func replicating(rows: [Int], capacity newCapacity: Int) -> KVCache {
        precondition(!rows.isEmpty && rows.allSatisfy { (0..<batchSize).contains($0) }, "rows outside the cache's batch")
        precondition(newCapacity >= length, "capacity \(newCapacity) below the cached length \(length)")
        let width = keys.first?.shape[2] ?? 0
        let out = KVCache(layers: keys.count, width: width, batchSize: rows.count, capacity: newCapacity)
        for layer in 0..<keys.count {
            for (src, dst) in [(keys[layer], out.keys[layer]), (values[layer], out.values[layer])] {
                for (i, r) in rows.enumerated() {
                    (dst.pointer + i * newCapacity * width).update(from: src.pointer + r * capacity * width, count: length * width)
                }
            }
        }
        out.length = length
        for (i, r) in rows.enumerated() {
            out.keyMask[i].replaceSubrange(0..<length, with: keyMask[r][0..<length])
            out.nextPositions[i] = nextPositions[r]
        }
        return out
    }
}
