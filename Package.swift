// swift-tools-version:6.0
// notify: instant "new mail" notifications for web inboxes.
// The package depends on the Swift toolchain alone: no outside packages.
import PackageDescription

let package = Package(
    name: "notify",
    products: [
        .executable(name: "notify-deliver", targets: ["notify-deliver"]),
        .executable(name: "notify-relay", targets: ["notify-relay"]),
    ],
    targets: [
        // Thin C wrappers for Linux calls that Glibc does not import into Swift
        // (epoll, signalfd, accept4, SO_PEERCRED) and for variadic syslog(3).
        .target(name: "CNotifyShim"),
        .target(name: "NotifyCore", dependencies: ["CNotifyShim"]),
        .target(name: "NotifyDeliver", dependencies: ["NotifyCore", "CNotifyShim"]),
        .target(name: "NotifyRelay", dependencies: ["NotifyCore", "CNotifyShim"]),
        // The MTA starts notify-deliver once per delivered message. A fully static
        // release binary skips the dynamic loader and its relocations, which halved
        // the run time measured in docs/benchmarks.md. glibc's iconv, used only for
        // rare charsets, then needs the host's gconv modules of the same glibc
        // version, and falls back to leaving the encoded word as it is.
        .executableTarget(
            name: "notify-deliver", dependencies: ["NotifyDeliver", "NotifyCore"],
            linkerSettings: [.unsafeFlags(["-static-executable"], .when(platforms: [.linux], configuration: .release))]),
        .executableTarget(name: "notify-relay", dependencies: ["NotifyRelay", "NotifyCore"]),
        .executableTarget(name: "notify-loadgen", dependencies: ["CNotifyShim"], path: "bench/loadgen"),
        .testTarget(name: "NotifyCoreTests", dependencies: ["NotifyCore"]),
        .testTarget(name: "NotifyDeliverTests", dependencies: ["NotifyDeliver", "NotifyCore"]),
        .testTarget(name: "NotifyRelayTests", dependencies: ["NotifyRelay", "NotifyCore"]),
        // Runs the built binaries over real sockets; builds them first.
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["NotifyCore", "notify-deliver", "notify-relay"]),
    ],
    swiftLanguageModes: [.v6]
)
