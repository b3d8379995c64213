// Locating the built notify-deliver and notify-relay executables.
//
// `swift test` builds both products because this test target depends on
// them, and places them in the build products directory next to the test
// bundle. NOTIFY_BIN_DIR overrides that, for running these tests against
// binaries built elsewhere (a release build, an installed copy).

import Foundation

enum ProductBinaries {
    /// The directory that contains the executables under test.
    static let directory: URL = {
        if let override = ProcessInfo.processInfo.environment["NOTIFY_BIN_DIR"], !override.isEmpty {
            return URL(fileURLWithPath: override, isDirectory: true)
        }

        // On Linux the test bundle is a plain executable in the products
        // directory, so the directory of the running program is the one.
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            return URL(fileURLWithPath: executable).deletingLastPathComponent()
        }

        // Elsewhere the bundle is a directory inside the products directory.
        return Bundle.main.bundleURL.deletingLastPathComponent()
    }()

    /// Returns the URL of `name` in `directory`, or throws a failure that names the place searched.
    static func executable(_ name: String) throws -> URL {
        let url = directory.appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw TestFailure("\(name) not found or not executable at \(url.path); build it first or set NOTIFY_BIN_DIR")
        }
        return url
    }
}

/// Returns the test process's environment without the variables that
/// notify-deliver and notify-relay read, so that only a test's arguments matter.
func isolatedEnvironment() -> [String: String] {
    var environment = ProcessInfo.processInfo.environment
    for name in ["NOTIFY_RELAY_SOCKET", "ORIGINAL_RECIPIENT", "RECIPIENT", "LOCAL_PART", "DOMAIN", "LISTEN_FDS", "LISTEN_PID"] {
        environment[name] = nil
    }
    return environment
}
