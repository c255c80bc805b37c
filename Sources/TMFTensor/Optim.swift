import Foundation

/// A first-order optimiser over a fixed list of parameters (PyTorch's convention: the
/// optimiser owns its parameter list and per-parameter state).
public protocol Optimizer: AnyObject {
    /// The parameters updated by `step`.
    var parameters: [Tensor] { get }
    /// Learning rate used by the next `step` (a schedule sets it per step).
    var learningRate: Float { get set }
    /// Applies one update from each parameter's `grad` (parameters without a gradient are skipped).
    func step()
}

extension Optimizer {
    /// Clears every parameter's gradient.
    public func zeroGrad() { for p in parameters { p.grad = nil } }
}

/// Adam (Kingma & Ba) with bias correction; with `decoupledWeightDecay` it is AdamW
/// (Loshchilov & Hutter, PyTorch's `AdamW`), otherwise weight decay is L2 added to the gradient
/// (PyTorch's `Adam(weight_decay=)`).
public final class Adam: Optimizer {
    public let parameters: [Tensor]
    public var learningRate: Float
    public let beta1: Float, beta2: Float, eps: Float
    public var weightDecay: Float
    public let decoupledWeightDecay: Bool
    /// Steps taken per parameter (a parameter skipped for lack of gradient does not advance).
    public private(set) var steps: [Int]
    /// First and second moment estimates, same shapes as the parameters.
    public let m: [Tensor], v: [Tensor]

    public init(parameters: [Tensor], learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                eps: Float = 1e-8, weightDecay: Float = 0, decoupledWeightDecay: Bool = false) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps
        self.weightDecay = weightDecay
        self.decoupledWeightDecay = decoupledWeightDecay
        steps = Array(repeating: 0, count: parameters.count)
        m = parameters.map { Tensor(zeros: $0.shape) }
        v = parameters.map { Tensor(zeros: $0.shape) }
    }

    /// AdamW: Adam with decoupled weight decay (default decay 0.01, as PyTorch).
    public static func adamW(parameters: [Tensor], learningRate: Float = 1e-3, beta1: Float = 0.9,
                             beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0.01) -> Adam {
        Adam(parameters: parameters, learningRate: learningRate, beta1: beta1, beta2: beta2, eps: eps,
             weightDecay: weightDecay, decoupledWeightDecay: true)
    }

    /// Restores saved state (from `steps`, `m`, `v` of an earlier optimiser on the same parameters).
    public func restore(steps: [Int], m: [[Float]], v: [[Float]]) {
        precondition(steps.count == parameters.count && m.count == parameters.count && v.count == parameters.count)
        self.steps = steps
        for i in parameters.indices {
            precondition(m[i].count == parameters[i].count && v[i].count == parameters[i].count)
            m[i].withUnsafeBufferPointer { self.m[i].pointer.update(from: $0.baseAddress!, count: $0.count) }
            v[i].withUnsafeBufferPointer { self.v[i].pointer.update(from: $0.baseAddress!, count: $0.count) }
        }
    }

    public func step() {
        for (i, p) in parameters.enumerated() {
            guard let g = p.grad else { continue }
            steps[i] += 1
            let t = Float(steps[i])
            let bc1 = 1 - Foundation.pow(beta1, t), bc2 = 1 - Foundation.pow(beta2, t)
            let stepSize = learningRate / bc1
            let bc2Sqrt = bc2.squareRoot()
            let pp = p.pointer, gp = g.pointer, mp = m[i].pointer, vp = v[i].pointer
            let (b1, b2, lr, wd, e) = (beta1, beta2, learningRate, weightDecay, eps)
            if decoupledWeightDecay && wd != 0 {
                let f = 1 - lr * wd
                for j in 0..<p.count { pp[j] *= f }
            }
            let l2 = decoupledWeightDecay ? 0 : wd
            for j in 0..<p.count {
                let gj = gp[j] + l2 * pp[j]
                mp[j] = b1 * mp[j] + (1 - b1) * gj
                vp[j] = b2 * vp[j] + (1 - b2) * gj * gj
                let denom = vp[j].squareRoot() / bc2Sqrt + e
                pp[j] -= stepSize * mp[j] / denom
            }
        }
    }
}

/// Stochastic gradient descent with optional momentum (PyTorch's formulation) and L2 decay.
public final class SGD: Optimizer {
    public let parameters: [Tensor]
    public var learningRate: Float
    public let momentum: Float
    public let weightDecay: Float
    /// Momentum buffers (nil until the first step of each parameter).
    public private(set) var buffers: [Tensor?]

