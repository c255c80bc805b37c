import Foundation

/// Parses a timestamp: integer or decimal unix seconds (`1714564800`, `1714564800.25`) or
/// ISO-8601 (`2024-05-01`, `2024-05-01T12:00`, `2024-05-01T12:00:00.5Z`, `2024-05-01 12:00:00+02:00`;
/// no zone means UTC). Returns seconds since 1970 or nil.
public func parseTimestamp(_ text: String) -> Double? {
    if let v = Int64(text) { return Double(v) }  // the common case, fast
    let s = Array(text.utf8.drop(while: { $0 == 0x20 }).reversed().drop(while: { $0 == 0x20 }).reversed())
    if s.isEmpty { return nil }
    // Plain number.
    if s.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E || $0 == 0x2D }) && !s.dropFirst().contains(0x2D) {
        return Double(String(decoding: s, as: UTF8.self)).flatMap { $0.isFinite ? $0 : nil }
    }
    var i = 0
    func digits(_ n: Int) -> Int? {
        guard i + n <= s.count else { return nil }
        var v = 0
        for k in i..<i + n {
            let c = s[k]
            guard c >= 0x30 && c <= 0x39 else { return nil }
            v = v * 10 + Int(c - 0x30)
        }
        i += n
        return v
    }
    func expect(_ c: UInt8) -> Bool {
        if i < s.count && s[i] == c { i += 1; return true }
        return false
    }
    guard let year = digits(4), expect(0x2D), let month = digits(2), expect(0x2D), let day = digits(2),
          (1...12).contains(month), (1...daysIn(month: month, year: year)).contains(day)
    else { return nil }
    var seconds = Double(daysFromCivil(year: year, month: month, day: day)) * 86_400
    if i == s.count { return seconds }
    guard expect(0x54) || expect(0x20) || expect(0x74) else { return nil }
    guard let hour = digits(2), expect(0x3A), let minute = digits(2), hour < 24, minute < 60 else { return nil }
    seconds += Double(hour * 3600 + minute * 60)
    if expect(0x3A) {
        guard let sec = digits(2), sec <= 60 else { return nil }
        seconds += Double(sec)
        if expect(0x2E) || expect(0x2C) {
            var scale = 0.1
            var any = false
            while i < s.count, s[i] >= 0x30 && s[i] <= 0x39 {
                seconds += Double(s[i] - 0x30) * scale
                scale /= 10
                i += 1
                any = true
            }
            if !any { return nil }
        }
    }
    if i == s.count { return seconds }
    if expect(0x5A) || expect(0x7A) { return i == s.count ? seconds : nil }
    let sign: Double
    if expect(0x2B) { sign = 1 } else if expect(0x2D) { sign = -1 } else { return nil }
    guard let zh = digits(2), zh < 24 else { return nil }
    _ = expect(0x3A)
    guard let zm = digits(2), zm < 60, i == s.count else { return nil }
    return seconds - sign * Double(zh * 3600 + zm * 60)
}

private func isLeap(_ y: Int) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

private func daysIn(month: Int, year: Int) -> Int {
    switch month {
    case 2: return isLeap(year) ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
private func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let mp = (month + 9) % 12
    let doy = (153 * mp + 2) / 5 + day - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
}
