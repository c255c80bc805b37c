// swift-tools-version:6.0
// tmf: a Triple Modality Fusion recommender trained and served on CPUs. See README.md and
// DESIGN.md §6 for the module layout: dependencies point down only; C lives in the
// underscore-free shim targets named C*, each imported by exactly one Swift module.
import PackageDescription

let release: [SwiftSetting] = [
    .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
]

let package = Package(
    name: "tmf",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "tmf", targets: ["tmf"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C shims (not API).
        .target(name: "COpenBLAS", linkerSettings: [.linkedLibrary("openblas")]),
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "CPNG", linkerSettings: [.linkedLibrary("png")]),

        // Swift modules, bottom up.
        .target(name: "TMFTensor", dependencies: ["COpenBLAS", "CKernels"], swiftSettings: release),
        .target(name: "TMFCheckpoint", dependencies: ["TMFTensor"], swiftSettings: release),
        .target(name: "TMFImage", dependencies: ["CPNG"], swiftSettings: release),
        .target(name: "TMFGraph", dependencies: ["TMFTensor", "TMFCheckpoint"], swiftSettings: release),
        .target(name: "TMFCLI", dependencies: [
            "TMFTensor", "TMFCheckpoint",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: release),
        .executableTarget(name: "tmf", dependencies: ["TMFCLI"], swiftSettings: release),

        // Tests.
        .target(name: "TMFTestSupport", dependencies: ["TMFTensor"], path: "Tests/TMFTestSupport"),
        .testTarget(name: "TMFTensorTests", dependencies: ["TMFTensor", "TMFTestSupport"]),
        .testTarget(name: "TMFCheckpointTests", dependencies: ["TMFCheckpoint", "TMFTestSupport"]),
        .testTarget(name: "TMFGraphTests", dependencies: ["TMFGraph", "TMFTestSupport"]),
    ]
)
