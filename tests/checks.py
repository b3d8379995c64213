"""Check counting shared by the stand-alone test scripts under tests/.

Each script runs named check functions with Results.run, which prints one
`ok`/`FAIL` line per check, and ends with the plain `N passed, N failed` line.
A check fails by raising CheckFailed (usually through expect); any other
exception also fails it, with its traceback.
"""

import traceback


class CheckFailed(Exception):
    """A check whose condition did not hold."""


class WatchdogExpired(BaseException):
    """Expiry of a script's whole-run watchdog.

    It derives from BaseException so that no check's `except Exception` catches it.
    """


def expect(condition, message):
    """Raise CheckFailed with message unless condition holds."""
    if not condition:
        raise CheckFailed(message)


class Results:
    """Counts checks and prints one line for each."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, name, function, *arguments):
        """Run one check and return True when it passed; a returned string is printed as a note."""
        try:
            note = function(*arguments)
        except CheckFailed as failure:
            self.failed += 1
            print(f"FAIL {name}: {failure}", flush=True)
            return False
        except Exception:
            self.failed += 1
            print(f"FAIL {name}: unexpected error\n{traceback.format_exc()}", flush=True)
            return False
        self.passed += 1
        print(f"ok   {name}" + (f" ({note})" if note else ""), flush=True)
        return True

    @staticmethod
    def skip(name, reason):
        """Print that a check was skipped and why; it counts neither way."""
        print(f"skip {name}: {reason}", flush=True)
