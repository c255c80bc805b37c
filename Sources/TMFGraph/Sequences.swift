import TMFTensor

/// One interaction of a user's sequence: an item index (0..<numItems) and a behavior index
/// (0..<numBehaviors).
public struct GraphEvent: Hashable, Sendable, Codable {
    public var item: Int
    public var behavior: Int
    public init(item: Int, behavior: Int) {
        self.item = item
        self.behavior = behavior
    }
}

/// A ranking query: a history, candidate items and the true next target item (which must be
/// among the candidates). Used for validation (early stopping) and HitRate.
public struct MBHTRankingExample: Sendable, Codable, Equatable {
    public var history: [GraphEvent]
    public var candidates: [Int]
    public var groundTruth: Int
    public init(history: [GraphEvent], candidates: [Int], groundTruth: Int) {
        self.history = history
        self.candidates = candidates
        self.groundTruth = groundTruth
    }
}

/// Which target-behavior events of a training sequence become training examples.
public enum MBHTExampleSelection: String, Sendable, Codable {
    /// One example per sequence: its last target event with the events before it (the
    /// reference's `(item_id_list, item_id)` instances). Earlier positions are still learnt
    /// through Cloze masking.
    case lastTarget
    /// One example per target event that has at least one event before it (DESIGN.md §4).
    case everyTarget
}

/// Training data: per-user sequences (already without the validation and test targets), in
/// time order. Training examples are the target-behavior events of these sequences.
public struct MBHTTrainingData: Sendable {
    public var sequences: [[GraphEvent]]
    public init(sequences: [[GraphEvent]]) { self.sequences = sequences }

    /// (sequence, position of the target event) pairs for `selection`.
    func examples(targetBehavior: Int, selection: MBHTExampleSelection) -> [(sequence: Int, end: Int)] {
        var out: [(Int, Int)] = []
        for (s, seq) in sequences.enumerated() {
            switch selection {
            case .lastTarget:
                if let p = seq.lastIndex(where: { $0.behavior == targetBehavior }), p >= 1 { out.append((s, p)) }
            case .everyTarget:
                for p in seq.indices where p >= 1 && seq[p].behavior == targetBehavior { out.append((s, p)) }
            }
        }
        return out
    }
}

/// HitRate@1 of per-example candidate scores: an example counts 1 when the ground truth scores
/// strictly highest, 1/(1 + t) when it ties with t others at the top (the expected value under
/// random tie-breaking), 0 otherwise.
public func hitRateAt1(scores: [[Float]], candidates: [[Int]], groundTruths: [Int]) -> Double {
    guard !scores.isEmpty else { return 0 }
    return hitsAt1(scores: scores, candidates: candidates, groundTruths: groundTruths) / Double(scores.count)
}

/// The sum `hitRateAt1` divides by the number of examples (ties counted fractionally).
func hitsAt1(scores: [[Float]], candidates: [[Int]], groundTruths: [Int]) -> Double {
    var total = 0.0
    for (i, s) in scores.enumerated() {
        guard let g = candidates[i].firstIndex(of: groundTruths[i]) else { continue }
        let better = s.indices.filter { $0 != g && s[$0] > s[g] }.count
        if better > 0 { continue }
        let ties = s.indices.filter { $0 != g && s[$0] == s[g] }.count
        total += 1 / Double(1 + ties)
    }
    return total
}
