import Foundation
import TMFData
import TMFTensor

/// Task complexity levels of the paper's §4.3 (Figure 3): the prompt levels of `TMFData`.
/// easy = text only (Eq. 9, trains LoRA); medium = + `[MT_b]` (Eq. 10, + behavior adaptor);
/// hard = + `[MT_i]` (Eq. 11, + fusion and item adaptor).
public typealias TaskLevel = PromptLevel

/// Which modalities a model uses: the ablations of the paper's Table 3 (`--modalities`).
public enum Modalities: String, Codable, Sendable, CaseIterable {
    /// Llama-2 only: text prompts (always the easy task).
    case text
    /// + behavior tokens (easy → medium).
    case behavior
    /// + item tokens through AMSA only (easy → medium → hard).
    case item
    /// + CMA: full TMF (easy → medium → hard).
    case full

    /// The hardest task level this ablation trains and evaluates with.
    public var hardestLevel: TaskLevel {
        switch self {
        case .text: return .easy
        case .behavior: return .medium
        case .item, .full: return .hard
        }
    }
}

/// Parameter groups trainable at a task level (Eq. 9-11).
public enum ParameterGroup: String, Codable, Sendable, CaseIterable {
    /// Φ_LLM: the LoRA weights.
    case lora
    /// Ψ_b: the behavior adaptor.
    case behaviorAdaptor
    /// Ψ_f: the fusion module.
    case fusion
    /// Ψ_i: the item adaptor.
    case itemAdaptor

    /// The groups that receive gradients at `level`.
    public static func trainable(at level: TaskLevel) -> Set<ParameterGroup> {
        switch level {
        case .easy: return [.lora]
        case .medium: return [.lora, .behaviorAdaptor]
        case .hard: return [.lora, .behaviorAdaptor, .fusion, .itemAdaptor]
        }
    }
}

/// The curriculum schedule of Eq. 12-14. With T total iterations and threshold T1 < T, at
/// iteration τ (1-based): τ ≤ T1 draws medium with probability p_m = τ/T, else easy;
/// τ > T1 draws hard with probability p_h = (τ − T1)/(T − T1), else medium. Ablations with a
/// lower hardest level cap the draw: `.behavior` uses p_m = τ/T over the whole run, `.text` is
/// always easy.
public struct Curriculum: Codable, Sendable, Equatable {
    /// T: total iterations.
    public var totalSteps: Int
    /// T1: the iteration after which the hard task enters.
    public var threshold: Int
    /// The ablation.
    public var modalities: Modalities

    public init(totalSteps: Int, threshold: Int, modalities: Modalities) {
        precondition(totalSteps > 0 && threshold >= 0 && threshold < totalSteps, "need 0 ≤ T1 < T")
        self.totalSteps = totalSteps
        self.threshold = threshold
        self.modalities = modalities
    }

    /// The two levels competing at iteration τ and the probability of the harder one.
    public func mixture(at tau: Int) -> (easier: TaskLevel, harder: TaskLevel, probability: Double) {
        let t = Double(totalSteps), t1 = Double(threshold), x = Double(min(max(tau, 0), totalSteps))
        switch modalities {
        case .text:
            return (.easy, .easy, 0)
        case .behavior:
            return (.easy, .medium, x / t)
        case .item, .full:
            if tau <= threshold { return (.easy, .medium, x / t) }
            return (.medium, .hard, (x - t1) / (t - t1))
        }
    }

    /// Draws the task of iteration τ (1-based) from `rng` (one uniform draw, Eq. 14's indicator).
    public func draw(at tau: Int, rng: inout SeededRNG) -> TaskLevel {
        let m = mixture(at: tau)
        let u = rng.nextDouble()
        return u < m.probability ? m.harder : m.easier
    }
}
