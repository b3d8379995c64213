// Punycode encoding (RFC 3492), the transfer encoding that turns a Unicode
// domain label (U-label) into the ASCII form DNS uses (A-label, `xn--...`).
//
// Only the encoder is here: inbox names need one canonical form per domain,
// and the A-label is that form, so a domain given in Unicode is encoded and a
// domain given as `xn--` is kept. The procedure and parameters follow
// RFC 3492 sections 5, 6.1 and 6.3. Overflow is detected at each step
// (section 6.4), so no input can trap.
//
// Trust boundary: the input comes from mail addresses and URL paths. Callers
// cap the label length first (`InboxPolicy` allows at most 59 code points, the
// most that fits into 63 octets after `xn--`), so the quadratic encoder loop
// stays small.
//
// NOTE: this is Punycode alone, not IDNA. No NFC normalization, no IDNA2008
// validity tables and no bidi rules are applied: a label that IDNA2008 would
// reject (symbols, unassigned code points) is encoded like any other.

/// The Punycode encoder of RFC 3492.
public enum Punycode {
    // Parameter values for Punycode, RFC 3492 section 5.
    private static let base = 36
    private static let tMin = 1
    private static let tMax = 26
    private static let skew = 38
    private static let damp = 700
    private static let initialBias = 72
    private static let initialN = 0x80
    private static let delimiter = UInt8(ascii: "-")
    /// Largest value any intermediate result may reach; beyond it the input is rejected.
    private static let maxValue = Int(UInt32.max)

    /// Encodes `scalars` into a Punycode string, without the `xn--` prefix.
    ///
    /// Basic (ASCII) code points are copied as they are, case included, so the
    /// caller lowercases first when it needs a canonical form. Returns nil when
    /// an intermediate value would exceed 2^32 - 1 (RFC 3492 section 6.4).
    public static func encode(_ scalars: [Unicode.Scalar]) -> String? {
        let input = scalars.map { Int($0.value) }
        var output: [UInt8] = input.filter { $0 < initialN }.map { UInt8($0) }
        let basicCount = output.count
        if basicCount > 0 { output.append(delimiter) }

        var n = initialN
        var delta = 0
        var bias = initialBias
        var handled = basicCount

        while handled < input.count {
            // The smallest code point not yet handled; every code point below
            // it has been inserted in an earlier round.
            guard let next = input.filter({ $0 >= n }).min() else { return nil }
            let (step, stepOverflow) = (next - n).multipliedReportingOverflow(by: handled + 1)
            guard !stepOverflow, step <= maxValue - delta else { return nil }
            delta += step
            n = next

            for codePoint in input {
                if codePoint < n {
                    delta += 1
                    guard delta <= maxValue else { return nil }
                }
                if codePoint == n {
                    appendVariableLengthInteger(delta, bias: bias, to: &output)
                    bias = adapt(delta: delta, pointCount: handled + 1, isFirst: handled == basicCount)
                    delta = 0
                    handled += 1
                }
            }
            delta += 1
            n += 1
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Appends `value` as a generalized variable-length integer (RFC 3492 section 3.3).
    private static func appendVariableLengthInteger(_ value: Int, bias: Int, to output: inout [UInt8]) {
        var q = value
        var k = base
        while true {
            let threshold = k <= bias ? tMin : (k >= bias + tMax ? tMax : k - bias)
            if q < threshold { break }
            output.append(digit(threshold + (q - threshold) % (base - threshold)))
            q = (q - threshold) / (base - threshold)
            k += base
        }
        output.append(digit(q))
    }

    /// The bias adaptation function of RFC 3492 section 6.1.
    private static func adapt(delta: Int, pointCount: Int, isFirst: Bool) -> Int {
        var delta = isFirst ? delta / damp : delta / 2
        delta += delta / pointCount
        var k = 0
        while delta > ((base - tMin) * tMax) / 2 {
            delta /= base - tMin
            k += base
        }
        return k + ((base - tMin + 1) * delta) / (delta + skew)
    }

    /// Returns the lowercase code point for a digit value: 0-25 are `a`-`z`, 26-35 are `0`-`9`.
    private static func digit(_ value: Int) -> UInt8 {
        value < 26 ? UInt8(ascii: "a") + UInt8(value) : UInt8(ascii: "0") + UInt8(value - 26)
    }
}
