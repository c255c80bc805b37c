import TMFTensor

/// A rename rule for checkpoint keys: an exact key, or a key prefix, replaced by `to`.
public struct KeyRule: Sendable, Equatable {
    /// How `from` matches a key.
    public enum Match: Sendable, Equatable {
        /// The whole key equals `from`.
        case exact
        /// The key starts with `from` (only that prefix is replaced).
        case prefix
    }

    /// Exact key or prefix.
    public var match: Match
    /// The key (or prefix) to replace.
    public var from: String
    /// Its replacement.
    public var to: String

    /// A rule replacing `from` (a whole key or a prefix, per `match`) with `to`.
    public init(_ match: Match, from: String, to: String) {
        self.match = match
        self.from = from
        self.to = to
    }

    /// Renames the key `from` to `to`.
    public static func exact(_ from: String, _ to: String) -> KeyRule { KeyRule(.exact, from: from, to: to) }
    /// Replaces a leading `from` with `to`.
    public static func prefix(_ from: String, _ to: String) -> KeyRule { KeyRule(.prefix, from: from, to: to) }

    /// `key` renamed by this rule, or `key` unchanged if the rule does not match.
    public func apply(to key: String) -> String {
        switch match {
        case .exact: return key == from ? to : key
        case .prefix: return key.hasPrefix(from) ? to + key.dropFirst(from.count) : key
        }
    }

    /// `key` passed through every rule of `rules`, in order (each sees the previous result).
    public static func apply(_ rules: [KeyRule], to key: String) -> String {
        rules.reduce(key) { $1.apply(to: $0) }
    }
}

/// A set of checkpoint keys (exact or by prefix) that strict loading may ignore.
public struct KeyPattern: Sendable, Equatable, ExpressibleByStringLiteral {
    /// Exact key or prefix.
    public var match: KeyRule.Match
    /// The key or prefix.
    public var text: String

    /// Keys equal to (`.exact`) or starting with (`.prefix`) `text`.
    public init(_ match: KeyRule.Match, _ text: String) {
        self.match = match
        self.text = text
    }

    /// Exactly the key `key`.
    public static func exact(_ key: String) -> KeyPattern { KeyPattern(.exact, key) }
    /// Every key starting with `prefix`.
    public static func prefix(_ prefix: String) -> KeyPattern { KeyPattern(.prefix, prefix) }

    /// A literal is an exact key.
    public init(stringLiteral value: String) { self.init(.exact, value) }

    /// Whether `key` belongs to the set.
    public func matches(_ key: String) -> Bool {
        match == .exact ? key == text : key.hasPrefix(text)
    }
}

/// What a successful strict load did.
public struct LoadReport: Sendable, Equatable {
    /// Parameters filled (sorted).
    public var loaded: [String]
    /// Checkpoint keys (after renaming) ignored because an allowed-unexpected pattern matched (sorted).
    public var ignored: [String]
}

