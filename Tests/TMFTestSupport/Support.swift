import Foundation
import TMFTensor

/// The repository's `Fixtures/` folder.
public let fixturesURL: URL = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.appendingPathComponent("Fixtures")
}()
