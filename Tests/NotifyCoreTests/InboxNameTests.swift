// Table tests for `InboxPolicy.normalize`, the one function that turns an
// address or a URL path segment into an inbox key for both programs.

import NotifyCore
import XCTest

/// One input that must normalize to `key` and `recipient`.
private struct Accepted {
    var input: String
    var key: String
    var recipient: String

    init(_ input: String, key: String, recipient: String? = nil) {
        self.input = input
        self.key = key
        self.recipient = recipient ?? key
    }
}

/// One input that must be rejected with a reason containing `reason`.
private struct Rejected {
    var input: String
    var reason: String

    init(_ input: String, _ reason: String) {
        self.input = input
        self.reason = reason
    }
}

final class InboxNameTests: XCTestCase {
    private let plus = InboxPolicy(subaddressDelimiter: UInt8(ascii: "+"))
    private let dash = InboxPolicy(subaddressDelimiter: UInt8(ascii: "-"))
    private let served = InboxPolicy(domains: ["example.com", "other.org"])

    // MARK: - Accepted names

    func testPlainNames() {
        check(
            accepted: [
                Accepted("test", key: "test"),
                Accepted("test@example.com", key: "test", recipient: "test@example.com"),
                Accepted("first.last_1-2", key: "first.last_1-2"),
                Accepted("user@[192.0.2.1]", key: "user", recipient: "user@[192.0.2.1]"),
            ])
    }

    func testUppercaseFolded() {
        check(
            accepted: [
                Accepted("TeSt", key: "test"),
                Accepted("TEST@EXAMPLE.COM", key: "test", recipient: "test@example.com"),
                // Only ASCII letters fold: non-ASCII bytes of a UTF-8 local part stay as they are.
                Accepted("Jürgen", key: "jürgen"),
                Accepted("JÜRGEN", key: "jÜrgen"),
                Accepted("ÉLODIE@Example.COM", key: "Élodie", recipient: "Élodie@example.com"),
            ])
    }

    func testAngleBracketsRemoved() {
        check(
            accepted: [
                Accepted("<test>", key: "test"),
                Accepted("<Test@Example.com>", key: "test", recipient: "test@example.com"),
                Accepted("  <test@example.com>  ", key: "test", recipient: "test@example.com"),
            ])
        check(rejected: [Rejected("<>", "empty")])
    }

    func testSurroundingSpacesTrimmed() {
        check(
            accepted: [
                Accepted("  test", key: "test"),
                Accepted("test  ", key: "test"),
                Accepted("\ttest\t", key: "test"),
                Accepted(" test@example.com ", key: "test", recipient: "test@example.com"),
            ])
    }

    // MARK: - Percent-decoding

    func testPercentDecoded() {
        check(
            accepted: [
                Accepted("te%73t", key: "test"),
                Accepted("TE%53T", key: "test"),
                Accepted("j%C3%BCrgen", key: "jürgen"),
                Accepted("test%40example.com", key: "test", recipient: "test@example.com"),
                Accepted("%3Ctest%3E", key: "test"),
            ],
            percentDecoded: true)
    }

    func testPercentLiteralWithoutDecoding() {
        // Addresses from mail are not URL-encoded, so `%` is an ordinary character there.
        check(accepted: [Accepted("te%73t", key: "te%73t")])
    }

    func testPercentInvalidRejected() {
        check(
            rejected: [
                Rejected("%zz", "percent-encoding"),
                Rejected("te%7", "percent-encoding"),
                Rejected("test%", "percent-encoding"),
                Rejected("%g0test", "percent-encoding"),
            ],
            percentDecoded: true)
    }

    func testEncodedSlashRejected() {
        check(
            rejected: [
                Rejected("a%2Fb", "'/'"),
                Rejected("a%2fb", "'/'"),
                Rejected("a%5Cb", "'/'"),
                Rejected("%2F", "'/'"),
            ],
            percentDecoded: true)
    }

