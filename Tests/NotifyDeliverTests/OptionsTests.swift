// Table tests for command-line parsing.

import XCTest

@testable import NotifyDeliver

final class OptionsTests: XCTestCase {
    private func options(_ arguments: [String]) -> DeliverOptions? {
        guard case .success(.deliver(let options)) = parseCommandLine(arguments) else { return nil }
        return options
    }

    private func error(_ arguments: [String]) -> UsageError? {
        guard case .failure(let error) = parseCommandLine(arguments) else { return nil }
        return error
    }

    func testDefaults() {
        let parsed = options([])
        XCTAssertEqual(parsed?.timeoutSeconds, 5)
        XCTAssertNil(parsed?.socketPath)
        XCTAssertEqual(parsed?.tempfail, false)
        XCTAssertEqual(parsed?.dryRun, false)
        XCTAssertEqual(parsed?.verbose, false)
        XCTAssertEqual(parsed?.recipients, [])
    }

    func testEachOption() {
        XCTAssertEqual(options(["--socket", "/tmp/s"])?.socketPath, "/tmp/s")
        XCTAssertEqual(options(["--socket=/tmp/s"])?.socketPath, "/tmp/s")
        XCTAssertEqual(options(["--timeout", "0.5"])?.timeoutSeconds, 0.5)
        XCTAssertEqual(options(["--timeout=2"])?.timeoutSeconds, 2)
        XCTAssertEqual(options(["--timeout", "300"])?.timeoutSeconds, 300)
        XCTAssertEqual(options(["--tempfail"])?.tempfail, true)
        XCTAssertEqual(options(["--dry-run"])?.dryRun, true)
        XCTAssertEqual(options(["--verbose"])?.verbose, true)
        XCTAssertEqual(parseCommandLine(["--help"]), .success(.help))
        XCTAssertEqual(parseCommandLine(["-h"]), .success(.help))
        XCTAssertEqual(parseCommandLine(["--version"]), .success(.version))
    }

    func testRecipientsAndDoubleDash() {
        XCTAssertEqual(options(["a@x", "--dry-run", "b@x"])?.recipients, ["a@x", "b@x"])
        XCTAssertEqual(options(["--", "--dry-run", "-x"])?.recipients, ["--dry-run", "-x"])
        XCTAssertEqual(options(["--", "--dry-run"])?.dryRun, false)
        XCTAssertEqual(options(["-"])?.recipients, ["-"])
    }

    func testBadValues() {
        let cases: [([String], String)] = [
            (["--timeout", "abc"], "invalid value \"abc\" for --timeout"),
            (["--timeout", "0"], "invalid value \"0\" for --timeout"),
            (["--timeout", "-1"], "invalid value \"-1\" for --timeout"),
            (["--timeout", "301"], "invalid value \"301\" for --timeout"),
            (["--timeout", "inf"], "invalid value \"inf\" for --timeout"),
            (["--timeout", "nan"], "invalid value \"nan\" for --timeout"),
            (["--timeout", "1e3"], "invalid value \"1e3\" for --timeout"),
            (["--timeout", "1.2.3"], "invalid value \"1.2.3\" for --timeout"),
            (["--timeout="], "invalid value \"\" for --timeout"),
            (["--timeout"], "missing value for --timeout"),
            (["--socket"], "missing value for --socket"),
            (["--socket="], "missing value for --socket"),
            (["--dry-run=yes"], "option --dry-run takes no value"),
            (["--bogus"], "unknown option \"--bogus\""),
            (["-x"], "unknown option \"-x\""),
        ]
        for (arguments, prefix) in cases {
            let message = error(arguments)?.message ?? "(parsed without error)"
            XCTAssertTrue(message.hasPrefix(prefix), "\(arguments): got \(message)")
        }
        XCTAssertTrue(error(["--timeout", "abc"])?.message.contains("such as 5 or 0.5") ?? false)
    }

    func testFlagsAfterErrorStillApply() {
        let failure = error(["--timeout", "abc", "--verbose", "--tempfail"])
        XCTAssertEqual(failure?.partialOptions.verbose, true)
        XCTAssertEqual(failure?.partialOptions.tempfail, true)
        XCTAssertEqual(error(["--bogus", "--", "--verbose"])?.partialOptions.verbose, false)
    }

