// Cross-origin resource sharing (the Fetch standard's CORS protocol), off
// unless --cors-origin names origins or `*`.
//
// When on, every response carries the headers, errors, 204 timeouts and 503s
// included, so a page on another origin can read why a request failed. The
// `Notify-Cursor` header is exposed to scripts. A long-poll that passes its
// cursor in the query string is a "simple" request and needs no preflight;
// `Last-Event-ID` and `Cache-Control` headers make one, so the preflight
// allows both.

/// The origins that may read responses.
struct CORSPolicy {
    /// Allowed origins as sent by browsers (`https://mail.example`), or `["*"]`.
    var origins: [String]

    var isEnabled: Bool { !origins.isEmpty }

    /// Preflight results may be cached this long, in seconds.
    static let maxAgeSeconds = 600

    /// Returns the CORS fields for a response to a request from `origin`.
    func fields(origin: String?) -> [(String, String)] {
        guard isEnabled else { return [] }
        var fields: [(String, String)] = [("Vary", "Origin")]
        if origins.contains("*") {
            fields.append(("Access-Control-Allow-Origin", "*"))
        } else if let origin, origins.contains(origin) {
            fields.append(("Access-Control-Allow-Origin", origin))
        } else {
            return fields
        }
        fields.append(("Access-Control-Expose-Headers", "Notify-Cursor"))
        return fields
    }

    /// Returns the extra fields for a preflight `OPTIONS` request.
    func preflightFields(origin: String?) -> [(String, String)] {
        guard isEnabled, origins.contains("*") || (origin.map { origins.contains($0) } ?? false) else { return [] }
        return [
            ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
            ("Access-Control-Allow-Headers", "Last-Event-ID, Cache-Control, Accept"),
            ("Access-Control-Max-Age", String(Self.maxAgeSeconds)),
        ]
    }
}
