// Table test of the exit status for every outcome, terminal or not, with and without --tempfail.

import XCTest

@testable import NotifyDeliver

final class ExitPolicyTests: XCTestCase {
    func testExitStatusTable() {
        // (outcome, interactive, tempfail, expected status)
        let cases: [(RunOutcome, Bool, Bool, Int32)] = [
            (.delivered, false, false, 0), (.delivered, false, true, 0),
            (.delivered, true, false, 0), (.delivered, true, true, 0),
            (.usageError, false, false, 0), (.usageError, false, true, 0),
            (.usageError, true, false, 64), (.usageError, true, true, 64),
            (.noRecipient, false, false, 0), (.noRecipient, false, true, 0),
            (.noRecipient, true, false, 64), (.noRecipient, true, true, 64),
            (.relayUnreachable, false, false, 0), (.relayUnreachable, false, true, 75),
            (.relayUnreachable, true, false, 69), (.relayUnreachable, true, true, 75),
            (.relayRejected, false, false, 0), (.relayRejected, false, true, 0),
            (.relayRejected, true, false, 65), (.relayRejected, true, true, 65),
        ]
        XCTAssertEqual(cases.count, RunOutcome.allCases.count * 4)
        for (outcome, interactive, tempfail, expected) in cases {
            XCTAssertEqual(
                exitStatus(for: outcome, interactive: interactive, tempfail: tempfail), expected,
                "\(outcome) interactive=\(interactive) tempfail=\(tempfail)")
        }
    }

    func testNonInteractiveNeverBounces() {
        // Postfix bounces on any status but 0, 71 and 75; Exim on any but 0, 73 and 75.
        for outcome in RunOutcome.allCases {
            for tempfail in [false, true] {
                let status = exitStatus(for: outcome, interactive: false, tempfail: tempfail)
                XCTAssertTrue(status == 0 || status == 75, "\(outcome) tempfail=\(tempfail) gave \(status)")
            }
        }
    }
}
