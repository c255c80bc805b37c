import Foundation
import XCTest
import TMFTensor

/// The repository's `Fixtures/` folder.
public let fixturesURL: URL = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.appendingPathComponent("Fixtures")
}()

/// The folder that holds this test process's scratch folders; removed when the process exits.
private let scratchRoot: URL = {
    let root = FileManager.default.temporaryDirectory
        .appendingPathComponent("tmf-tests-\(ProcessInfo.processInfo.processIdentifier)")
    atexit { try? FileManager.default.removeItem(at: scratchRoot) }
    return root
}()

/// A fresh, uncreated path `prefix-UUID` for a test's files, under a per-process folder that is
/// deleted when the test process exits (so test runs leave nothing in the temporary directory).
public func scratchURL(_ prefix: String) -> URL {
    scratchRoot.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
}

/// Asserts |a − b| ≤ atol + rtol·|b| elementwise, reporting the worst element.
public func assertClose(_ a: [Float], _ b: [Float], rtol: Float = 1e-5, atol: Float = 1e-6,
                        _ message: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line) {
    guard a.count == b.count else {
        XCTFail("count \(a.count) vs \(b.count) \(message())", file: file, line: line); return
    }
    var worst = 0, worstExcess: Float = 0
    for i in a.indices {
        if a[i].isNaN && b[i].isNaN { continue }
        if a[i] == b[i] { continue }
        let excess = abs(a[i] - b[i]) - (atol + rtol * abs(b[i]))
        if !(excess <= 0) && (excess > worstExcess || worstExcess == 0) { worst = i; worstExcess = excess.isNaN ? .infinity : excess }
    }
    if worstExcess > 0 {
        XCTFail("element \(worst): \(a[worst]) vs \(b[worst]) (beyond tolerance by \(worstExcess)) \(message())",
                file: file, line: line)
    }
}

/// Checks autograd gradients of `f` against central finite differences, on the scalar
/// loss Σ f(inputs) ⊙ w for a fixed random w. Computed in Float32, so the tolerance is loose;
/// PyTorch-gradient fixtures are the tight check.
public func gradCheck(_ inputs: [Tensor], eps: Float = 1e-2, rtol: Float = 2e-2, atol: Float = 2e-3,
                      file: StaticString = #filePath, line: UInt = #line, _ f: ([Tensor]) -> Tensor) {
    var rng = SeededRNG(seed: 99)
    for x in inputs { x.requiresGrad = true; x.grad = nil }
    let probe = f(inputs)
    let w = Tensor.normal(probe.shape, rng: &rng)
    let loss = (probe * w).sum()
    loss.backward()
    func value() -> Double {
        withNoGrad {
            let y = f(inputs)
            var s = 0.0
            for i in 0..<y.count { s += Double(y.pointer[i]) * Double(w.pointer[i]) }
            return s
        }
    }
    for (k, x) in inputs.enumerated() {
        let analytic = x.grad?.scalars ?? [Float](repeating: 0, count: x.count)
        var numeric = [Float](repeating: 0, count: x.count)
        for i in 0..<x.count {
            let old = x.pointer[i]
            x.pointer[i] = old + eps
            let up = value()
            x.pointer[i] = old - eps
            let down = value()
            x.pointer[i] = old
            numeric[i] = Float((up - down) / Double(2 * eps))
        }
        assertClose(analytic, numeric, rtol: rtol, atol: atol, "input \(k) finite differences", file: file, line: line)
    }
}

/// Runs `body` with the 16-bit weight kernels on the best path this CPU has that keeps the
/// activations in Float32 (so a bf16-stored model equals a Float32 one holding the same values,
/// up to summation order), then lets the kernels choose from the CPU again. Returns that path.
@discardableResult
public func withWideningHalfPath<T>(_ body: (HalfMatMul.Path) throws -> T) rethrows -> T {
    let path = [HalfMatMul.Path.avx512, .avx2].first(where: HalfMatMul.isSupported) ?? .portable
    HalfMatMul.forcePath(path)
    defer { HalfMatMul.forcePath(nil) }
    return try body(path)
}
