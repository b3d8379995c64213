// Table tests for the JSON reader (`parseJSON`) and writer (`appendJSONString`,
// `JSONObjectWriter`) that carry ingest records and event bodies.

import NotifyCore
import XCTest

final class JSONTests: XCTestCase {
    // MARK: - Values

    func testParseScalars() {
        let cases: [(text: String, want: JSONValue)] = [
            ("null", .null),
            ("true", .bool(true)),
            ("false", .bool(false)),
            ("0", .number(0)),
            ("-0", .number(0)),
            ("42", .number(42)),
            ("-17", .number(-17)),
            ("1.5", .number(1.5)),
            ("1e3", .number(1000)),
            ("2E+2", .number(200)),
            ("-2.5e-2", .number(-0.025)),
            ("\"\"", .string("")),
            ("\"abc\"", .string("abc")),
            ("\"ü 😀\"", .string("ü 😀")),
            (" \t\r\n1\n", .number(1)),
        ]
        for item in cases {
            XCTAssertEqual(parsed(item.text), item.want, "parseJSON(\(item.text.debugDescription))")
        }
    }

    func testParseArray() {
        XCTAssertEqual(parsed("[]"), .array([]))
        XCTAssertEqual(parsed("[ ]"), .array([]))
        XCTAssertEqual(parsed("[1, \"a\", null, [true]]"), .array([.number(1), .string("a"), .null, .array([.bool(true)])]))
    }

    func testParseObject() {
        XCTAssertEqual(parsed("{}"), .object([]))
        XCTAssertEqual(parsed("{ }"), .object([]))
        let value = parsed("{\"a\": 1, \"b\": [true, null], \"c\": {\"d\": \"e\"}}")
        XCTAssertEqual(value?["a"], .number(1))
        XCTAssertEqual(value?["b"], .array([.bool(true), .null]))
        XCTAssertEqual(value?["c"]?["d"], .string("e"))
        XCTAssertNil(value?["missing"])
    }

    func testObjectKeepsMemberOrder() {
        XCTAssertEqual(parsed("{\"b\":1,\"a\":2}"), .object([("b", .number(1)), ("a", .number(2))]))
        XCTAssertNotEqual(parsed("{\"b\":1,\"a\":2}"), .object([("a", .number(2)), ("b", .number(1))]))
    }

    func testDuplicateKeyLastWins() {
        let value = parsed("{\"a\":1,\"b\":0,\"a\":2}")
        XCTAssertEqual(value?["a"], .number(2))
        XCTAssertEqual(value?["b"], .number(0))
    }

    func testSubscriptOnNonObject() {
        XCTAssertNil(JSONValue.array([.string("a")])["a"])
        XCTAssertNil(JSONValue.string("a")["a"])
        XCTAssertNil(JSONValue.null["a"])
    }

    // MARK: - Strings