    func testDecodedInvalidUTF8Rejected() {
        check(
            rejected: [
                Rejected("te%FFst", "UTF-8"),
                Rejected("te%C3", "UTF-8"),
                // An overlong encoding of '/' must not slip past the '/' check.
                Rejected("a%C0%AFb", "UTF-8"),
                Rejected("%ED%A0%80", "UTF-8"),
            ],
            percentDecoded: true)
    }

    // MARK: - Rejected characters

    func testSlashRejected() {
        check(
            rejected: [
                Rejected("a/b", "'/'"),
                Rejected("a\\b", "'/'"),
                Rejected("test@exa/mple.com", "'/'"),
                Rejected("/", "'/'"),
            ])
    }

    func testControlCharactersRejected() {
        check(
            rejected: [
                Rejected("te\u{0}st", "control"),
                Rejected("te\nst", "control"),
                Rejected("te\rst", "control"),
                Rejected("te\u{1B}st", "control"),
                Rejected("te\u{7F}st", "control"),
                Rejected("te\u{85}st", "control"),
                Rejected("te\u{9F}st", "control"),
                Rejected("test@exam\nple.com", "control"),
            ])
        check(rejected: [Rejected("te%0Ast", "control"), Rejected("te%C2%85st", "control")], percentDecoded: true)
    }

    func testWhitespaceInsideRejected() {
        check(
            rejected: [
                Rejected("te st", "whitespace"),
                Rejected("test @example.com", "whitespace"),
                Rejected("test@ example.com", "whitespace"),
                Rejected("<test >", "whitespace"),
                Rejected("te\u{A0}st", "whitespace"),
                Rejected("te\u{2028}st", "whitespace"),
                Rejected("te\u{3000}st", "whitespace"),
            ])
        check(rejected: [Rejected("te%20st", "whitespace")], percentDecoded: true)
    }

    func testEmptyRejected() {
        check(rejected: [Rejected("", "empty"), Rejected("   ", "empty"), Rejected("\t", "empty")])
        check(rejected: [Rejected("%20", "empty")], percentDecoded: true)
    }

    func testEmptyLocalPartRejected() {
        check(rejected: [Rejected("@example.com", "local part is empty"), Rejected("@", "local part is empty")])
    }

    func testSecondAtRejected() {
        check(rejected: [Rejected("a@b@example.com", "more than one '@'")])
    }

    // MARK: - Length limits

    func testLocalPartMaxLength() {
        let local = String(repeating: "a", count: 64)
        // 32 two-octet characters are 64 octets.
        let multibyte = String(repeating: "ü", count: 32)
        check(
            accepted: [
                Accepted(local, key: local),
                Accepted(local + "@example.com", key: local, recipient: local + "@example.com"),
                Accepted(multibyte, key: multibyte),
            ])
    }

    func testLocalPartTooLong() {
        let local = String(repeating: "a", count: 65)
        check(
            rejected: [
                Rejected(local, "65 octets"),
                Rejected(local + "@example.com", "65 octets"),
                Rejected(String(repeating: "ü", count: 32) + "a", "65 octets"),
            ])
    }

    func testDomainMaxLength() {
        let domain = longDomain(octets: 255)
        check(
            accepted: [
                Accepted("test@" + domain, key: "test", recipient: "test@" + domain),
                // The trailing dot is removed before the length is checked.
                Accepted("test@" + domain + ".", key: "test", recipient: "test@" + domain),
            ])
    }

    func testDomainTooLong() {
        check(rejected: [Rejected("test@" + longDomain(octets: 256), "256 octets")])
    }

    // MARK: - Domains

    func testDomainEmptyLabelRejected() {
        check(
            rejected: [
                Rejected("test@a..b", "empty label"),
                Rejected("test@.example.com", "empty label"),
                Rejected("test@example.com..", "empty label"),
            ])
    }

    func testDomainEmptyRejected() {
        check(rejected: [Rejected("test@", "domain is empty"), Rejected("test@.", "domain is empty")])
    }

    func testDomainInvalidCharacterRejected() {
        check(rejected: [Rejected("test@exa!mple.com", "'!'"), Rejected("test@exa+mple.com", "'+'")])
    }

