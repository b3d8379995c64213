// Table tests for recipient source order, validation, sender and queue id.

import NotifyCore
import XCTest

@testable import NotifyDeliver

final class RecipientsTests: XCTestCase {
    private let allHeaders = parseHeaderBlock(
        Array(
            """
            Delivered-To: top@example.com
            Delivered-To: lower@example.com
            X-Original-To: original@example.com
            Envelope-To: envelope@example.com

            """.utf8))

    func testSourceOrder() {
        let fullEnvironment = [
            "ORIGINAL_RECIPIENT": "orig@example.com", "RECIPIENT": "rcpt@example.com",
            "LOCAL_PART": "local", "DOMAIN": "example.net",
        ]
        let cases: [(String, [String], [String: String], HeaderBlock, [String], RecipientSource)] = [
            ("arguments first", ["arg@example.com"], fullEnvironment, allHeaders, ["arg@example.com"], .arguments),
            ("several arguments", ["a@x", "b@x"], [:], allHeaders, ["a@x", "b@x"], .arguments),
            ("ORIGINAL_RECIPIENT", [], fullEnvironment, allHeaders, ["orig@example.com"],
             .environment("ORIGINAL_RECIPIENT")),
            ("RECIPIENT", [], ["RECIPIENT": "rcpt@example.com", "LOCAL_PART": "l"], allHeaders, ["rcpt@example.com"],
             .environment("RECIPIENT")),
            ("empty ORIGINAL_RECIPIENT skipped", [], ["ORIGINAL_RECIPIENT": "", "RECIPIENT": "r@x"], allHeaders,
             ["r@x"], .environment("RECIPIENT")),
            ("LOCAL_PART with DOMAIN", [], ["LOCAL_PART": "local", "DOMAIN": "example.net"], allHeaders,
             ["local@example.net"], .environment("LOCAL_PART")),
            ("LOCAL_PART alone", [], ["LOCAL_PART": "local"], allHeaders, ["local"], .environment("LOCAL_PART")),
            ("DOMAIN alone ignored", [], ["DOMAIN": "example.net"], allHeaders, ["top@example.com"],
             .header("Delivered-To")),
            ("topmost Delivered-To", [], [:], allHeaders, ["top@example.com"], .header("Delivered-To")),
            ("X-Original-To", [], [:], block("X-Original-To: <o@x>\nEnvelope-To: e@x\n"), ["<o@x>"],
             .header("X-Original-To")),
            ("Envelope-To list", [], [:], block("Envelope-to: a@x, b@x\n"), ["a@x", "b@x"], .header("Envelope-To")),
            ("X-Envelope-To", [], [:], block("X-Envelope-To: xe@x\n"), ["xe@x"], .header("X-Envelope-To")),
            ("no source", [], [:], block("Subject: s\n"), [], .none),
        ]
        for (name, arguments, environment, headers, expected, source) in cases {
            let selected = selectRecipients(arguments: arguments, environment: environment, headers: headers)
            XCTAssertEqual(selected.recipients, expected, name)
            XCTAssertEqual(selected.source, source, name)
        }
    }

    func testValidationDropsGarbageNormalizes() {
        let result = validateRecipients(["Alice@Example.com", "", "a b@x", "bad/name", "ALICE@example.com", "<b@x>"])
        XCTAssertEqual(result.valid, ["alice@example.com", "b@x"])
        XCTAssertEqual(result.invalid.count, 3)
        XCTAssertEqual(result.invalid.first?.input, "")
    }

    func testValidationStripsSubaddresses() {
        let policy = InboxPolicy(subaddressDelimiters: Array("+-".utf8))
        let result = validateRecipients(
            ["User+News@Example.com", "user-list@example.com", "user@example.com", "other+x"], policy: policy)
        XCTAssertEqual(result.valid, ["user@example.com", "other"])
        XCTAssertEqual(result.invalid, [])
    }

    func testValidationWithoutDelimiterKeepsTags() {
        let result = validateRecipients(["user+news@example.com", "user@example.com"])
        XCTAssertEqual(result.valid, ["user+news@example.com", "user@example.com"])
    }

    func testValidationConvertsUnicodeDomain() {
        let result = validateRecipients(["Jürgen@Bücher.Example", "jürgen@xn--bcher-kva.example"])
        XCTAssertEqual(result.valid, ["jürgen@xn--bcher-kva.example"])
    }

    func testSender() {
        let cases: [(String, [String: String], HeaderBlock, String?)] = [
            ("SENDER wins", ["SENDER": "env@x"], block("Return-Path: <rp@x>\n"), "env@x"),
            ("Return-Path brackets removed", [:], block("Return-Path: <rp@x>\n"), "rp@x"),
            ("null sender", [:], block("Return-Path: <>\n"), nil),
            ("empty SENDER", ["SENDER": ""], block("Return-Path: <rp@x>\n"), nil),
            ("no sender", [:], block("Subject: s\n"), nil),
        ]
        for (name, environment, headers, expected) in cases {
            XCTAssertEqual(selectSender(environment: environment, headers: headers), expected, name)
        }
    }

    func testQueueId() {
        let postfix = block(
            "Received: from a (a [127.0.0.1])\n\tby mx.example.com (Postfix) with ESMTP id 4XyZ1abc\n\tfor <t@x>; Tue\n"
                + "Received: by other with SMTP id older\n")
        let exim = block("Received: from a by mx with esmtp (Exim 4.96)\n\t(envelope-from <s@x>)\n\tid 1tAbC-000123-Xy\n\tfor t@x; Tue\n")
        let cases: [(String, [String: String], HeaderBlock, String?)] = [
            ("QUEUE_ID wins", ["QUEUE_ID": "Q1"], postfix, "Q1"),
            ("Postfix Received id", [:], postfix, "4XyZ1abc"),
            ("Exim Received id", [:], exim, "1tAbC-000123-Xy"),
            ("id before semicolon", [:], block("Received: by mx id ABC; Tue\n"), "ABC"),
            ("no id", [:], block("Received: by mx; Tue\n"), nil),
            ("no Received", [:], block("Subject: s\n"), nil),
        ]
        for (name, environment, headers, expected) in cases {
            XCTAssertEqual(selectQueueId(environment: environment, headers: headers), expected, name)
        }
    }

    private func block(_ text: String) -> HeaderBlock {
        parseHeaderBlock(Array((text + "\n").utf8))
    }
}
