// Where the ingest socket lives when no --socket option is given. Both
// programs call `IngestSocketPath.resolve`, so they always agree.
//
// Order: the NOTIFY_RELAY_SOCKET environment variable; for root,
// /run/notify/relay.sock; for other users, $XDG_RUNTIME_DIR/notify/relay.sock
// when XDG_RUNTIME_DIR names a directory the user owns, else
// $HOME/.cache/notify/relay.sock. None of these is a fixed name in a
// world-writable directory, so another local user cannot create the socket
// first and receive the notifications. The relay creates a missing parent
// directory: mode 0755 under /run (the MTA's user must reach the socket
// inside), 0700 in a user's own directories.

import Glibc

/// Resolution of the default ingest socket path.
public enum IngestSocketPath {
    /// Environment variable that overrides the default path for both programs.
    public static let environmentVariable = "NOTIFY_RELAY_SOCKET"
    /// Default path when running as root.
    public static let systemPath = "/run/notify/relay.sock"
    /// Longest path a Unix socket address can hold on Linux (sun_path is 108 bytes with the NUL).
    public static let maxPathBytes = 107

    /// The default path for the current user and environment, or an error saying what to set.
    public static func resolve(environment: [String: String] = currentEnvironment()) -> Result<String, SocketPathError> {
        if let path = environment[environmentVariable], !path.isEmpty {
            return check(path)
        }
        if getuid() == 0 {
            return .success(systemPath)
        }
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty, isOwnedDirectory(runtime) {
            return check(runtime + "/notify/relay.sock")
        }
        if let home = environment["HOME"], !home.isEmpty, home != "/" {
            return check(home + "/.cache/notify/relay.sock")
        }
        return .failure(
            SocketPathError(
                message: "cannot choose a default ingest socket: XDG_RUNTIME_DIR is not set or is not "
                    + "a directory you own, and HOME is not set or is \"/\"; "
                    + "pass --socket PATH or set \(environmentVariable)"))
    }

    private static func check(_ path: String) -> Result<String, SocketPathError> {
        guard path.utf8.count <= maxPathBytes else {
            return .failure(
                SocketPathError(
                    // The path comes from the administrator and is shown up to 1024 characters,
                    // because one just over the limit is longer than the 80 that other messages keep.
                    message: "socket path \(quotedForMessage(path, maxCharacters: 1024)) is \(path.utf8.count) bytes, "
                        + "more than the \(maxPathBytes) a Unix socket allows; pass a shorter --socket PATH"))
        }
        return .success(path)
    }

    private static func isOwnedDirectory(_ path: String) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0 else { return false }
        return (info.st_mode & S_IFMT) == S_IFDIR && info.st_uid == getuid()
    }
}

/// A socket path that cannot be used, with what to do about it.
public struct SocketPathError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// The process environment as a dictionary, read from `environ`.
public func currentEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    var pointer = environ
    while let entry = pointer.pointee {
        let text = String(cString: entry)
        if let equals = text.firstIndex(of: "=") {
            result[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        pointer += 1
    }
    return result
}