    func testDomainTrailingDotRemoved() {
        check(accepted: [Accepted("test@Example.com.", key: "test", recipient: "test@example.com")])
    }

    // MARK: - Sub-addresses

    func testSubaddressPlusStripped() {
        check(
            accepted: [
                Accepted("test+tag", key: "test"),
                Accepted("Test+Tag", key: "test"),
                Accepted("test+a+b", key: "test"),
                Accepted("test+", key: "test"),
                Accepted("test+tag@example.com", key: "test", recipient: "test@example.com"),
                Accepted("test-tag", key: "test-tag"),
            ],
            policy: plus)
    }

    func testSubaddressDashStripped() {
        check(
            accepted: [
                Accepted("test-tag", key: "test"),
                Accepted("test-tag@example.com", key: "test", recipient: "test@example.com"),
                Accepted("test+tag", key: "test+tag"),
            ],
            policy: dash)
    }

    func testSubaddressKeptWithoutDelimiter() {
        check(accepted: [Accepted("test+tag", key: "test+tag"), Accepted("test-tag", key: "test-tag")])
    }

    func testDelimiterAtStartKept() {
        // Cutting at offset 0 would leave an empty local part, so the name stays whole.
        check(accepted: [Accepted("+tag", key: "+tag")], policy: plus)
        check(accepted: [Accepted("-tag", key: "-tag")], policy: dash)
        check(accepted: [Accepted("+tag@example.com", key: "+tag", recipient: "+tag@example.com")], policy: plus)
    }

    func testSubaddressStrippedWithDomains() {
        let policy = InboxPolicy(domains: ["example.com"], subaddressDelimiter: UInt8(ascii: "+"))
        check(
            accepted: [
                Accepted("test+tag", key: "test@example.com"),
                Accepted("test+tag@example.com", key: "test@example.com"),
            ],
            policy: policy)
    }

    func testSeveralDelimitersFirstCuts() {
        let policy = InboxPolicy(subaddressDelimiters: Array("+-".utf8))
        check(
            accepted: [
                Accepted("user+tag", key: "user"),
                Accepted("user-tag", key: "user"),
                Accepted("user+a-b", key: "user"),
                Accepted("user-a+b", key: "user"),
                Accepted("User-List+X@Example.com", key: "user", recipient: "user@example.com"),
                Accepted("user=tag", key: "user=tag"),
                // A delimiter at offset 0 keeps the name whole, even when another one follows.
                Accepted("-user+tag", key: "-user+tag"),
            ],
            policy: policy)
    }

    func testCustomDelimiter() {
        let policy = InboxPolicy(subaddressDelimiters: [UInt8(ascii: "=")])
        check(
            accepted: [
                Accepted("user=tag@example.com", key: "user", recipient: "user@example.com"),
                Accepted("user+tag@example.com", key: "user+tag", recipient: "user+tag@example.com"),
            ],
            policy: policy)
    }

    func testSingleDelimiterPropertyCompatible() {
        var policy = InboxPolicy(subaddressDelimiter: UInt8(ascii: "+"))
        XCTAssertEqual(policy.subaddressDelimiters, [UInt8(ascii: "+")])
        XCTAssertEqual(policy.subaddressDelimiter, UInt8(ascii: "+"))
        policy.subaddressDelimiter = nil
        XCTAssertEqual(policy.subaddressDelimiters, [])
        XCTAssertEqual(InboxPolicy(subaddressDelimiters: Array("+-+".utf8)).subaddressDelimiters, Array("+-".utf8))
        XCTAssertEqual(InboxPolicy(subaddressDelimiters: Array("-+".utf8)).subaddressDelimiter, UInt8(ascii: "-"))
        XCTAssertEqual(InboxPolicy(), InboxPolicy(subaddressDelimiters: []))
    }

    func testParseSubaddressDelimiters() {
        let cases: [(String, [UInt8]?)] = [
            ("+", [UInt8(ascii: "+")]),
            ("+-", Array("+-".utf8)),
            ("+-+", Array("+-".utf8)),
            ("", []),
            ("=_.", Array("=_.".utf8)),
            ("a", nil),
            ("+1", nil),
            ("@", nil),
            ("/", nil),
            ("+ ", nil),
            ("ü", nil),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(InboxPolicy.parseSubaddressDelimiters(text), expected, "parse \(text.debugDescription)")
        }
    }

