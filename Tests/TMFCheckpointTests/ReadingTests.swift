import Foundation
import XCTest
import TMFCheckpoint
import TMFTensor

/// Files written by Python's `safetensors.torch.save_file` load with the values Python reports.
final class ReadingTests: XCTestCase {
    func checkFixture(_ name: String) throws {
        let expected = try ExpectedFile.load(name)
        let file = try SafeTensorsFile(contentsOf: safetensorsFixtures.appendingPathComponent(expected.file))
        XCTAssertEqual(Set(file.tensorNames), Set(expected.tensors.keys), name)
        if let meta = expected.metadataEntries {
            XCTAssertEqual(file.metadata, Dictionary(uniqueKeysWithValues: meta.map { ($0.key, $0.value) }))
        } else {
            XCTAssertNil(file.metadataEntries)
            XCTAssertEqual(file.metadata, [:])
        }
        for (key, entry) in expected.tensors {
            let info = try file.info(named: key)
            XCTAssertEqual(info.dtype.rawValue, entry.dtype, key)
            XCTAssertEqual(info.shape, entry.shape, key)
            if let want = entry.expected_bits {
                let t = try file.tensor(named: key)
                XCTAssertEqual(t.shape, entry.shape, key)
                XCTAssertEqual(t.name, key)
                // Bit patterns: exact for ±0, subnormals, infinities and NaN payloads.
                XCTAssertEqual(bits(t).map { String($0, radix: 16) }, want.map { String($0, radix: 16) },
                               "\(name): \(key)")
                // The in-place reader gives the same bits.
                let dest = Tensor(zeros: entry.shape)
                try file.read(named: key, into: dest)
                XCTAssertEqual(bits(dest), want, "\(name): \(key) read(into:)")
                if info.dtype == .bf16 {
                    XCTAssertEqual(try file.bf16Bits(named: key).map { UInt32($0) << 16 }, want)
                }
            }
            if let ints = entry.int_values {
                let err = assertThrowsCheckpointError("cannotConvertToFloat32") { try file.tensor(named: key) }
                XCTAssertTrue(err?.errorDescription?.contains(key) ?? false)
                XCTAssertTrue(err?.errorDescription?.contains("cannot convert to Float32") ?? false)
                let raw = try file.rawBytes(named: key)
                let decoded = stride(from: 0, to: raw.count, by: 8).map { i in
                    raw[i..<i + 8].reversed().reduce(Int64(0)) { $0 << 8 | Int64($1) }
                }
                XCTAssertEqual(decoded.map(Int.init), ints)
            }
        }
    }

    func testF32FixtureWithAwkwardValuesAndMetadata() throws {
        try checkFixture("f32")
        let file = try SafeTensorsFile(contentsOf: safetensorsFixtures.appendingPathComponent("f32.safetensors"))
        XCTAssertEqual(file.metadata["note"], "quote\" back\\slash /slash\nnewline\ttab \u{01}ctrl \u{7f} del é ✓ 😀")
        XCTAssertEqual(try file.info(named: "z.empty").shape, [0, 3])
        XCTAssertEqual(try file.info(named: "a_b").shape, [])
    }

    func testF16Fixture() throws { try checkFixture("f16") }
    func testBF16Fixture() throws { try checkFixture("bf16") }
    func testF64Fixture() throws { try checkFixture("f64") }
    func testMixedDTypesFixture() throws { try checkFixture("mixed") }

    func testAccessorsReportMissingAndWrongDType() throws {
        let file = try SafeTensorsFile(contentsOf: safetensorsFixtures.appendingPathComponent("f32.safetensors"))
        let e = assertThrowsCheckpointError("tensorNotFound") { try file.tensor(named: "nope") }
        XCTAssertTrue(e?.errorDescription?.contains("nope") ?? false)
        XCTAssertTrue(e?.errorDescription?.contains("f32.safetensors") ?? false)
        assertThrowsCheckpointError("dtypeMismatch") { try file.bf16Bits(named: "a") }
        assertThrowsCheckpointError("elementCountMismatch") { try file.read(named: "a", into: Tensor(zeros: [3])) }
    }

    func testTensorsOutliveTheFileObject() throws {
        let expected = try ExpectedFile.load("f32")
        var tensors: [String: Tensor] = [:]
        do {
            let file = try SafeTensorsFile(contentsOf: safetensorsFixtures.appendingPathComponent("f32.safetensors"))
            for name in file.tensorNames { tensors[name] = try file.tensor(named: name) }
        }
        for (name, t) in tensors {
            XCTAssertEqual(bits(t), expected.tensors[name]!.expected_bits!)
        }
        // Aliased or copied, a tensor can be written in place without touching the file.
        let a = tensors["a"]!
        a.pointer[0] = 42
        let reread = try SafeTensorsFile(contentsOf: safetensorsFixtures.appendingPathComponent("f32.safetensors"))
        XCTAssertEqual(try reread.tensor(named: "a").scalars[0].bitPattern, expected.tensors["a"]!.expected_bits![0])
    }

    func testAlignedF32AliasesTheMapping() throws {
        // Header of 56 bytes → data at byte 64; a page-aligned mapping makes it 64-byte aligned.
        var header = "{\"x\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[0,64]}}"
        while (8 + header.utf8.count) % 64 != 0 { header += " " }
        let values = (0..<16).map { Float($0) * 0.5 }
        let data = values.withUnsafeBytes { Array($0) }
        let dir = try makeTemporaryDirectory(self)
        let url = try writeFile(safetensorsBytes(header: header, data: data), "aligned.safetensors", in: dir)
        let t = try SafeTensorsFile(contentsOf: url).tensor(named: "x")
        XCTAssertEqual(Int(bitPattern: t.pointer) % 64, 0)
        XCTAssertEqual(t.scalars, values)
    }

    func testHalfConversionRoundTripsEveryFinitePattern() {
        for b in 0...UInt16.max {
            let f16 = HalfConversion.float(fromFloat16Bits: b)
            let bf16 = HalfConversion.float(fromBFloat16Bits: b)
            if f16.isNaN {
                XCTAssertTrue(HalfConversion.float16Bits(f16) == b | 0x0200)
            } else {
                XCTAssertEqual(HalfConversion.float16Bits(f16), b)
            }
            if !bf16.isNaN { XCTAssertEqual(HalfConversion.bfloat16Bits(bf16), b) }
        }
    }
}
