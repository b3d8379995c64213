// notify-deliver: run by the MTA for each delivered message. It sends a record
// to notify-relay, so browsers waiting on the recipient's inbox are notified. All logic
// lives in the NotifyDeliver library, where tests reach it.

import Glibc
import NotifyCore
import NotifyDeliver

exit(run(arguments: Array(CommandLine.arguments.dropFirst()), environment: currentEnvironment(), stdinFD: 0))