    // MARK: - SMTPUTF8 and internationalized domains

    func testUTF8LocalPartsAccepted() {
        check(
            accepted: [
                Accepted("用户@example.com", key: "用户", recipient: "用户@example.com"),
                Accepted("Δοκιμή@Example.com", key: "Δοκιμή", recipient: "Δοκιμή@example.com"),
                Accepted("почта+новости", key: "почта"),
                Accepted("ñandú+x@example.com", key: "ñandú", recipient: "ñandú@example.com"),
            ],
            policy: plus)
    }

    func testUnicodeDomainToALabel() {
        check(
            accepted: [
                Accepted("user@bücher.example", key: "user", recipient: "user@xn--bcher-kva.example"),
                Accepted("user@BÜCHER.Example", key: "user", recipient: "user@xn--bcher-kva.example"),
                Accepted("user@münchen.de", key: "user", recipient: "user@xn--mnchen-3ya.de"),
                Accepted("user@пример.испытание", key: "user", recipient: "user@xn--e1afmkfd.xn--80akhbyknj4f"),
                Accepted("user@例子.测试", key: "user", recipient: "user@xn--fsqu00a.xn--0zwm56d"),
                Accepted(
                    "Δοκιμή@ΠΑΡΆΔΕΙΓΜΑ.δοκιμή", key: "Δοκιμή", recipient: "Δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp"),
                // A trailing dot and the ideographic full stops separate labels too.
                Accepted("user@bücher.example.", key: "user", recipient: "user@xn--bcher-kva.example"),
                Accepted("user@例子。测试", key: "user", recipient: "user@xn--fsqu00a.xn--0zwm56d"),
                Accepted("user@例子．测试｡", key: "user", recipient: "user@xn--fsqu00a.xn--0zwm56d"),
                // Lowercasing U+212A KELVIN SIGN gives ASCII `k`, so the label stays plain ASCII.
                Accepted("user@\u{212A}elvin.example", key: "user", recipient: "user@kelvin.example"),
            ])
    }

    func testALabelKeptLowercased() {
        check(
            accepted: [
                Accepted("user@xn--bcher-kva.example", key: "user", recipient: "user@xn--bcher-kva.example"),
                Accepted("user@XN--BCHER-KVA.EXAMPLE", key: "user", recipient: "user@xn--bcher-kva.example"),
                // An A-label is not decoded, so one that is not valid Punycode passes too.
                Accepted("user@xn--zz.example", key: "user", recipient: "user@xn--zz.example"),
            ])
    }

    func testULabelEqualsALabel() {
        let policy = InboxPolicy(domains: ["bücher.example"], subaddressDelimiters: [UInt8(ascii: "+")])
        XCTAssertEqual(policy.domains, ["xn--bcher-kva.example"])
        let key = "user@xn--bcher-kva.example"
        check(
            accepted: [
                Accepted("user", key: key),
                Accepted("user@bücher.example", key: key),
                Accepted("User+Tag@BÜCHER.example", key: key),
                Accepted("user@xn--bcher-kva.example", key: key),
                Accepted("USER@XN--BCHER-KVA.EXAMPLE.", key: key),
            ],
            policy: policy)
        check(
            accepted: [
                Accepted("user%40b%C3%BCcher.example", key: key),
                Accepted("user%40xn--bcher-kva.example", key: key),
            ],
            policy: policy, percentDecoded: true)
    }

    func testNormalizeIsIdempotent() {
        let policy = InboxPolicy(subaddressDelimiters: Array("+-".utf8))
        let inputs = [
            "User+Tag@Bücher.Example.", "a+b-c@例子。测试", "-x+y@example.com", "Δοκιμή-1@παράδειγμα.δοκιμή", "plain",
        ]
        for input in inputs {
            do {
                let once = try policy.normalize(input)
                let twice = try policy.normalize(once.recipient)
                XCTAssertEqual(twice, once, "normalize(\(input.debugDescription)) twice")
            } catch {
                XCTFail("normalize(\(input.debugDescription)): got error \(error)")
            }
        }
    }

