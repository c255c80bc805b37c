import Foundation
import XCTest
import TMFTestSupport

/// Resource limits through the real `tmf` binary (README "Limits"): inputs of gigabytes, or
/// headers that claim them, are refused with one `tmf:` line before the memory is allocated; a
/// user with very many events still trains, evaluates and gets recommendations. The huge files
/// are sparse (a hole, no disk space) or merely claim their size.
final class LimitsCommandTests: XCTestCase {
    /// Extends `url` (created from `prefix` when given) with a hole to `size` bytes.
    func extend(_ url: URL, to size: UInt64, prefix: String? = nil) throws {
        if let prefix { XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: Data(prefix.utf8))) }
        let handle = try FileHandle(forWritingTo: url)
        try handle.truncate(atOffset: size)
        try handle.close()
    }

    /// A copy of `folder` at `root/name`.
    func copy(_ folder: URL, _ name: String, in root: URL) throws -> URL {
        let url = root.appendingPathComponent(name)
        try FileManager.default.copyItem(at: folder, to: url)
        return url
    }

    func testDatasetLinesAndJSONFilesOfGigabytesAreRefused() throws {
        let root = try temporaryFolder(self)
        let shop = root.appendingPathComponent("shop")
        XCTAssertEqual(try runTMF(["synth", shop.path, "--users", "20", "--items", "20", "--seed", "3"]).status, 0)
        // The last line of items.jsonl, a CSV record, dataset.json: 4 GiB each.
        for (file, mention) in [("items.jsonl", "items.jsonl:21: the line is longer than 1 MiB"),
                                ("interactions.csv", "interactions.csv:"),
                                ("dataset.json", "dataset.json: the file has 4 GiB, more than the 16 MiB limit")] {
            let copy = try copy(shop, file, in: root)
            let url = copy.appendingPathComponent(file)
            if !FileManager.default.fileExists(atPath: url.path) { try extend(url, to: 0, prefix: "{}") }
            try extend(url, to: 4 << 30)
            let r = try runTMF(["eval", "--baseline", "popular", "--data", copy.path, "--quiet"])
            assertFailure(r, mentions: mention)
        }
        // RecBole atomic files.
        let recbole = root.appendingPathComponent("recbole")
        try FileManager.default.createDirectory(at: recbole, withIntermediateDirectories: true)
        try Data("user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t5\t1\n".utf8)
            .write(to: recbole.appendingPathComponent("ml.inter"))
        try extend(recbole.appendingPathComponent("ml.item"), to: 3 << 30, prefix: "item_id:token\tmovie_title:token_seq\n10\tA Film\n")
        let imported = try runTMF(["import", "recbole", recbole.path, root.appendingPathComponent("imported").path])
        assertFailure(imported, mentions: "ml.item:3: the line is longer than 1 MiB")
    }

    func testModelJSONFilesAndCheckpointsClaimingGigabytesAreRefused() throws {
        let s = try makeSetup()
        let root = s.root
        // config.json of a Llama, adapter_config.json, tmf.json: 2 GiB each (a hole).
        let bigConfig = try copy(s.llm, "big-config", in: root)
        try extend(bigConfig.appendingPathComponent("config.json"), to: 2 << 30)
        assertFailure(try runTMF(["generate", "--llm", bigConfig.path, "--prompt", "The user"]),
                      mentions: "config.json")
        let adapter = root.appendingPathComponent("adapter")
        try FileManager.default.createDirectory(at: adapter, withIntermediateDirectories: true)
        try extend(adapter.appendingPathComponent("adapter_config.json"), to: 2 << 30, prefix: "{}")
        assertFailure(try runTMF(["generate", "--llm", s.llm.path, "--adapter", adapter.path, "--prompt", "The user"]),
                      mentions: "2147483648 bytes, more than the 16 MiB limit")
        let model = root.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        try extend(model.appendingPathComponent("tmf.json"), to: 2 << 30, prefix: "{}")
        assertFailure(try runTMF(["eval", model.path, "--quiet"]), mentions: "more than the 16 MiB limit")

        // model.safetensors: a header claiming a 2^40-element tensor; one whose shape overflows;
        // offsets past the end of the file; a header length of 2^40 bytes.
        let n = 1 << 20
        for (header, claimed, mention) in [
            ("{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[\(n),\(n)],\"data_offsets\":[0,\(4 * n * n)]}}", nil,
             "claims shape [1048576, 1048576] (1099511627776 elements), more than the 17179869184 elements"),
            ("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", nil,
             "its size overflows"),
            ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1000000],\"data_offsets\":[0,4000000]}}", nil, "the file is truncated"),
            ("{}", UInt64(1) << 40, "claims a 1099511627776-byte header"),
        ] as [(String, UInt64?, String)] {
            let llm = root.appendingPathComponent("claim-\(UUID().uuidString)")
            try FileManager.default.copyItem(at: s.llm, to: llm)
            var bytes: [UInt8] = []
            withUnsafeBytes(of: (claimed ?? UInt64(header.utf8.count)).littleEndian) { bytes.append(contentsOf: $0) }
            bytes += Array(header.utf8) + [0, 0, 0, 0]
            try Data(bytes).write(to: llm.appendingPathComponent("model.safetensors"))
            assertFailure(try runTMF(["generate", "--llm", llm.path, "--prompt", "The user"]), mentions: mention)
        }
    }

    /// A PNG chunk: length, type, data, CRC-32 of type and data.
    func pngChunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in body {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        crc ^= 0xFFFF_FFFF
        let n = UInt32(data.count)
        return [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + body
            + [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)]
    }

    /// A PNG whose IHDR claims `width` × `height` pixels, followed by an empty IDAT and IEND: the
    /// header says a terabyte, the file has 57 bytes.
    func pngHeader(width: UInt32, height: UInt32) -> Data {
        var ihdr: [UInt8] = []
        for v in [width, height] { ihdr += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        ihdr += [8, 2, 0, 0, 0]  // 8-bit RGB, no interlace
        return Data([137, 80, 78, 71, 13, 10, 26, 10] + pngChunk("IHDR", ihdr) + pngChunk("IDAT", []) + pngChunk("IEND", []))
    }

    func testPNGClaimingATrillionPixelsIsRefused() throws {
        let root = try temporaryFolder(self)
        let png = root.appendingPathComponent("huge.png")
        try pngHeader(width: 1_000_000, height: 1_000_000).write(to: png)
        let clip = fixturesURL.appendingPathComponent("models/tiny-clip").path
        assertFailure(try runTMF(["embed", "--clip", clip, "--image", png.path]),
                      mentions: "is 1000000x1000000 pixels, over the limit of 64000000 pixels")
    }

    func testAbsurdSizesOnTheCommandLineAreRefused() throws {
        for (arguments, mention) in [
            (["train", "--batch-size", "1000000"], "--batch-size 1000000 is more than the 1024 allowed"),
            (["eval", "--batch-size", "1000000"], "--batch-size 1000000 is more than the 1024 allowed"),
            (["embed", "--clip", "x", "--text", "a", "--batch-size", "5000"], "--batch-size 5000"),
            (["pretrain", "--data", "x", "--out", "y", "--batch-size", "5000"], "--batch-size 5000"),
            (["train", "--steps", "100000000"], "--steps 100000000 is more than the 10000000 optimiser steps"),
            (["train", "--pretrain-steps", "100000000"], "--pretrain-steps 100000000"),
            (["pretrain", "--data", "x", "--out", "y", "--steps", "100000000"], "--steps 100000000"),
            (["train", "--epochs", "1e300"], "--epochs 1e+300 comes to more than"),
            (["train", "--grad-accum", "100000"], "--grad-accum 100000 is more than the 1024"),
            (["train", "--threads", "100000"], "--threads 100000 is more than the 1024 allowed"),
            (["eval", "--threads", "99999999999999"], "--threads 99999999999999"),
            (["recommend", "m", "--history", "view:I1", "--top", "1000000"], "--top 1000000 is more than the 1000 allowed"),
        ] {
            assertFailure(try runTMF(arguments), mentions: mention)
        }
    }

    func testAUserWithVeryManyEventsTrainsEvaluatesAndIsRecommendedTo() throws {
        let s = try makeSetup()
        // One more user with many events over half the items (a purchase every 1,000th). The
        // unoptimised test binary takes about 20 s a million events to load a dataset (the
        // SHA-256 fingerprint) and as long to parse a history file, so this test uses 50,000
        // and 100,000; a million were run by hand (README "Limits").
        let ids = try String(contentsOf: s.shop.appendingPathComponent("items.jsonl"), encoding: .utf8)
            .split(separator: "\n").prefix(20).map { line -> String in
                let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                return try XCTUnwrap(object["item_id"] as? String)
            }
        var csv = Data()
        for k in 0..<50_000 {
            csv.append(contentsOf: "heavy,\(ids[(k * 7) % 20]),\(k % 1000 == 999 ? "purchase" : "view"),\(1_700_000_000 + k)\n".utf8)
        }
        let events = try FileHandle(forWritingTo: s.shop.appendingPathComponent("interactions.csv"))
        try events.seekToEnd()
        try events.write(contentsOf: csv)
        try events.close()

        let out = s.root.appendingPathComponent("model")
        let train = try runTMF(trainArguments(s, out: out, steps: 2))
        XCTAssertEqual(train.status, 0, train.stderr)
        let eval = try runTMF(["eval", out.path, "--rank", "--quiet", "--threads", "1"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        XCTAssertTrue(eval.stdout.contains("HitRate@1: ") && eval.stdout.contains("Examples: "), eval.stdout)

        // The user's own history, and a long history as a file: one event a line, and all on one line.
        let user = try runTMF(["recommend", out.path, "--user", "heavy", "--top", "3", "--exclude-history", "--threads", "1"])
        XCTAssertEqual(user.status, 0, user.stderr)
        XCTAssertEqual(user.stdout.split(separator: "\n").count, 3, user.stdout)
        let history = s.root.appendingPathComponent("history.txt")
        var lines = Data(), oneLine = Data()
        for k in 0..<100_000 {
            let event = "view:\(ids[(k * 7) % 20])"
            lines.append(contentsOf: (event + "\n").utf8)
            oneLine.append(contentsOf: (k == 0 ? event : "," + event).utf8)
        }
        for (contents, name) in [(lines, "lines"), (oneLine, "one line")] {
            try contents.write(to: history)
            let r = try runTMF(["recommend", out.path, "--history-file", history.path, "--top", "3", "--exclude-history",
                                "--json", "--threads", "1"])
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            // --exclude-history counts every event of the file: none of the 20 history items is a candidate.
            let answer = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            let candidates = try XCTUnwrap(answer["candidates"] as? [String])
            XCTAssertEqual(candidates.count, 10, name)
            XCTAssertTrue(Set(candidates).isDisjoint(with: ids), "\(name): \(candidates)")
        }
        // The same through --batch, and the limits of the request files.
        let requests = s.root.appendingPathComponent("requests.jsonl")
        try Data("{\"user\": \"heavy\", \"top\": 2}\n".utf8).write(to: requests)
        let batch = try runTMF(["recommend", out.path, "--batch", requests.path, "--threads", "1"])
        XCTAssertEqual(batch.status, 0, batch.stderr)
        XCTAssertEqual(batch.stdout.split(separator: "\n").count, 1, batch.stdout)
        try extend(requests, to: 4 << 30)
        assertFailure(try runTMF(["recommend", out.path, "--batch", requests.path, "--threads", "1"]),
                      mentions: "requests.jsonl:2: the line is longer than 64 MiB")
        try extend(history, to: 4 << 30, prefix: "view:\(ids[0])\n")
        assertFailure(try runTMF(["recommend", out.path, "--history-file", history.path, "--threads", "1"]),
                      mentions: "history.txt:2: the line is longer than 64 MiB")
        try Data("{\"history\": \"view:\(ids[0])\", \"top\": 5000}\n".utf8).write(to: requests)
        assertFailure(try runTMF(["recommend", out.path, "--batch", requests.path, "--threads", "1"]),
                      mentions: "\"top\" 5000 is more than the 1000 allowed")
        let many = (0..<1001).map { "I\($0)" }.joined(separator: ",")
        assertFailure(try runTMF(["recommend", out.path, "--history", "view:\(ids[0])", "--candidates", many, "--threads", "1"]),
                      mentions: "--candidates lists 1001 items, more than the 1000 candidates allowed")
    }
}
