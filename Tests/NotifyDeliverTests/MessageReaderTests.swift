// Tests of stdin reading: mbox From line, header cap, size counting, deadline.

import Glibc
import XCTest

@testable import NotifyDeliver

final class MessageReaderTests: XCTestCase {
    private func read(_ text: String, headerLimit: Int = MessageReader.defaultHeaderLimit, chunk: Int = 7)
        -> MessageReader
    {
        var reader = MessageReader(headerLimit: headerLimit)
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            reader.consume(Array(bytes[offset..<min(offset + chunk, bytes.count)]))
            offset += chunk
        }
        reader.finish()
        return reader
    }

    func testSizeCountsWholeMessage() {
        let message = "Subject: hi\r\n\r\nbody line\r\n"
        for chunk in [1, 2, 5, 7, 1000] {
            let reader = read(message, chunk: chunk)
            XCTAssertEqual(reader.size, message.utf8.count, "chunk size \(chunk)")
            XCTAssertEqual(reader.headerBlock.value("Subject"), "hi", "chunk size \(chunk)")
        }
    }

    func testMboxFromLineSkipped() {
        let message = "Subject: hi\n\nbody\n"
        for chunk in [1, 3, 6, 100] {
            let reader = read("From bob@example.org Tue Jan  1 00:00:00 2026\n" + message, chunk: chunk)
            XCTAssertEqual(reader.size, message.utf8.count, "chunk size \(chunk)")
            XCTAssertEqual(reader.headerBlock.value("Subject"), "hi", "chunk size \(chunk)")
            XCTAssertEqual(reader.headerBlock.fields.count, 1, "chunk size \(chunk)")
        }
    }

    func testFromHeaderIsNotMboxLine() {
        let message = "From: a@b\n\n"
        let reader = read(message)
        XCTAssertEqual(reader.headerBlock.value("From"), "a@b")
        XCTAssertEqual(reader.size, message.utf8.count)
    }

    func testShortAndEmptyInputs() {
        let cases = ["", "a", "\n", "\nbody", "From", "From ", "X: y"]
        for text in cases {
            XCTAssertEqual(read(text, chunk: 1).size, text.hasPrefix("From ") ? 0 : text.utf8.count, "input \(text)")
        }
        XCTAssertEqual(read("X: y").headerBlock.value("X"), "y")
    }

    func testHeaderBlockCap() {
        let longField = "X-Long: " + String(repeating: "a", count: 500) + "\n"
        let message = "Subject: first\n" + longField + "Delivered-To: late@example.com\n\nbody\n"
        let reader = read(message, headerLimit: 300, chunk: 64)
        XCTAssertTrue(reader.headerTruncated)
        XCTAssertEqual(reader.headerBytes.count, 300)
        XCTAssertEqual(reader.size, message.utf8.count)
        XCTAssertEqual(reader.headerBlock.value("Subject"), "first")
        XCTAssertNil(reader.headerBlock.value("Delivered-To"))
    }

    func testBodyIsNotKept() {
        let message = "Subject: a\n\n" + String(repeating: "x", count: 100_000)
        let reader = read(message, chunk: 4096)
        XCTAssertFalse(reader.headerTruncated)
        XCTAssertEqual(reader.headerBytes.count, "Subject: a\n\n".utf8.count)
        XCTAssertEqual(reader.size, message.utf8.count)
    }

    func testMultiMegabyteInputThroughPipe() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        let header = Array("From sender@example.org Mon Jan  1 00:00:00 2026\nSubject: big\n\n".utf8)
        let mboxLineBytes = "From sender@example.org Mon Jan  1 00:00:00 2026\n".utf8.count
        let bodyBytes = 5 * 1024 * 1024 + 123
        let writeFD = fds[1]
        let writer = Thread {
            var line = [UInt8](repeating: UInt8(ascii: "x"), count: 1000)
            line[999] = 0x0A
            _ = header.withUnsafeBytes { write(writeFD, $0.baseAddress, $0.count) }
            var left = bodyBytes
            while left > 0 {
                let count = min(left, line.count)
                let written = line.withUnsafeBytes { write(writeFD, $0.baseAddress, count) }
                if written <= 0 { break }
                left -= written
            }
            close(writeFD)
        }
        writer.start()

        let deadline = Deadline(seconds: 30, after: Deadline.now())
        let (reader, end) = readMessage(fd: fds[0], deadline: deadline)
        close(fds[0])
        XCTAssertEqual(end, .endOfInput)
        XCTAssertEqual(reader.size, header.count - mboxLineBytes + bodyBytes)
        XCTAssertEqual(reader.headerBlock.value("Subject"), "big")
    }

    func testDeadlineStopsReadingOpenPipe() {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        let text = Array("Subject: partial\n".utf8)
        _ = text.withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) }

        let started = Deadline.now()
        let (reader, end) = readMessage(fd: fds[0], deadline: Deadline(seconds: 0.2, after: started))
        XCTAssertEqual(end, .timedOut)
        XCTAssertEqual(reader.headerBlock.value("Subject"), "partial")
        XCTAssertLessThan(Double(Deadline.now() - started) / 1e9, 10)
    }

    func testClosedDescriptorFails() {
        let (_, end) = readMessage(fd: 9999, deadline: Deadline(seconds: 1, after: Deadline.now()))
        XCTAssertNotEqual(end, .endOfInput)
        XCTAssertNotEqual(end, .timedOut)
    }
}
