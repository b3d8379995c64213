// Table tests for notify-relay's command line (`parseRelayArguments`) and the
// `HOST:PORT` listener address it accepts.

import NotifyCore
import XCTest

@testable import NotifyRelay

final class ConfigTests: XCTestCase {
    private func config(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) -> RelayConfig? {
        do {
            guard case .run(let config) = try parseRelayArguments(arguments) else {
                XCTFail("expected a configuration for \(arguments)", file: file, line: line)
                return nil
            }
            return config
        } catch {
            XCTFail("unexpected error for \(arguments): \(error.description)", file: file, line: line)
            return nil
        }
    }

    private func error(_ arguments: [String]) -> ConfigError? {
        do {
            _ = try parseRelayArguments(arguments)
            return nil
        } catch {
            return error
        }
    }

    // MARK: - Options

    func testDefaults() {
        let parsed = config([])
        XCTAssertEqual(parsed?.listen, [ListenAddress("127.0.0.1:8000")!])
        XCTAssertNil(parsed?.socketPath)
        XCTAssertEqual(parsed?.socketMode, 0o660)
        XCTAssertNil(parsed?.socketGroup)
        XCTAssertEqual(parsed?.domains, [])
        XCTAssertEqual(parsed?.pollTimeout, 30)
        XCTAssertEqual(parsed?.maxPollTimeout, 120)
        XCTAssertEqual(parsed?.history, 16)
        XCTAssertEqual(parsed?.historyAge, 3600)
        XCTAssertEqual(parsed?.historyMaxEvents, 100_000)
        XCTAssertNil(parsed?.maxConnections)
        XCTAssertEqual(parsed?.headerTimeout, 10)
        XCTAssertEqual(parsed?.idleTimeout, 60)
        XCTAssertEqual(parsed?.writeTimeout, 30)
        XCTAssertNil(parsed?.ingestTCP)
        XCTAssertEqual(parsed?.logLevel, .info)
    }

    func testListenOption() {
        XCTAssertEqual(config(["--listen", "0.0.0.0:80"])?.listen, [ListenAddress("0.0.0.0:80")!])
        XCTAssertEqual(config(["--listen=127.0.0.1:9000"])?.listen.first?.port, 9000)
        let both = config(["--listen", "127.0.0.1:1", "--listen", "[::1]:8000"])?.listen
        XCTAssertEqual(both?.map(\.host), ["127.0.0.1", "::1"])
        XCTAssertEqual(both?.map(\.port), [1, 8000])
    }

    func testEachOption() {
        XCTAssertEqual(config(["--socket", "/tmp/relay.sock"])?.socketPath, "/tmp/relay.sock")
        XCTAssertEqual(config(["--socket=/tmp/r.sock"])?.socketPath, "/tmp/r.sock")
        XCTAssertEqual(config(["--socket-mode", "0600"])?.socketMode, 0o600)
        XCTAssertEqual(config(["--socket-mode=777"])?.socketMode, 0o777)
        XCTAssertEqual(config(["--socket-group", "0"])?.socketGroup, 0)
        XCTAssertEqual(config(["--socket-group=root"])?.socketGroup, 0)
        XCTAssertEqual(config(["--ingest-tcp", "127.0.0.1:2500"])?.ingestTCP, ListenAddress("127.0.0.1:2500"))
        XCTAssertEqual(config(["--domain", "example.com", "--domain=other.org"])?.domains, ["example.com", "other.org"])
        XCTAssertEqual(config(["--poll-timeout", "0.5"])?.pollTimeout, 0.5)
        XCTAssertEqual(config(["--poll-timeout=60"])?.pollTimeout, 60)
        XCTAssertEqual(config(["--max-poll-timeout", "300"])?.maxPollTimeout, 300)
        XCTAssertEqual(config(["--history", "1"])?.history, 1)
        XCTAssertEqual(config(["--history=10000"])?.history, 10_000)
        XCTAssertEqual(config(["--history-age", "60"])?.historyAge, 60)
        XCTAssertEqual(config(["--history-max-events", "5"])?.historyMaxEvents, 5)
        XCTAssertEqual(config(["--max-connections", "100"])?.maxConnections, 100)
        XCTAssertEqual(config(["--header-timeout", "2"])?.headerTimeout, 2)
        XCTAssertEqual(config(["--idle-timeout", "5"])?.idleTimeout, 5)
        XCTAssertEqual(config(["--write-timeout", "7"])?.writeTimeout, 7)
        XCTAssertEqual(config(["--log-level", "debug"])?.logLevel, .debug)
        XCTAssertEqual(config(["--log-level=error"])?.logLevel, .error)
    }

    func testDomainNormalized() {
        // The policy compares lowercase domains without a trailing dot, so the option is stored that way.
        XCTAssertEqual(config(["--domain", "Example.COM"])?.domains, ["example.com"])
        XCTAssertEqual(config(["--domain", "example.com."])?.domains, ["example.com"])
        let policy = InboxPolicy(domains: config(["--domain", "Example.com."])?.domains ?? [])
        XCTAssertEqual(try? policy.normalize("test@example.com").key, "test@example.com")
        XCTAssertEqual(try? policy.normalize("test").key, "test@example.com")
    }