/// Copies every tensor of `source` into the parameter of the same name (after `renames`), in
/// place, converting the checkpoint's dtype (F32, F16, BF16, F64) to Float32.
///
/// Nothing is copied unless the key sets match exactly: every parameter must be provided, every
/// checkpoint key (after renaming) must be a parameter or match `allowUnexpected` (tested on the
/// renamed and the original key), shapes must be equal, and no two checkpoint keys may map to
/// one parameter. All problems are gathered into one `CheckpointError.keyMismatch`.
///
/// - Parameters:
///   - parameters: model parameters by name; their storage is overwritten.
///   - source: a `SafeTensorsFile` or `CheckpointFolder`.
///   - renames: rules applied in order to each checkpoint key to get the parameter name.
///   - allowUnexpected: checkpoint keys that may be present without a parameter.
/// - Returns: which parameters were loaded and which checkpoint keys ignored.
/// - Throws: `CheckpointError.keyMismatch` listing every missing, unexpected, wrongly shaped and
///   duplicate key; `.cannotConvertToFloat32` if a matched tensor is not a float type (checked
///   before anything is copied).
@discardableResult
public func loadStrict(_ parameters: [String: Tensor], from source: some TensorSource,
                       renames: [KeyRule] = [], allowUnexpected: [KeyPattern] = []) throws -> LoadReport {
    var provided: [String: (checkpointKey: String, info: SafeTensorInfo)] = [:]
    var unexpected: [String] = []
    var ignored: [String] = []
    var duplicates = Set<String>()
    for key in source.tensorNames {
        let target = KeyRule.apply(renames, to: key)
        guard parameters[target] != nil else {
            if allowUnexpected.contains(where: { $0.matches(target) || $0.matches(key) }) {
                ignored.append(target)
            } else {
                unexpected.append(target)
            }
            continue
        }
        if provided[target] != nil { duplicates.insert(target); continue }
        provided[target] = (key, try source.info(named: key))
    }
    var missing: [String] = []
    var wrongShape: [ShapeMismatch] = []
    for (name, parameter) in parameters {
        guard let (_, info) = provided[name] else { missing.append(name); continue }
        if info.shape != parameter.shape {
            wrongShape.append(ShapeMismatch(key: name, checkpointShape: info.shape, modelShape: parameter.shape))
        }
    }
    let mismatch = LoadMismatch(source: source.sourceDescription, missing: missing.sorted(),
                                unexpected: unexpected.sorted(),
                                wrongShape: wrongShape.sorted { $0.key < $1.key }, duplicates: duplicates.sorted())
    if !mismatch.isEmpty { throw CheckpointError.keyMismatch(mismatch) }
    for (key, info) in provided.values where !info.dtype.convertsToFloat32 {
        throw CheckpointError.cannotConvertToFloat32(path: source.sourceDescription(of: key), tensor: key, dtype: info.dtype)
    }
    for (name, (key, _)) in provided {
        try source.read(named: key, into: parameters[name]!)
    }
    return LoadReport(loaded: provided.keys.sorted(), ignored: ignored.sorted())
}

/// Checks, before anything is read, that `source` holds exactly the tensors `expected` (key →
/// shape, e.g. a model's `Module.weightShapes()`) in types convertible to Float32: every key
/// present with its shape, and nothing else except keys matching `allowUnexpected`. For models
/// built through a `WeightLoader` straight from the checkpoint (no renaming).
///
/// - Throws: `CheckpointError.keyMismatch` listing every missing, unexpected and wrongly shaped
///   key; `.cannotConvertToFloat32` for an expected tensor of an integer or boolean type.
public func checkStrict(_ expected: [String: [Int]], in source: some TensorSource,
                        allowUnexpected: [KeyPattern] = []) throws {
    var unexpected: [String] = []
    var wrongShape: [ShapeMismatch] = []
    var found = Set<String>()
    var infos: [(String, SafeTensorInfo)] = []
    for key in source.tensorNames {
        guard let shape = expected[key] else {
            if !allowUnexpected.contains(where: { $0.matches(key) }) { unexpected.append(key) }
            continue
        }
        let info = try source.info(named: key)
        found.insert(key)
        infos.append((key, info))
        if info.shape != shape { wrongShape.append(ShapeMismatch(key: key, checkpointShape: info.shape, modelShape: shape)) }
    }
    let missing = expected.keys.filter { !found.contains($0) }
    let mismatch = LoadMismatch(source: source.sourceDescription, missing: missing.sorted(), unexpected: unexpected.sorted(),
                                wrongShape: wrongShape.sorted { $0.key < $1.key })
    if !mismatch.isEmpty { throw CheckpointError.keyMismatch(mismatch) }
    for (key, info) in infos where !info.dtype.convertsToFloat32 {
        throw CheckpointError.cannotConvertToFloat32(path: source.sourceDescription, tensor: key, dtype: info.dtype)
    }
}
