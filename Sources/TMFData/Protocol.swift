import Foundation
import TMFTensor

/// A split of the leave-one-out protocol (DESIGN.md §4).
public enum Split: String, Sendable, CaseIterable, Codable {
    case train, valid, test
}

/// One (behavior, item) step of a history.
public struct HistoryEvent: Sendable, Equatable {
    /// Index into `Dataset.behaviors`.
    public var behavior: Int
    /// Index into `Dataset.items`.
    public var item: Int

    public init(behavior: Int, item: Int) {
        self.behavior = behavior
        self.item = item
    }
}

/// One prediction example: a user's target-behavior event and what preceded it.
public struct Example: Sendable, Equatable {
    /// Index into `Dataset.userIDs`.
    public var user: Int
    /// Index of the target event in the dataset's event columns; the history is the user's
    /// events before it.
    public var event: Int
    /// The ground-truth item (index into `Dataset.items`).
    public var target: Int
    public var split: Split
    /// For training examples, the example's rank among the user's training examples (0, 1, ...);
    /// 0 for valid and test. Keys the candidate stream of training examples.
    public var ordinal: Int
}

/// The examples of all three splits, built once from a dataset.
///
/// Per user (events ordered by time, ties in file order): test = the last target-behavior event,
/// valid = the target event before it, train = every earlier target event. An event with no
/// events before it has no history and makes no example. Users with no target event are dropped.
public struct SplitExamples: Sendable {
    public var train: [Example] = []
    public var valid: [Example] = []
    public var test: [Example] = []

    /// Builds the splits of `dataset`.
    public init(_ dataset: Dataset) {
        let target = UInt8(dataset.target)
        for u in 0..<dataset.userIDs.count {
            let r = dataset.events(ofUser: u)
            var targets: [Int] = []
            for e in r where dataset.eventBehaviors[e] == target { targets.append(e) }
            if targets.isEmpty { continue }
            func make(_ e: Int, _ split: Split, _ ordinal: Int) -> Example? {
                e > r.lowerBound
                    ? Example(user: u, event: e, target: Int(dataset.eventItems[e]), split: split, ordinal: ordinal)
                    : nil
            }
            if let x = make(targets[targets.count - 1], .test, 0) { test.append(x) }
            if targets.count >= 2, let x = make(targets[targets.count - 2], .valid, 0) { valid.append(x) }
            var ordinal = 0
            for e in targets.dropLast(2) {
                if let x = make(e, .train, ordinal) { train.append(x); ordinal += 1 }
            }
        }
    }

    /// The examples of one split.
    public subscript(split: Split) -> [Example] {
        switch split {
        case .train: return train
        case .valid: return valid
        case .test: return test
        }
    }
}

extension Dataset {
    /// The last `maxLength` events before the example's target event, oldest first, all behaviors.
    public func history(of example: Example, maxLength: Int = 20) -> [HistoryEvent] {
        let start = max(userOffsets[example.user], example.event - maxLength)
        return (start..<example.event).map {
            HistoryEvent(behavior: Int(eventBehaviors[$0]), item: Int(eventItems[$0]))
        }
    }

    /// Fraction of `examples` whose target item the user touched before it (any behavior): how
    /// often the data repeats a history item. 0 for no examples.
    /// Linear in the events of the examples' users (one pass per user, whatever their length).
    public func repeatRate(_ examples: [Example]) -> Double {
        guard !examples.isEmpty else { return 0 }
        var byUser: [Int: [Int]] = [:]
        for x in examples { byUser[x.user, default: []].append(x.event) }
        var repeats = 0
        for (u, targetEvents) in byUser {
            // Walk the user's events once, remembering when each item was first touched.
            var firstSeen: [Int32: Int] = [:]
            for e in events(ofUser: u) where firstSeen[eventItems[e]] == nil { firstSeen[eventItems[e]] = e }
            for e in targetEvents where firstSeen[eventItems[e]]! < e { repeats += 1 }
        }
        return Double(repeats) / Double(examples.count)
    }

    /// Whether the user touched (any behavior) one of `candidates` before the example's target
    /// event. Under the protocol's candidate sets (negatives the user never touched) that is
    /// whether the target repeats a history item.
    public func touchedBefore(_ example: Example, anyOf candidates: [Int]) -> Bool {
        let set = Set(candidates.map(Int32.init))
        return (userOffsets[example.user]..<example.event).contains { set.contains(eventItems[$0]) }
    }

    /// The distinct items a user interacted with (any behavior, whole sequence, all splits).
    public func interactedItems(ofUser u: Int) -> Set<Int> {
        Set(userItems[userItemOffsets[u]..<userItemOffsets[u + 1]].map(Int.init))
    }

    /// How many distinct items user `u` interacted with.
    func interactedItemCount(ofUser u: Int) -> Int { userItemOffsets[u + 1] - userItemOffsets[u] }

    /// Whether user `u` ever interacted with `item` (binary search over the user's distinct items).
    func hasInteracted(user u: Int, item: Int) -> Bool {
        var lo = userItemOffsets[u], hi = userItemOffsets[u + 1]
        let key = Int32(item)
        while lo < hi {
            let mid = (lo + hi) / 2
            if userItems[mid] < key { lo = mid + 1 } else { hi = mid }
        }
        return lo < userItemOffsets[u + 1] && userItems[lo] == key
    }

    /// The candidate set of an example: `negatives` distinct items the user never interacted
    /// with (any behavior, whole sequence), drawn uniformly, plus the ground truth, shuffled.
    /// Drawn from `SeededRNG(seed: seed, key: [userID, split])` (training examples add their
    /// ordinal to the key), so every run, process and baseline sees the same sets.
    ///
    /// - Returns: `negatives + 1` item indices; the ground truth appears exactly once.
    /// - Throws: `DataError.tooFewItems` if the shop has fewer than `negatives + 1` items,
    ///   `DataError.tooFewNegatives` if this user has touched nearly all of them.
    public func candidates(for example: Example, seed: UInt64, negatives: Int = 10) throws -> [Int] {
        if items.count < negatives + 1 { throw DataError.tooFewItems(count: items.count, needed: negatives + 1) }
        let userID = userIDs[example.user]
        var key = [userID, example.split.rawValue]
        if example.split == .train { key.append(String(example.ordinal)) }
        var rng = SeededRNG(seed: seed, key: key)
        let u = example.user
        let touchedCount = interactedItemCount(ofUser: u)
        let available = items.count - touchedCount
        if available < negatives {
            throw DataError.tooFewNegatives(user: userID, available: available, needed: negatives)
        }
        var picked: [Int] = []
        picked.reserveCapacity(negatives + 1)
        if available >= 2 * negatives && touchedCount * 2 <= items.count {
            // Rejection sampling: uniform over the untouched items, cheap when most are untouched.
            var chosen = Set<Int>()
            while picked.count < negatives {
                let i = rng.nextInt(below: items.count)
                if chosen.contains(i) || hasInteracted(user: u, item: i) { continue }
                chosen.insert(i)
                picked.append(i)
            }
        } else {
            // Partial Fisher-Yates over the explicit complement.
            var pool = (0..<items.count).filter { !hasInteracted(user: u, item: $0) }
            for k in 0..<negatives {
                let j = k + rng.nextInt(below: pool.count - k)
                pool.swapAt(k, j)
                picked.append(pool[k])
            }
        }
        picked.insert(example.target, at: rng.nextInt(below: negatives + 1))
        return picked
    }
}