    public init(parameters: [Tensor], learningRate: Float, momentum: Float = 0, weightDecay: Float = 0) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        buffers = Array(repeating: nil, count: parameters.count)
    }

    public func step() {
        for (i, p) in parameters.enumerated() {
            guard let g = p.grad else { continue }
            let pp = p.pointer, gp = g.pointer
            let d = Tensor(uninitialized: p.shape), dp = d.pointer
            for j in 0..<p.count { dp[j] = gp[j] + weightDecay * pp[j] }
            var dir = d
            if momentum != 0 {
                if let b = buffers[i] {
                    let bp = b.pointer
                    for j in 0..<p.count { bp[j] = momentum * bp[j] + dp[j] }
                    dir = b
                } else {
                    buffers[i] = d.copy()
                }
            }
            let sp = dir.pointer
            for j in 0..<p.count { pp[j] -= learningRate * sp[j] }
        }
    }
}

/// Learning-rate schedules.
public enum LearningRateSchedule: Sendable, Equatable, Codable {
    /// Constant rate.
    case constant(Float)
    /// Linear warm-up from 0 over `warmupSteps`, then cosine decay to `minRate` at `totalSteps`
    /// (transformers' `get_cosine_schedule_with_warmup` when `minRate` is 0).
    case warmupCosine(peak: Float, warmupSteps: Int, totalSteps: Int, minRate: Float)

    /// The rate for 0-based `step`.
    public func rate(at step: Int) -> Float {
        switch self {
        case let .constant(r):
            return r
        case let .warmupCosine(peak, warmup, total, minRate):
            if step < warmup { return peak * Float(step) / Float(max(1, warmup)) }
            if step >= total { return minRate }
            let progress = Double(step - warmup) / Double(max(1, total - warmup))
            let cosine = 0.5 * (1 + Foundation.cos(Double.pi * progress))
            return minRate + (peak - minRate) * Float(cosine)
        }
    }
}

/// The update every trainer makes after its backward pass (LoRA fine-tuning, pretraining, MBHT):
/// clip the global gradient norm, set the scheduled rate on every optimiser, step each of them,
/// and zero the gradients for the next step.
public struct ScheduledUpdate {
    /// Optimisers stepped in order (e.g. one with weight decay for matrices and one without).
    public let optimizers: [Adam]
    /// nil keeps each optimiser's own rate.
    public let schedule: LearningRateSchedule?
    /// nil: no clipping.
    public let clipNorm: Float?

    public init(optimizers: [Adam], schedule: LearningRateSchedule?, clipNorm: Float?) {
        self.optimizers = optimizers
        self.schedule = schedule
        self.clipNorm = clipNorm
    }

    /// Applies the update for 0-based `step` to the gradients of `parameters` (every optimiser's
    /// parameters, for the clipping norm).
    /// - Returns: the rate used (the first optimiser's) and the gradient norm before clipping
    ///   (nil without clipping).
    @discardableResult
    public func apply(to parameters: [Tensor], step: Int) -> (rate: Float, norm: Float?) {
        let norm = clipNorm.map { clipGradientNorm(parameters, maxNorm: $0) }
        if let schedule {
            let rate = schedule.rate(at: step)
            for o in optimizers { o.learningRate = rate }
        }
        for o in optimizers { o.step() }
        for o in optimizers { o.zeroGrad() }
        return (optimizers.first?.learningRate ?? 0, norm)
    }
}

/// Scales all gradients so their global L2 norm is at most `maxNorm` (PyTorch's
/// `clip_grad_norm_`: factor maxNorm / (norm + 1e-6) when below 1). Returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    var total: Double = 0
    for p in parameters {
        guard let g = p.grad else { continue }
        let gp = g.pointer
        for j in 0..<g.count { total += Double(gp[j]) * Double(gp[j]) }
    }
    let norm = Float(total.squareRoot())
    let factor = maxNorm / (norm + 1e-6)
    if factor < 1 {
        for p in parameters {
            guard let g = p.grad else { continue }
            let gp = g.pointer
            for j in 0..<g.count { gp[j] *= factor }
        }
    }
    return norm
}

// MARK: - Initialisers

extension Tensor {
    /// Uniform samples in [low, high).
    public static func uniform(_ shape: [Int], low: Float, high: Float, rng: inout SeededRNG,
                               requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.pointer[i] = low + (high - low) * rng.nextFloat() }
        t.requiresGrad = requiresGrad
        return t
    }

    /// Normal samples with mean `mean` and standard deviation `std`.
    public static func normal(_ shape: [Int], mean: Float = 0, std: Float = 1, rng: inout SeededRNG,
                              requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.pointer[i] = mean + std * rng.nextNormal() }
        t.requiresGrad = requiresGrad
        return t
    }

    /// Kaiming-uniform for a [out, in] weight with a = √5 (PyTorch's nn.Linear default and
    /// peft's LoRA A): bound = 1/√in.
    public static func kaimingUniform(_ shape: [Int], rng: inout SeededRNG, requiresGrad: Bool = false) -> Tensor {
        let fanIn = shape.count >= 2 ? shape.dropFirst().reduce(1, *) : shape[0]
        let bound = 1 / Float(fanIn).squareRoot()
        return uniform(shape, low: -bound, high: bound, rng: &rng, requiresGrad: requiresGrad)
    }
}