    func testSubaddressDelimiterOption() {
        XCTAssertEqual(options(["--subaddress-delimiter", "+"])?.subaddressDelimiters, [UInt8(ascii: "+")])
        XCTAssertEqual(options(["--subaddress-delimiter=+-"])?.subaddressDelimiters, Array("+-".utf8))
        XCTAssertEqual(options(["--subaddress-delimiter", "++"])?.subaddressDelimiters, [UInt8(ascii: "+")])
        XCTAssertEqual(options(["--subaddress-delimiter="])?.subaddressDelimiters, [])
        XCTAssertEqual(options([])?.subaddressDelimiters, [])
        let cases: [([String], String)] = [
            (["--subaddress-delimiter"], "missing value for --subaddress-delimiter"),
            (["--subaddress-delimiter", "a"], "invalid value \"a\" for --subaddress-delimiter"),
            (["--subaddress-delimiter", "+@"], "invalid value \"+@\" for --subaddress-delimiter"),
            (["--subaddress-delimiter", "/"], "invalid value \"/\" for --subaddress-delimiter"),
            (["--subaddress-delimiter", "+ "], "invalid value \"+ \" for --subaddress-delimiter"),
            (["--subaddress-delimiter", "ü"], "invalid value \"ü\" for --subaddress-delimiter"),
        ]
        for (arguments, prefix) in cases {
            let message = error(arguments)?.message ?? "(parsed without error)"
            XCTAssertTrue(message.hasPrefix(prefix), "\(arguments): got \(message)")
        }
    }

    func testExecTakesRestOfLine() {
        let parsed = options(["--timeout", "2", "a@x", "--exec", "/usr/lib/dovecot/dovecot-lda", "-d", "a", "--verbose"])
        XCTAssertEqual(parsed?.execArguments, ["/usr/lib/dovecot/dovecot-lda", "-d", "a", "--verbose"])
        XCTAssertEqual(parsed?.recipients, ["a@x"])
        XCTAssertEqual(parsed?.timeoutSeconds, 2)
        XCTAssertEqual(parsed?.verbose, false)
        XCTAssertEqual(options(["--exec=/bin/cat"])?.execArguments, ["/bin/cat"])
        XCTAssertEqual(options(["--exec", "procmail", "--", "--help"])?.execArguments, ["procmail", "--", "--help"])
        XCTAssertNil(options(["a@x"])?.execArguments)
    }

    func testExecAfterDoubleDash() {
        let parsed = options(["--", "-odd@x", "--exec", "/bin/cat", "-u"])
        XCTAssertEqual(parsed?.recipients, ["-odd@x"])
        XCTAssertEqual(parsed?.execArguments, ["/bin/cat", "-u"])
    }

    func testExecErrorsMarkWrapperMode() {
        let cases: [([String], String)] = [
            (["--exec"], "missing value for --exec"),
            (["--exec="], "missing value for --exec"),
            (["--bogus", "--exec", "/bin/cat"], "unknown option \"--bogus\""),
            (["--timeout", "x", "--exec=/bin/cat"], "invalid value \"x\" for --timeout"),
        ]
        for (arguments, prefix) in cases {
            let failure = error(arguments)
            XCTAssertTrue(failure?.message.hasPrefix(prefix) ?? false, "\(arguments): got \(String(describing: failure))")
            XCTAssertNotNil(failure?.partialOptions.execArguments, "\(arguments): want wrapper mode marked")
        }
        XCTAssertNil(error(["--bogus"])?.partialOptions.execArguments)
    }

    func testHelpNamesEveryOption() {
        for option in ["--socket PATH", "--timeout SECONDS", "--tempfail", "--dry-run", "--verbose", "--help",
                       "--version", "default: 5", "seconds", "--subaddress-delimiter CHARS", "--exec PROGRAM",
                       "EX_TEMPFAIL"] {
            XCTAssertTrue(helpText.contains(option), "help text lacks \(option)")
        }
    }
}