    func testInvalidValues() {
        let cases: [(option: String, value: String)] = [
            ("--listen", "8000"),
            ("--listen", "example.com:80"),
            ("--listen", "127.0.0.1:70000"),
            ("--listen", "::1:8000"),
            ("--listen", "[::1]8000"),
            ("--ingest-tcp", "127.0.0.1:"),
            ("--socket", ""),
            ("--socket", "/" + String(repeating: "s", count: 200)),
            ("--socket-mode", "0999"),
            ("--socket-mode", "1777"),
            ("--socket-mode", "rw"),
            ("--socket-group", "no-such-group-notify"),
            ("--domain", ""),
            ("--domain", "bad domain"),
            ("--domain", "a/b"),
            ("--domain", "a..b"),
            ("--poll-timeout", "0"),
            ("--poll-timeout", "-1"),
            ("--poll-timeout", "abc"),
            ("--poll-timeout", "nan"),
            ("--max-poll-timeout", "86401"),
            ("--history", "0"),
            ("--history", "10001"),
            ("--history", "1.5"),
            ("--history-age", "inf"),
            ("--history-max-events", "0"),
            ("--max-connections", "-5"),
            ("--header-timeout", "3601"),
            ("--idle-timeout", "x"),
            ("--write-timeout", "0"),
            ("--log-level", "verbose"),
        ]
        for item in cases {
            for arguments in [[item.option, item.value], ["\(item.option)=\(item.value)"]] {
                let message = error(arguments)?.description
                XCTAssertNotNil(message, "\(arguments)")
                XCTAssertEqual(message?.contains(item.option), true, "\(arguments): \(message ?? "")")
                XCTAssertEqual(message?.contains(quotedForMessage(item.value)), true, "\(arguments): \(message ?? "")")
            }
        }
    }

    func testUnknownOption() {
        for argument in ["--bogus", "-x", "extra", "--listen-on=1"] {
            let message = error([argument])?.description
            XCTAssertEqual(message?.hasPrefix("unknown option"), true, argument)
            XCTAssertEqual(message?.contains(argument.split(separator: "=")[0]), true, argument)
        }
    }

    func testMissingValue() {
        for option in ["--listen", "--socket", "--domain", "--poll-timeout", "--history", "--log-level"] {
            XCTAssertEqual(error([option])?.description, "missing value for \(option)")
        }
        XCTAssertEqual(error(["--domain", "example.com", "--history"])?.description, "missing value for --history")
    }

    func testPollTimeoutAboveMax() {
        let message = error(["--poll-timeout", "200"])?.description
        XCTAssertEqual(message?.contains("--poll-timeout"), true)
        XCTAssertEqual(message?.contains("--max-poll-timeout"), true)
        XCTAssertNotNil(error(["--max-poll-timeout", "10", "--poll-timeout", "11"]))
        XCTAssertEqual(config(["--max-poll-timeout", "10", "--poll-timeout", "10"])?.pollTimeout, 10)
        XCTAssertEqual(config(["--poll-timeout", "200", "--max-poll-timeout", "300"])?.pollTimeout, 200)
    }

    func testHelpAndVersion() throws {
        for arguments in [["--help"], ["-h"], ["--listen", "127.0.0.1:1", "--help"]] {
            guard case .help = try parseRelayArguments(arguments) else { return XCTFail("\(arguments) is not help") }
        }
        guard case .version = try parseRelayArguments(["--version"]) else { return XCTFail("--version is not version") }
        XCTAssertTrue(relayUsage.contains("--max-poll-timeout"))
    }

    // MARK: - Listener addresses

    func testListenAddressParsing() {
        let cases: [(text: String, host: String, port: UInt16)] = [
            ("127.0.0.1:8000", "127.0.0.1", 8000),
            ("0.0.0.0:0", "0.0.0.0", 0),
            (":8000", "0.0.0.0", 8000),
            ("localhost:80", "127.0.0.1", 80),
            ("[::1]:8000", "::1", 8000),
            ("[::]:65535", "::", 65535),
            ("[2001:db8::1]:443", "2001:db8::1", 443),
        ]
        for item in cases {
            let address = ListenAddress(item.text)
            XCTAssertEqual(address?.host, item.host, item.text)
            XCTAssertEqual(address?.port, item.port, item.text)
        }
    }

    func testListenAddressInvalid() {
        let cases = [
            "", "8000", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:http",
            "example.com:80", "256.0.0.1:80", "::1:8000", "[::1]", "[::1]:", "[::1]8000", "[::1:8000", "[nothost]:80",
        ]
        for text in cases {
            XCTAssertNil(ListenAddress(text), text)
        }
    }

    func testListenAddressDescription() {
        XCTAssertEqual(ListenAddress("127.0.0.1:8000")?.description, "127.0.0.1:8000")
        XCTAssertEqual(ListenAddress("[::1]:8000")?.description, "[::1]:8000")
    }

    func testIsLoopback() {
        let cases: [(text: String, loopback: Bool)] = [
            ("127.0.0.1:80", true),
            ("127.1.2.3:80", true),
            ("localhost:80", true),
            ("[::1]:80", true),
            ("0.0.0.0:80", false),
            (":80", false),
            ("192.0.2.1:80", false),
            ("[::]:80", false),
            ("[2001:db8::1]:80", false),
        ]
        for item in cases {
            XCTAssertEqual(ListenAddress(item.text)?.isLoopback, item.loopback, item.text)
        }
    }
}