    func testStringEscapes() {
        let cases: [(text: String, want: String)] = [
            (#""\"""#, "\""),
            (#""\\""#, "\\"),
            (#""\/""#, "/"),
            (#""\b\f\n\r\t""#, "\u{8}\u{C}\n\r\t"),
            (#""\u0041""#, "A"),
            (#""\u00fc\u00FC""#, "üü"),
            (#""\u20ac""#, "€"),
            (#""\u0000""#, "\u{0}"),
            (#""\u2028""#, "\u{2028}"),
            (#""\uD83D\uDE00""#, "😀"),
            (#""\ud834\udd1e""#, "𝄞"),
            (#""a\u0062c""#, "abc"),
        ]
        for item in cases {
            XCTAssertEqual(parsed(item.text), .string(item.want), "parseJSON(\(item.text))")
        }
    }

    func testLoneSurrogateRejected() {
        let cases: [(text: String, reason: String)] = [
            (#""\uD83D""#, "lone high surrogate"),
            (#""\uD83Dx""#, "lone high surrogate"),
            (#""\uD83D\n""#, "lone high surrogate"),
            (#""\uD83D\u0041""#, "invalid low surrogate"),
            (#""\uD83D\uD83D""#, "invalid low surrogate"),
            (#""\uDE00""#, "lone low surrogate"),
            (#""\uDFFF\uD83D""#, "lone low surrogate"),
        ]
        for item in cases {
            XCTAssertEqual(rejection(item.text), item.reason, "parseJSON(\(item.text))")
        }
    }

    func testStringControlCharacterRejected() {
        for text in ["\"a\nb\"", "\"a\tb\"", "\"a\u{0}b\"", "\"a\u{1F}b\"", "{\"a\nb\":1}"] {
            XCTAssertEqual(rejection(text), "control character in a string", "parseJSON(\(text.debugDescription))")
        }
    }

    func testBadEscapeRejected() {
        let cases: [(text: String, reason: String)] = [
            (#""\x41""#, "invalid escape"),
            (#""\'""#, "invalid escape"),
            (#""\u12""#, "truncated \\u escape"),
            (#""\u12G4""#, "invalid \\u escape"),
            ("\"\\", "unterminated escape"),
        ]
        for item in cases {
            XCTAssertEqual(rejection(item.text)?.hasPrefix(item.reason), true, "parseJSON(\(item.text))")
        }
    }

    func testInvalidUTF8Rejected() {
        let cases: [(name: String, bytes: [UInt8])] = [
            ("0xFF in a string", [0x22, 0xFF, 0x22]),
            ("truncated sequence", [0x22, 0x61, 0xC3, 0x22]),
            ("overlong '/'", [0x22, 0xC0, 0xAF, 0x22]),
            ("encoded surrogate", [0x22, 0xED, 0xA0, 0x80, 0x22]),
            ("invalid key", [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D]),
            ("byte outside a string", [0x5B, 0xFF, 0x5D]),
        ]
        for item in cases {
            XCTAssertThrowsError(try parseJSON(item.bytes), item.name)
        }
    }

    // MARK: - Structure

    func testTrailingDataRejected() {
        for text in ["1 2", "{} x", "[1]]", "nullx", "truex", "\"a\"\"b\"", "{}{}"] {
            XCTAssertEqual(rejection(text), "unexpected data after the JSON value", "parseJSON(\(text.debugDescription))")
        }
    }

    func testMalformedRejected() {
        let cases = [
            "", " ", "{", "[", "[1,", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{a:1}", "{1:1}",
            "\"abc", "'a'", "tru", "nul", "True", "[1 2]", "{\"a\":1 \"b\":2}",
        ]
        for text in cases {
            XCTAssertThrowsError(try parseJSON(Array(text.utf8)), "parseJSON(\(text.debugDescription))")
        }
    }

    func testNumberGrammarStrict() {
        // RFC 8259 numbers: no sign '+', no leading zeros, digits on both sides of '.', digits after 'e'.
        for text in ["+1", "01", "-01", ".5", "1.", "-", "1e", "1e+", "--1", "1-2", "1.2.3", "0x10", "1e400", "NaN"] {
            XCTAssertThrowsError(try parseJSON(Array(text.utf8)), "parseJSON(\(text.debugDescription))")
        }
    }

    func testErrorOffset() {
        XCTAssertThrowsError(try parseJSON(Array("[1, x]".utf8))) { error in
            XCTAssertEqual((error as? JSONError)?.offset, 4)
            XCTAssertEqual(String(describing: error), "invalid JSON at byte 4: expected a JSON value")
        }
    }

    func testDepthLimit() {
        XCTAssertNotNil(parsed(nested(32)), "32 nested arrays with the default limit of 32")
        XCTAssertEqual(rejection(nested(33)), "nesting deeper than 32 levels")
        XCTAssertNotNil(parsed("{\"a\":[1]}", maxDepth: 2))
        XCTAssertNotNil(parsed("7", maxDepth: 0))
        XCTAssertEqual(rejection("[[1]]", maxDepth: 1), "nesting deeper than 1 levels")
        XCTAssertEqual(rejection("{\"a\":{\"b\":{}}}", maxDepth: 2), "nesting deeper than 2 levels")
    }

    func testDeepNestingNoCrash() {
        // A hostile line of 60,000 brackets must fail cleanly, not overflow the stack.
        XCTAssertEqual(rejection(String(repeating: "[", count: 60_000)), "nesting deeper than 32 levels")
        XCTAssertEqual(rejection(String(repeating: "{\"a\":", count: 60_000)), "nesting deeper than 32 levels")
    }

    // MARK: - Writer

    func testAppendJSONStringEscapes() {
        let cases: [(input: String, want: String)] = [
            ("plain", #""plain""#),
            ("", #""""#),
            ("a\"b", #""a\"b""#),
            ("a\\b", #""a\\b""#),
            ("a/b", #""a/b""#),
            ("\n\r\t", #""\n\r\t""#),
            ("\u{0}", #""\u0000""#),
            ("\u{8}\u{C}", #""\u0008\u000c""#),
            ("\u{1F}", #""\u001f""#),
            ("\u{7F}", #""\u007f""#),
            ("<script>", #""\u003cscript\u003e""#),
            ("a&b", #""a\u0026b""#),
            ("\u{2028}\u{2029}", #""\u2028\u2029""#),
            ("ü😀", "\"ü😀\""),
        ]
        for item in cases {
            var out = ""
            appendJSONString(item.input, to: &out)
            XCTAssertEqual(out, item.want, "appendJSONString(\(item.input.debugDescription))")
        }
    }

    func testAppendJSONStringAppends() {
        var out = "x:"
        appendJSONString("y", to: &out)
        XCTAssertEqual(out, "x:\"y\"")
    }

    func testWriterParserRoundTrip() {
        let strings = [
            "", "\"", "\\", "\\\"", "\"\\\"", "</script><!--", "a&amp;b", "line\nbreak\r\n\ttab",
            "\u{0}\u{1}\u{1F}\u{7F}", "\u{2028}\u{2029}", "ü€😀𝄞", "\u{FEFF}bom", "e\u{301}", "\\u0041", "{\"a\":1}",
        ]
        for text in strings {
            var encoded = ""
            appendJSONString(text, to: &encoded)
            XCTAssertEqual(parsed(encoded), .string(text), "round trip of \(text.debugDescription) via \(encoded)")
            XCTAssertFalse(encoded.contains("\n"), "\(encoded.debugDescription) must stay on one line")
        }
    }

    func testObjectWriterSkipsNil() {
        var writer = JSONObjectWriter()
        writer.add("a", nil as String?)
        writer.add("b", "x")
        writer.add("c", nil as Int?)
        writer.add("d", 3 as Int?)
        writer.add("e", nil as String?)
        XCTAssertEqual(writer.finished(), #"{"b":"x","d":3}"#)
    }

    func testObjectWriterEmpty() {
        XCTAssertEqual(JSONObjectWriter().finished(), "{}")
        var writer = JSONObjectWriter()
        writer.add("a", nil as String?)
        XCTAssertEqual(writer.finished(), "{}")
    }

    func testObjectWriterAllKinds() {
        var writer = JSONObjectWriter()
        writer.add("s", "<\"x\">")
        writer.add("n", -5 as Int?)
        writer.add("t", true)
        writer.add("f", false)
        writer.add("list", strings: ["a", "b\n"])
        writer.add("none", strings: [])
        writer.add("raw", rawJSON: "{\"k\":null}")
        writer.add("k\"ey", "v")
        let text = writer.finished()
        XCTAssertEqual(
            text, #"{"s":"\u003c\"x\"\u003e","n":-5,"t":true,"f":false,"list":["a","b\n"],"none":[],"raw":{"k":null},"k\"ey":"v"}"#)

        let value = parsed(text)
        XCTAssertEqual(value?["s"], .string("<\"x\">"))
        XCTAssertEqual(value?["n"], .number(-5))
        XCTAssertEqual(value?["list"], .array([.string("a"), .string("b\n")]))
        XCTAssertEqual(value?["raw"]?["k"], .null)
        XCTAssertEqual(value?["k\"ey"], .string("v"))
    }

    // MARK: - Helpers

    private func parsed(_ text: String, maxDepth: Int = 32) -> JSONValue? {
        try? parseJSON(Array(text.utf8), maxDepth: maxDepth)
    }

    /// Returns the reason `parseJSON` gives for rejecting `text`, or nil when it parses.
    private func rejection(_ text: String, maxDepth: Int = 32) -> String? {
        do {
            _ = try parseJSON(Array(text.utf8), maxDepth: maxDepth)
            return nil
        } catch {
            return error.reason
        }
    }

    private func nested(_ levels: Int) -> String {
        String(repeating: "[", count: levels) + String(repeating: "]", count: levels)
    }
}
