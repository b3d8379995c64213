// The browser files the relay serves: the demo page at `/` and the client
// script with its TypeScript declaration under `/static/`. Their text comes
// from contrib/browser/ through Assets.generated.swift, which
// scripts/embed-assets.py writes; a test checks the two never drift apart.

/// Lookup of embedded browser files by request path.
enum StaticAssets {
    /// Response for `path`, or nil when no file is served there.
    static func response(for path: String) -> HTTPResponse? {
        guard let asset = embeddedAssets[path] else { return nil }
        var fields: [(String, String)] = [
            ("Content-Type", asset.contentType),
            ("Cache-Control", "public, max-age=300"),
            ("X-Content-Type-Options", "nosniff"),
        ]
        if asset.contentType.hasPrefix("text/html") {
            // The demo page shows subjects and senders written by strangers: no inline script may run.
            fields.append(("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"))
            fields.append(("Referrer-Policy", "no-referrer"))
        }
        return HTTPResponse(status: .ok, fields: fields, body: Array(asset.text.utf8))
    }
}

/// One embedded file.
struct EmbeddedAsset {
    var contentType: String
    var text: String
}
