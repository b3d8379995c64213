// Entry point of notify-relay, kept in the library so tests can reach it.

import Glibc
import NotifyCore

/// Runs the relay with `arguments` (without the program name) and returns the exit status.
public func relayMain(arguments: [String]) -> Int32 {
    let command: RelayCommand
    do {
        command = try parseRelayArguments(arguments)
    } catch {
        printError("notify-relay: \(error.description)")
        return SysExit.usage.rawValue
    }
    switch command {
    case .help:
        print(relayUsage, terminator: "")
        return 0
    case .version:
        print("notify-relay \(relayVersion)")
        return 0
    case .run(let config):
        return runRelay(config)
    }
}

private func runRelay(_ config: RelayConfig) -> Int32 {
    let logger = Logger(minimumLevel: config.logLevel, sinks: .stderr)
    do {
        let relay = try Relay(config: config, logger: logger)
        try relay.open(environment: currentEnvironment())
        var fields: [(String, String)] = [
            ("version", relayVersion), ("pid", String(getpid())),
            ("http", relay.httpAddresses.joined(separator: ",")),
            ("socket", relay.ingestDescription), ("domains", config.domains.isEmpty ? "-" : config.domains.joined(separator: ",")),
            ("max_connections", String(relay.settings.maxConnections)),
        ]
        if let address = config.ingestTCP, let port = relay.ingestTCPPort {
            fields.append(("ingest_tcp", "\(address.host):\(port)"))
        }
        if let admin = relay.adminAddress {
            fields.append(("admin", admin))
        }
        if !relay.activatedListenerNames.isEmpty {
            fields.append(("activated", relay.activatedListenerNames.joined(separator: ",")))
        }
        logger.info("relay started", fields)
        relay.notifyServiceManager("READY=1\nMAINPID=\(getpid())\nSTATUS=Waiting for mail on \(relay.httpAddresses.joined(separator: ", "))")
        try relay.run()
        return 0
    } catch let error as ListenError {
        printError("notify-relay: \(error.description)")
        return SysExit.osError.rawValue
    } catch {
        printError("notify-relay: \(error)")
        return SysExit.osError.rawValue
    }
}

private func printError(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}