    func testInvalidInternationalDomainsRejected() {
        let tooLongLabel = String(repeating: "ü", count: 60)
        // 19 labels of `bücher` are 151 octets in UTF-8 but 265 as A-labels (`xn--bcher-kva`).
        let tooLongDomain = Array(repeating: "bücher", count: 19).joined(separator: ".")
        check(
            rejected: [
                Rejected("user@xn--bücher.example", "starts with xn-- but is not ASCII"),
                Rejected("user@[ü]", "address literal contains non-ASCII"),
                Rejected("user@\(tooLongLabel).example", "longer than 63 octets as an A-label"),
                Rejected("user@\(tooLongDomain)", "265 octets as A-labels"),
                Rejected("user@例子。。测试", "empty label"),
                Rejected("user@。例子", "empty label"),
                Rejected("user@bü!cher.example", "'!'"),
                Rejected("user@" + String(repeating: "a", count: 64) + ".example", "longer than the 63 octets"),
            ])
    }

    func testCanonicalDomain() throws {
        XCTAssertEqual(try InboxPolicy.canonicalDomain("Bücher.Example."), "xn--bcher-kva.example")
        XCTAssertEqual(try InboxPolicy.canonicalDomain("EXAMPLE.com"), "example.com")
        XCTAssertThrowsError(try InboxPolicy.canonicalDomain("a..b"))
        XCTAssertThrowsError(try InboxPolicy.canonicalDomain("bü\u{85}cher.example"))
        XCTAssertThrowsError(try InboxPolicy.canonicalDomain("bü\u{A0}cher.example"))
        XCTAssertThrowsError(try InboxPolicy.canonicalDomain("a b.example"))
    }

    // MARK: - Punycode (RFC 3492 section 7.1 sample strings)

