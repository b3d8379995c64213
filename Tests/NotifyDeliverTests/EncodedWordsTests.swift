// Table tests for RFC 2047 encoded-word decoding.

import XCTest

@testable import NotifyDeliver

final class EncodedWordsTests: XCTestCase {
    func testEncodedWords() {
        let cases: [(String, String, String)] = [
            ("no encoded word", "Hello", "Hello"),
            ("B in UTF-8", "=?UTF-8?B?SGVsbG8gd8O2cmxk?=", "Hello wörld"),
            ("Q in UTF-8", "=?utf-8?q?caf=C3=A9_au_lait?=", "café au lait"),
            ("Q in ISO-8859-1", "=?ISO-8859-1?Q?Andr=E9?=", "André"),
            ("Q in ISO-8859-15 euro", "=?ISO-8859-15?Q?10_=A4?=", "10 €"),
            ("B in ISO-8859-15 euro", "=?iso-8859-15?b?pA==?=", "€"),
            ("Q in Windows-1252 quotes", "=?windows-1252?Q?=93hi=94?=", "“hi”"),
            ("lowercase hex in Q", "=?utf-8?Q?caf=c3=a9?=", "café"),
            ("language suffix", "=?utf-8*en?Q?hi?=", "hi"),
            ("text around a word", "Re: =?utf-8?Q?caf=C3=A9?= ok", "Re: café ok"),
            ("adjacent words join", "=?utf-8?Q?a?= =?utf-8?Q?b?=", "ab"),
            ("adjacent words across a fold", "=?utf-8?Q?a?=\r\n\t=?utf-8?Q?b?=", "ab"),
            ("adjacent words without space", "=?utf-8?q?a?==?utf-8?q?b?=", "ab"),
            ("split UTF-8 character", "=?UTF-8?B?w6k=?= =?UTF-8?B?w6g=?= =?UTF-8?B?4oI=?= =?UTF-8?B?rA==?=", "éè€"),
            ("different charsets adjacent", "=?iso-8859-1?Q?=E9?= =?utf-8?Q?=C3=A8?=", "éè"),
            ("space between word and text kept", "=?utf-8?Q?a?= b =?utf-8?Q?c?=", "a b c"),
            ("missing padding", "=?utf-8?B?SGk?=", "Hi"),
            ("bad base64 kept", "=?utf-8?B?S*Gk?=", "=?utf-8?B?S*Gk?="),
            ("base64 length 4n+1 kept", "=?utf-8?B?SGVsb?=", "=?utf-8?B?SGVsb?="),
            ("unknown charset kept", "=?x-unknown?Q?abc?=", "=?x-unknown?Q?abc?="),
            ("missing ?= kept", "=?utf-8?Q?abc", "=?utf-8?Q?abc"),
            ("unknown encoding kept", "=?utf-8?X?abc?=", "=?utf-8?X?abc?="),
            ("broken =XX kept", "=?utf-8?Q?a=ZZ?=", "=?utf-8?Q?a=ZZ?="),
            ("empty charset kept", "=??Q?abc?=", "=??Q?abc?="),
            ("space inside word kept", "=?utf-8?Q?a b?=", "=?utf-8?Q?a b?="),
            ("bad word then good word", "=?x?Q?a?= =?utf-8?Q?b?=", "=?x?Q?a?= b"),
            ("invalid UTF-8 payload", "=?utf-8?Q?a=FFb?=", "a\u{FFFD}b"),
            ("lone =?", "1 =? 2", "1 =? 2"),
            ("empty text", "", ""),
        ]
        for (name, input, expected) in cases {
            XCTAssertEqual(decodeEncodedWords(input), expected, name)
        }
    }

    func testBase64Decoder() {
        let cases: [(String, [UInt8]?)] = [
            ("", []), ("QQ==", [0x41]), ("QUI=", [0x41, 0x42]), ("QUJD", [0x41, 0x42, 0x43]),
            ("QQ", [0x41]), ("Q", nil), ("QQ=", nil), ("Q===", nil), ("QU=I", nil), ("@@@@", nil),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(decodeBase64(ArraySlice(text.utf8)), expected, "base64 \(text)")
        }
    }
}
