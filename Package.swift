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
        .target(name: "CCrypto", linkerSettings: [.linkedLibrary("crypto")]),
        .target(name: "CMPI", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "CSentencePiece", exclude: ["README.md"],
                linkerSettings: [.linkedLibrary("sentencepiece"), .linkedLibrary("sentencepiece_train")]),

        // Swift modules, bottom up.
        .target(name: "TMFTensor", dependencies: ["COpenBLAS", "CKernels"], swiftSettings: release),
        .target(name: "TMFCheckpoint", dependencies: ["TMFTensor"], swiftSettings: release),
        .target(name: "TMFTokenizer", dependencies: ["CSentencePiece"], swiftSettings: release),
        .target(name: "TMFImage", dependencies: ["CPNG"], swiftSettings: release),
        .target(name: "TMFLlama", dependencies: ["TMFTensor", "TMFCheckpoint"], swiftSettings: release),
        .target(name: "TMFLoRA", dependencies: ["TMFLlama", "TMFTensor", "TMFCheckpoint"], swiftSettings: release),
        .target(name: "TMFCLIP", dependencies: ["TMFTensor", "TMFCheckpoint"], swiftSettings: release),
        .target(name: "TMFGraph", dependencies: ["TMFTensor", "TMFCheckpoint"], swiftSettings: release),
        .target(name: "TMFFusion", dependencies: ["TMFTensor"], swiftSettings: release),
        .target(name: "TMFData", dependencies: ["TMFTensor", "TMFImage", "CCrypto"], swiftSettings: release),
        .target(name: "TMFTrainer", dependencies: [
            "TMFTensor", "TMFCheckpoint", "TMFTokenizer", "TMFImage", "TMFLlama", "TMFLoRA", "TMFCLIP", "TMFGraph",
            "TMFFusion", "TMFData", "CMPI",
        ], swiftSettings: release),
        .target(name: "TMFCLI", dependencies: [
            "TMFTensor", "TMFCheckpoint", "TMFTokenizer", "TMFImage", "TMFLlama", "TMFLoRA", "TMFCLIP", "TMFGraph",
            "TMFFusion", "TMFData", "TMFTrainer",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: release),
        .executableTarget(name: "tmf", dependencies: ["TMFCLI"], swiftSettings: release),
        // Fuzzing of the parsers (Scripts/fuzz.sh); a plain build is a replayer of inputs.
        .executableTarget(name: "tmf-fuzz", dependencies: [
            "TMFCheckpoint", "TMFTokenizer", "TMFImage", "TMFLlama", "TMFLoRA", "TMFCLIP", "TMFData", "TMFTrainer", "TMFCLI",
        ]),

        // Tests.
        .target(name: "TMFTestSupport", dependencies: ["TMFTensor"], path: "Tests/TMFTestSupport"),
        .testTarget(name: "TMFTensorTests", dependencies: ["TMFTensor", "TMFTestSupport"]),
        .testTarget(name: "TMFCheckpointTests", dependencies: ["TMFCheckpoint", "TMFTestSupport"]),
        .testTarget(name: "TMFTokenizerTests", dependencies: ["TMFTokenizer", "TMFTestSupport"]),
        .testTarget(name: "TMFFusionTests", dependencies: ["TMFFusion", "TMFTestSupport"]),
        .testTarget(name: "TMFTrainerTests", dependencies: ["TMFTrainer", "TMFTestSupport"]),
        .testTarget(name: "TMFImageTests", dependencies: ["TMFImage", "TMFTestSupport"]),
        .testTarget(name: "TMFDataTests", dependencies: ["TMFData", "TMFTestSupport"]),
        .testTarget(name: "TMFLlamaTests", dependencies: ["TMFLlama", "TMFCheckpoint", "TMFTestSupport"]),
        .testTarget(name: "TMFLoRATests", dependencies: ["TMFLoRA", "TMFLlama", "TMFCheckpoint", "TMFTestSupport"]),
        .testTarget(name: "TMFCLIPTests", dependencies: ["TMFCLIP", "TMFCheckpoint", "TMFTestSupport"]),
        .testTarget(name: "TMFGraphTests", dependencies: ["TMFGraph", "TMFTestSupport"]),
        // Runs the built `tmf` executable (next to the test bundle) as a subprocess.
        .testTarget(name: "TMFCLITests", dependencies: [
            "TMFTestSupport", "TMFTensor", "TMFCheckpoint", "TMFTokenizer", "TMFImage", "TMFLlama", "TMFLoRA", "TMFCLIP",
            "TMFTrainer",
        ]),
    ]
)