    func testPunycodeSampleStrings() {
        let samples: [(String, [UInt32], String)] = [
            ("(A) Arabic", [0x0644, 0x064A, 0x0647, 0x0645, 0x0627, 0x0628, 0x062A, 0x0643, 0x0644,
                            0x0645, 0x0648, 0x0634, 0x0639, 0x0631, 0x0628, 0x064A, 0x061F],
             "egbpdaj6bu4bxfgehfvwxn"),
            ("(B) Chinese simplified", [0x4ED6, 0x4EEC, 0x4E3A, 0x4EC0, 0x4E48, 0x4E0D, 0x8BF4, 0x4E2D, 0x6587],
             "ihqwcrb4cv8a8dqg056pqjye"),
            ("(C) Chinese traditional", [0x4ED6, 0x5011, 0x7232, 0x4EC0, 0x9EBD, 0x4E0D, 0x8AAA, 0x4E2D, 0x6587],
             "ihqwctvzc91f659drss3x8bo0yb"),
            ("(D) Czech", [0x0050, 0x0072, 0x006F, 0x010D, 0x0070, 0x0072, 0x006F, 0x0073, 0x0074,
                           0x011B, 0x006E, 0x0065, 0x006D, 0x006C, 0x0075, 0x0076, 0x00ED, 0x010D,
                           0x0065, 0x0073, 0x006B, 0x0079],
             "Proprostnemluvesky-uyb24dma41a"),
            ("(E) Hebrew", [0x05DC, 0x05DE, 0x05D4, 0x05D4, 0x05DD, 0x05E4, 0x05E9, 0x05D5, 0x05D8,
                            0x05DC, 0x05D0, 0x05DE, 0x05D3, 0x05D1, 0x05E8, 0x05D9, 0x05DD, 0x05E2,
                            0x05D1, 0x05E8, 0x05D9, 0x05EA],
             "4dbcagdahymbxekheh6e0a7fei0b"),
            ("(G) Japanese", [0x306A, 0x305C, 0x307F, 0x3093, 0x306A, 0x65E5, 0x672C, 0x8A9E, 0x3092,
                              0x8A71, 0x3057, 0x3066, 0x304F, 0x308C, 0x306A, 0x3044, 0x306E, 0x304B],
             "n8jok5ay5dzabd5bym9f0cm5685rrjetr6pdxa"),
            ("(H) Korean", [0xC138, 0xACC4, 0xC758, 0xBAA8, 0xB4E0, 0xC0AC, 0xB78C, 0xB4E4, 0xC774,
                            0xD55C, 0xAD6D, 0xC5B4, 0xB97C, 0xC774, 0xD574, 0xD55C, 0xB2E4, 0xBA74,
                            0xC5BC, 0xB9C8, 0xB098, 0xC88B, 0xC744, 0xAE4C],
             "989aomsvi5e83db1d2a355cv1e0vak1dwrv93d5xbh15a0dt30a5jpsd879ccm6fea98c"),
            ("(L) 3<nen>B<gumi><kinpachi><sensei>", [0x0033, 0x5E74, 0x0042, 0x7D44, 0x91D1, 0x516B, 0x5148, 0x751F],
             "3B-ww4c5e180e575a65lsy2b"),
            ("(M) <amuro><namie>-with-SUPER-MONKEYS",
             [0x5B89, 0x5BA4, 0x5948, 0x7F8E, 0x6075] + Array("-with-SUPER-MONKEYS".unicodeScalars.map(\.value)),
             "-with-SUPER-MONKEYS-pc58ag80a8qai00g7n9n"),
            ("(O) <hitotsu><yane><no><shita>2", [0x3072, 0x3068, 0x3064, 0x5C4B, 0x6839, 0x306E, 0x4E0B, 0x0032],
             "2-u9tlzr9756bt3uc0v"),
            ("(R) <sono><supiido><de>", [0x305D, 0x306E, 0x30B9, 0x30D4, 0x30FC, 0x30C9, 0x3067], "d9juau41awczczp"),
            ("(S) ASCII only", Array("-> $1.00 <-".unicodeScalars.map(\.value)), "-> $1.00 <--"),
        ]
        for (name, codePoints, expected) in samples {
            let scalars = codePoints.map { Unicode.Scalar($0)! }
            XCTAssertEqual(Punycode.encode(scalars), expected, name)
        }
    }

    func testPunycodeMixedCaseAnnotationIgnored() {
        // Sample (I) marks one letter uppercase with mixed-case annotation; this encoder writes lowercase digits only.
        let russian: [UInt32] = [
            0x043F, 0x043E, 0x0447, 0x0435, 0x043C, 0x0443, 0x0436, 0x0435, 0x043E, 0x043D, 0x0438, 0x043D,
            0x0435, 0x0433, 0x043E, 0x0432, 0x043E, 0x0440, 0x044F, 0x0442, 0x043F, 0x043E, 0x0440, 0x0443,
            0x0441, 0x0441, 0x043A, 0x0438,
        ]
        XCTAssertEqual(Punycode.encode(russian.map { Unicode.Scalar($0)! }), "b1abfaaepdrnnbgefbadotcwatmq2g4l")
    }

    func testPunycodeSmallCases() {
        XCTAssertEqual(Punycode.encode(Array("bücher".unicodeScalars)), "bcher-kva")
        XCTAssertEqual(Punycode.encode(Array("ü".unicodeScalars)), "tda")
        XCTAssertEqual(Punycode.encode([]), "")
        // The largest code point still encodes without overflow.
        XCTAssertNotNil(Punycode.encode([Unicode.Scalar(0x10FFFF)!, Unicode.Scalar(0x80)!]))
    }

    // MARK: - Domain policy

    func testNoDomainsKeyIsLocalPart() {
        check(
            accepted: [
                Accepted("test", key: "test", recipient: "test"),
                Accepted("test@example.com", key: "test", recipient: "test@example.com"),
                Accepted("test@anything.invalid", key: "test", recipient: "test@anything.invalid"),
            ])
    }

    func testBareNameGetsFirstDomain() {
        check(accepted: [Accepted("test", key: "test@example.com")], policy: served)
    }

