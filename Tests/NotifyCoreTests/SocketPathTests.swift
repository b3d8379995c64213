// Tests for `IngestSocketPath.resolve`, the default ingest socket path.
//
// Root always gets the system path unless NOTIFY_RELAY_SOCKET is set, so each
// test that depends on the user checks getuid() and asserts the expectation
// for root or for a normal user. CI runs these tests as root.

import Glibc
import NotifyCore
import XCTest

final class SocketPathTests: XCTestCase {
    private var isRoot: Bool { getuid() == 0 }
    private var temporaryDirectory: String?

    override func tearDown() {
        if let directory = temporaryDirectory {
            rmdir(directory)
        }
        temporaryDirectory = nil
        super.tearDown()
    }

    func testEnvironmentVariableWins() {
        let environment = [
            "NOTIFY_RELAY_SOCKET": "/srv/notify/ingest.sock", "XDG_RUNTIME_DIR": "/run/user/1000", "HOME": "/home/u",
        ]
        XCTAssertEqual(resolved(environment), "/srv/notify/ingest.sock")
    }

    func testEnvironmentVariableEmptyIgnored() {
        let got = resolved(["NOTIFY_RELAY_SOCKET": "", "HOME": "/home/u"])
        XCTAssertEqual(got, isRoot ? IngestSocketPath.systemPath : "/home/u/.cache/notify/relay.sock")
    }

    func testPathMaxLength() {
        let path = "/" + String(repeating: "p", count: IngestSocketPath.maxPathBytes - 1)
        XCTAssertEqual(resolved(["NOTIFY_RELAY_SOCKET": path]), path)
    }

    func testPathTooLong() {
        let path = "/tmp/" + String(repeating: "long-directory/", count: 6) + "relay.sock"
        XCTAssertEqual(path.utf8.count, 105)
        let tooLong = path + "123"
        let message = failure(["NOTIFY_RELAY_SOCKET": tooLong])
        XCTAssertEqual(message?.contains(tooLong), true, "got \(message ?? "success"), want the whole path named")
        XCTAssertEqual(message?.contains("108 bytes"), true, "got \(message ?? "success"), want the length")
        XCTAssertEqual(message?.contains("--socket"), true, "got \(message ?? "success"), want the fix")
    }

    func testRuntimeDirectoryOwned() throws {
        let directory = try makeTemporaryDirectory()
        let got = resolved(["XDG_RUNTIME_DIR": directory, "HOME": "/home/u"])
        XCTAssertEqual(got, isRoot ? IngestSocketPath.systemPath : directory + "/notify/relay.sock")
    }

    func testRuntimeDirectoryPathTooLong() throws {
        // The directory itself may exist, but the socket path under it is longer than sun_path allows.
        let directory = try makeTemporaryDirectory()
        let deep = directory + "/" + String(repeating: "d", count: 100)
        XCTAssertEqual(mkdir(deep, 0o700), 0)
        defer { rmdir(deep) }
        let result = IngestSocketPath.resolve(environment: ["XDG_RUNTIME_DIR": deep, "HOME": "/home/u"])
        if isRoot {
            XCTAssertEqual(try? result.get(), IngestSocketPath.systemPath)
        } else {
            XCTAssertNil(try? result.get(), "a \(deep.utf8.count + 18)-byte socket path must fail")
        }
    }

    func testRuntimeDirectoryNotOwned() {
        // "/" belongs to root, so a normal user does not own it and falls back to HOME.
        let got = resolved(["XDG_RUNTIME_DIR": "/", "HOME": "/home/u"])
        XCTAssertEqual(got, isRoot ? IngestSocketPath.systemPath : "/home/u/.cache/notify/relay.sock")
    }

    func testRuntimeDirectoryMissing() {
        let got = resolved(["XDG_RUNTIME_DIR": "/nonexistent/notify-test", "HOME": "/home/u"])
        XCTAssertEqual(got, isRoot ? IngestSocketPath.systemPath : "/home/u/.cache/notify/relay.sock")
    }

    func testRuntimeDirectoryIsFile() throws {
        let directory = try makeTemporaryDirectory()
        let file = directory + "/file"
        let fd = open(file, O_CREAT | O_WRONLY, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        close(fd)
        defer { unlink(file) }
        let got = resolved(["XDG_RUNTIME_DIR": file, "HOME": "/home/u"])
        XCTAssertEqual(got, isRoot ? IngestSocketPath.systemPath : "/home/u/.cache/notify/relay.sock")
    }

    func testHomeFallback() {
        let got = resolved(["HOME": "/home/alice"])
        XCTAssertEqual(got, isRoot ? IngestSocketPath.systemPath : "/home/alice/.cache/notify/relay.sock")
    }

    func testNothingSet() {
        let environments: [[String: String]] = [
            [:],
            ["HOME": ""],
            ["HOME": "/"],
            ["XDG_RUNTIME_DIR": "", "HOME": ""],
            ["XDG_RUNTIME_DIR": "/nonexistent/notify-test"],
        ]
        for environment in environments {
            let result = IngestSocketPath.resolve(environment: environment)
            switch result {
            case .success(let path):
                XCTAssertTrue(isRoot, "\(environment): got \(path), want a failure for a normal user")
                XCTAssertEqual(path, IngestSocketPath.systemPath)
            case .failure(let error):
                XCTAssertFalse(isRoot, "\(environment): got \(error), want \(IngestSocketPath.systemPath) for root")
                XCTAssertTrue(error.message.contains("--socket"), "\(environment): got \(error.message)")
                XCTAssertTrue(error.message.contains("NOTIFY_RELAY_SOCKET"), "\(environment): got \(error.message)")
            }
        }
    }

    func testCurrentEnvironmentReadsEnviron() {
        XCTAssertEqual(setenv("NOTIFY_CORE_TEST_VARIABLE", "a=b c", 1), 0)
        defer { unsetenv("NOTIFY_CORE_TEST_VARIABLE") }
        XCTAssertEqual(currentEnvironment()["NOTIFY_CORE_TEST_VARIABLE"], "a=b c")
    }

    // MARK: - Helpers

    private func resolved(_ environment: [String: String]) -> String? {
        switch IngestSocketPath.resolve(environment: environment) {
        case .success(let path):
            return path
        case .failure(let error):
            XCTFail("resolve(\(environment)): got \(error), want a path")
            return nil
        }
    }

    private func failure(_ environment: [String: String]) -> String? {
        switch IngestSocketPath.resolve(environment: environment) {
        case .success:
            return nil
        case .failure(let error):
            return error.message
        }
    }

    /// Creates a directory owned by the user running the tests; tearDown removes it.
    private func makeTemporaryDirectory() throws -> String {
        var template = Array("/tmp/notify-core-test-XXXXXX".utf8CString)
        guard let pointer = mkdtemp(&template) else { throw XCTSkip("mkdtemp failed: errno \(errno)") }
        let directory = String(cString: pointer)
        temporaryDirectory = directory
        return directory
    }
}
