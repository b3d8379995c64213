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