    func testServedDomainKept() {
        check(
            accepted: [
                Accepted("test@example.com", key: "test@example.com"),
                Accepted("test@other.org", key: "test@other.org"),
                Accepted("Test@OTHER.ORG.", key: "test@other.org"),
            ],
            policy: served)
    }

    func testUnservedDomainRejected() {
        check(rejected: [Rejected("test@unlisted.net", "unlisted.net")], policy: served)
        check(rejected: [Rejected("test@unlisted.net", "example.com, other.org")], policy: served)
        check(rejected: [Rejected("test@sub.example.com", "not served")], policy: served)
    }

    func testPolicyDomainsLowercased() {
        let policy = InboxPolicy(domains: ["Example.COM"])
        XCTAssertEqual(policy.domains, ["example.com"])
        check(accepted: [Accepted("test@example.com", key: "test@example.com")], policy: policy)
    }

    // MARK: - Errors

    func testErrorDescriptionQuotesInput() {
        XCTAssertThrowsError(try InboxPolicy().normalize("a/b")) { error in
            let description = String(describing: error)
            XCTAssertTrue(description.contains("\"a/b\""), "got \(description), want the input in quotes")
            XCTAssertTrue(description.contains("'/'"), "got \(description), want the reason")
        }
    }

    func testErrorDescriptionEscapesInput() {
        // A control character in the input must not reach a log line raw.
        XCTAssertThrowsError(try InboxPolicy().normalize("te\nst")) { error in
            let description = String(describing: error)
            XCTAssertTrue(description.contains("\"te\\x0ast\""), "got \(description), want the escaped input in quotes")
            XCTAssertFalse(description.contains("\n"), "got \(description), want one line")
        }
    }

    func testErrorInputIsRawValue() {
        XCTAssertThrowsError(try InboxPolicy().normalize("a%2Fb", percentDecoded: true)) { error in
            guard let nameError = error as? InboxNameError else { return XCTFail("got \(error), want InboxNameError") }
            XCTAssertEqual(nameError.input, "a%2Fb")
        }
    }

    // MARK: - Helpers

    private func check(
        accepted cases: [Accepted], policy: InboxPolicy? = nil, percentDecoded: Bool = false,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let policy = policy ?? InboxPolicy()
        for item in cases {
            let label = "normalize(\(item.input.debugDescription), percentDecoded: \(percentDecoded))"
            do {
                let inbox = try policy.normalize(item.input, percentDecoded: percentDecoded)
                XCTAssertEqual(inbox.key, item.key, "\(label) key", file: file, line: line)
                XCTAssertEqual(inbox.recipient, item.recipient, "\(label) recipient", file: file, line: line)
            } catch {
                XCTFail("\(label): got error \(error), want key \(item.key)", file: file, line: line)
            }
        }
    }

    private func check(
        rejected cases: [Rejected], policy: InboxPolicy? = nil, percentDecoded: Bool = false,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let policy = policy ?? InboxPolicy()
        for item in cases {
            let label = "normalize(\(item.input.debugDescription), percentDecoded: \(percentDecoded))"
            do {
                let inbox = try policy.normalize(item.input, percentDecoded: percentDecoded)
                XCTFail("\(label): got key \(inbox.key), want an error about \(item.reason)", file: file, line: line)
            } catch {
                XCTAssertTrue(
                    error.reason.contains(item.reason), "\(label): got reason \(error.reason.debugDescription), "
                        + "want one containing \(item.reason.debugDescription)", file: file, line: line)
            }
        }
    }

    /// Builds a domain of exactly `octets` octets: labels of 63 octets, then one last label of 1 to 64 octets.
    private func longDomain(octets: Int) -> String {
        var labels: [String] = []
        var remaining = octets
        while remaining > 64 {
            labels.append(String(repeating: "a", count: 63))
            remaining -= 64
        }
        labels.append(String(repeating: "b", count: remaining))
        let domain = labels.joined(separator: ".")
        precondition(domain.utf8.count == octets && remaining > 0)
        return domain
    }
}
