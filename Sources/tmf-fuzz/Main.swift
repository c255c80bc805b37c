import Foundation

// tmf-fuzz: coverage-guided fuzzing of tmf's parsers (Scripts/fuzz.sh builds it with
// -sanitize=fuzzer,address and -DFUZZING; TMF_FUZZ_TARGET picks the parser). A normal build is
// a replayer: `tmf-fuzz TARGET FILE...` runs the target on each file (a crash input, a corpus),
// and `tmf-fuzz TARGET --seed DIR` writes the target's seed corpus from Fixtures/.

/// A fresh scratch folder per process (under /dev/shm when there is one: a file write per input).
let scratch: URL = {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? URL(fileURLWithPath: "/dev/shm") : FileManager.default.temporaryDirectory
    let url = base.appendingPathComponent("tmf-fuzz-\(getpid())")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}()

func target(named name: String) -> FuzzTarget? { targets.first { $0.name == name } }

/// TMF_FUZZ_VERBOSE=1: the replayer prints each input's error (to check that seeds parse).
let verbose = ProcessInfo.processInfo.environment["TMF_FUZZ_VERBOSE"] != nil

func runOne(_ t: FuzzTarget, _ input: [UInt8]) {
    do { try t.run(input, scratch) } catch {
        if verbose { FileHandle.standardError.write(Data("\(t.name): \(error.localizedDescription)\n".utf8)) }
    }
}

#if FUZZING
nonisolated(unsafe) var selected: FuzzTarget? = nil

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// SwiftPM links an executable's entry point under this name; libFuzzer's driver runs from it.
@_cdecl("tmf_fuzz_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc
    var v = argv
    return LLVMFuzzerRunDriver(&c, &v) { data, size in fuzzOne(data ?? UnsafePointer(bitPattern: 1)!, size) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if selected == nil {
        guard let name = ProcessInfo.processInfo.environment["TMF_FUZZ_TARGET"], let t = target(named: name) else {
            fatalError("set TMF_FUZZ_TARGET to one of: \(targets.map(\.name).joined(separator: ", "))")
        }
        selected = t
    }
    runOne(selected!, Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
#else
@main
struct Replay {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        guard let name = args.first, let t = target(named: name) else {
            FileHandle.standardError.write(Data("usage: tmf-fuzz TARGET FILE... | TARGET --seed DIR; targets: \(targets.map(\.name).joined(separator: ", "))\n".utf8))
            exit(2)
        }
        defer { try? FileManager.default.removeItem(at: scratch) }
        if args.count == 3, args[1] == "--seed" {
            let dir = URL(fileURLWithPath: args[2])
            try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for (k, files) in t.seeds.enumerated() {
                var bytes: [UInt8] = []
                for (i, f) in files.enumerated() {
                    if i > 0 { bytes.append(0) }
                    bytes += (try? Data(contentsOf: URL(fileURLWithPath: f))).map(Array.init) ?? []
                }
                try? Data(bytes).write(to: dir.appendingPathComponent("seed-\(k)"))
            }
            return
        }
        var count = 0
        for path in args.dropFirst() {
            var isDir: ObjCBool = false
            FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
            let files = isDir.boolValue ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 } : [path]
            for f in files {
                guard let data = FileManager.default.contents(atPath: f) else { continue }
                runOne(t, Array(data))
                count += 1
            }
        }
        print("tmf-fuzz \(name): \(count) inputs, no crash")
    }
}
#endif
