// Chooses the recipients of a delivered message and the other envelope facts
// (sender, queue id) from the arguments, the MTA's environment and the headers.
//
// Recipient sources, the first one that yields any non-empty value wins:
//   1. the command-line arguments (Postfix pipe(8) `${recipient}`);
//   2. ORIGINAL_RECIPIENT, then RECIPIENT (set by Postfix local(8));
//   3. LOCAL_PART with DOMAIN as `local@domain`, or LOCAL_PART alone (set by
//      an Exim pipe transport);
//   4. the first of Delivered-To (topmost), X-Original-To, Envelope-To and
//      X-Envelope-To that is present. A header value is split at commas,
//      because Exim's Envelope-to can list several addresses.
//
// Trust boundary: arguments and environment come from the MTA; headers come
// from the message, so a sender can write them. The headers are therefore the
// last resort, used only when the MTA passes nothing. Each recipient is
// normalized with `InboxPolicy` (no domain list, the --subaddress-delimiter
// set): garbage is dropped, and what is sent is the normalized recipient
// (lowercased, sub-address cut, Unicode domain as A-label). The relay
// normalizes again with its own policy, which changes nothing when both
// programs have the same delimiters, because normalizing is idempotent.
//
// Known limits: a source with only invalid values still wins over later
// sources, so a broken MTA setting is logged rather than silently replaced by
// a header a sender could forge.

import NotifyCore

/// The source of a run's recipients, for the log.
public enum RecipientSource: Equatable, Sendable {
    case arguments
    case environment(String)
    case header(String)
    case none

    /// A short label for log lines, such as `env:RECIPIENT` or `header:Delivered-To`.
    public var label: String {
        switch self {
        case .arguments: return "arguments"
        case .environment(let name): return "env:\(name)"
        case .header(let name): return "header:\(name)"
        case .none: return "none"
        }
    }
}

/// Recipient header fields, in the order they are consulted.
public let recipientHeaderNames = ["Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To"]

/// Picks the raw recipients from the first source that has any.
public func selectRecipients(
    arguments: [String], environment: [String: String], headers: HeaderBlock
) -> (recipients: [String], source: RecipientSource) {
    let fromArguments = arguments.filter { !isBlank($0) }
    if !fromArguments.isEmpty { return (fromArguments, .arguments) }

    for name in ["ORIGINAL_RECIPIENT", "RECIPIENT"] {
        if let value = environment[name], !isBlank(value) { return ([value], .environment(name)) }
    }
    if let local = environment["LOCAL_PART"], !isBlank(local) {
        if let domain = environment["DOMAIN"], !isBlank(domain) {
            return (["\(local)@\(domain)"], .environment("LOCAL_PART"))
        }
        return ([local], .environment("LOCAL_PART"))
    }

    for name in recipientHeaderNames {
        guard let field = headers.first(name) else { continue }
        let addresses = field.value.split(separator: ",").map { trimSpaces(String($0)) }.filter { !$0.isEmpty }
        if !addresses.isEmpty { return (addresses, .header(name)) }
    }
    return ([], .none)
}

/// Splits recipients into those `policy` accepts, as the normalized recipient
/// of their inbox (duplicates after normalizing and the excess over
/// `MailRecord.maxRecipients` dropped), and the rejected ones with the reason.
public func validateRecipients(
    _ recipients: [String], policy: InboxPolicy = InboxPolicy()
) -> (valid: [String], invalid: [InboxNameError]) {
    var valid: [String] = []
    var invalid: [InboxNameError] = []
    var seen = Set<String>()
    for recipient in recipients {
        do {
            let inbox = try policy.normalize(recipient)
            if valid.count < MailRecord.maxRecipients, seen.insert(inbox.recipient).inserted {
                valid.append(inbox.recipient)
            }
        } catch {
            invalid.append(error)
        }
    }
    return (valid, invalid)
}

/// Returns the envelope sender: SENDER from the MTA, else the Return-Path
/// header, without angle brackets. The null sender `<>` of a bounce yields nil.
public func selectSender(environment: [String: String], headers: HeaderBlock) -> String? {
    let raw = environment["SENDER"] ?? headers.value("Return-Path")
    guard let raw else { return nil }
    var sender = trimSpaces(raw)
    if sender.hasPrefix("<"), sender.hasSuffix(">"), sender.count >= 2 {
        sender = trimSpaces(String(sender.dropFirst().dropLast()))
    }
    return sender.isEmpty ? nil : sender
}

/// Returns the MTA's queue id: QUEUE_ID from the environment, else the `id`
/// clause of the topmost Received header. The delivering MTA wrote that header
/// when it queued the message (`... with ESMTP id 4XyZ1abc; Tue, ...`).
public func selectQueueId(environment: [String: String], headers: HeaderBlock) -> String? {
    if let value = environment["QUEUE_ID"], !isBlank(value) { return trimSpaces(value) }
    guard let received = headers.first("Received")?.value else { return nil }

    let words = received.split(whereSeparator: { $0 == " " || $0 == "\t" })
    guard let idIndex = words.firstIndex(where: { $0.lowercased() == "id" }), idIndex + 1 < words.count else {
        return nil
    }
    var id = Substring(words[idIndex + 1])
    if let semicolon = id.firstIndex(of: ";") { id = id[..<semicolon] }
    let isToken = !id.isEmpty && id.count <= 64 && id.unicodeScalars.allSatisfy { $0.isASCII && $0.value > 0x20 }
    return isToken ? String(id) : nil
}

private func isBlank(_ text: String) -> Bool {
    text.unicodeScalars.allSatisfy { $0 == " " || $0 == "\t" }
}

private func trimSpaces(_ text: String) -> String {
    var scalars = Substring(text).unicodeScalars
    while let first = scalars.first, first == " " || first == "\t" { scalars.removeFirst() }
    while let last = scalars.last, last == " " || last == "\t" { scalars.removeLast() }
    return String(scalars)
}
