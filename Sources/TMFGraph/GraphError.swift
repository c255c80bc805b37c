import Foundation

/// Errors of the graph modality (MBHT).
public enum GraphError: Error, LocalizedError, Equatable {
    /// A hyper-parameter is out of range.
    case invalidConfiguration(String)
    /// Training or scoring input is inconsistent with the configuration.
    case invalidInput(String)
    /// `graph.safetensors` cannot be used (missing metadata, other configuration).
    case invalidCheckpoint(path: String, reason: String)
    /// Training was cancelled (task cancellation).
    case cancelled

    public var errorDescription: String? {
        switch self {
        case .invalidConfiguration(let s):
            return "invalid MBHT configuration: \(s)"
        case .invalidInput(let s):
            return "invalid MBHT input: \(s)"
        case .invalidCheckpoint(let path, let reason):
            return "cannot load the MBHT checkpoint \(path): \(reason). Retrain the graph stage (tmf train --stage graph)."
        case .cancelled:
            return "MBHT training was cancelled"
        }
    }
}
