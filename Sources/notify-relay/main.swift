// notify-relay: answers web clients waiting on an inbox the moment
// notify-deliver reports new mail for it. See `notify-relay --help`.

import Glibc
import NotifyRelay

exit(relayMain(arguments: Array(CommandLine.arguments.dropFirst())))
