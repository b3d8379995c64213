// Table tests for the structured log line format: `Logger.format` and the
// quoting rules of `Logger.logValue`.

import NotifyCore
import XCTest

final class LoggerTests: XCTestCase {
    func testPlainValueUnquoted() {
        for value in ["test", "test@example.com", "42", "a-b_c.d:e/f", "jürgen", "a\\b"] {
            XCTAssertEqual(Logger.logValue(value), value, "logValue(\(value.debugDescription))")
        }
    }

    func testValueQuoted() {
        let cases: [(value: String, want: String)] = [
            ("", #""""#),
            ("relay started", #""relay started""#),
            (" ", #"" ""#),
            ("a=b", #""a=b""#),
            ("a\"b", #""a\"b""#),
            ("say \"hi\"", #""say \"hi\"""#),
            ("a \\ b", #""a \\ b""#),
        ]
        for item in cases {
            XCTAssertEqual(Logger.logValue(item.value), item.want, "logValue(\(item.value.debugDescription))")
        }
    }

    func testControlCharactersEscaped() {
        let cases: [(value: String, want: String)] = [
            ("a\nb", #""a\nb""#),
            ("a\rb", #""a\x0db""#),
            ("a\tb", #""a\x09b""#),
            ("a\u{0}b", #""a\x00b""#),
            ("a\u{1B}b", #""a\x1bb""#),
            ("a\u{7F}b", #""a\x7fb""#),
            ("a\u{85}b", #""a\x85b""#),
        ]
        for item in cases {
            XCTAssertEqual(Logger.logValue(item.value), item.want, "logValue(\(item.value.debugDescription))")
        }
    }

    func testFormat() {
        let cases: [(message: String, fields: [(String, String)], want: String)] = [
            ("started", [], "level=info msg=started"),
            ("relay started", [], #"level=info msg="relay started""#),
            ("accepted", [("inbox", "test"), ("size", "1234")], "level=info msg=accepted inbox=test size=1234"),
            ("rejected", [("reason", "bad name"), ("input", "")], #"level=info msg=rejected reason="bad name" input="""#),
        ]
        for item in cases {
            XCTAssertEqual(Logger.format(level: .info, message: item.message, fields: item.fields), item.want)
        }
    }

    func testFormatLevelNames() {
        XCTAssertEqual(Logger.format(level: .debug, message: "m", fields: []), "level=debug msg=m")
        XCTAssertEqual(Logger.format(level: .warning, message: "m", fields: []), "level=warning msg=m")
        XCTAssertEqual(Logger.format(level: .error, message: "m", fields: []), "level=error msg=m")
    }

    func testFormatStaysOneLine() {
        // A stranger's subject must not be able to start a forged second line.
        let subject = "Hi\nlevel=error msg=forged\r\nx\u{85}y"
        let line = Logger.format(level: .info, message: "mail\nreceived", fields: [("subject", subject)])
        XCTAssertFalse(line.contains("\n"), line)
        XCTAssertFalse(line.contains("\r"), line)
        XCTAssertFalse(line.unicodeScalars.contains("\u{85}"), line)
        XCTAssertEqual(
            line, #"level=info msg="mail\nreceived" subject="Hi\nlevel=error msg=forged\x0d\nx\x85y""#)
    }

    func testLogLevelNames() {
        for level in LogLevel.allCases {
            XCTAssertEqual(LogLevel(name: level.name), level)
        }
        XCTAssertNil(LogLevel(name: "verbose"))
        XCTAssertNil(LogLevel(name: "INFO"))
        XCTAssertNil(LogLevel(name: ""))
    }

    func testLogLevelOrder() {
        XCTAssertLessThan(LogLevel.debug, .info)
        XCTAssertLessThan(LogLevel.info, .warning)
        XCTAssertLessThan(LogLevel.warning, .error)
    }
}
