#!/usr/bin/env python3
"""End-to-end test of recipient address forms through contrib/postfix to inbox keys.

A private Postfix instance, set up as in postfix_e2e.py, serves two domains:
example.test and the internationalized bücher.example. Postfix's settings and
maps list the second one in A-label form (xn--bcher-kva.example), because
Postfix compares domains as written. The instance sets
recipient_delimiter = + and smtputf8_enable = yes, as a site with
sub-addresses and SMTPUTF8 mail would. The contrib/postfix files are
appended with their documented placeholders substituted, with one map line
for each served domain (as contrib/postfix/README.md shows for several
domains), and with `--subaddress-delimiter +` added to notify-deliver's argv
in master.cf. notify-relay runs with both domains and the same
`--subaddress-delimiter +`.

Cases, each with long-poll subscribers waiting before the message is sent
with smtplib's send_message to 127.0.0.1, and a check that the mailbox still
gets the message:
  1. ALICE@EXAMPLE.TEST reaches the inbox alice@example.test.
  2. alice+news@example.test reaches alice@example.test. Postfix looks the
     full address up in recipient_bcc_maps, so the copy is
     alice+news@example.test.notify.invalid and notify-deliver cuts the tag.
     virtual(8) strips the tag through recipient_delimiter.
  3. The SMTPUTF8 local part jürgen@example.test reaches the inbox
     jürgen@example.test (percent-encoded in the URL).
  4. user@xn--bcher-kva.example reaches user@xn--bcher-kva.example, and so
     does user@bücher.example when Postfix accepts that form with SMTPUTF8.
     When Postfix rejects it at RCPT TO, the reply is printed and only the
     A-label form is tested. Postfix 3.7.11 from Debian 12 rejects it,
     because it does not match the U-label against the A-label in
     virtual_mailbox_domains and so routes the address to default_transport,
     which this instance sets to error.
  5. The U-label bücher.example is added to Postfix's domains, mailbox table
     and both contrib maps, and Postfix is reloaded. user@bücher.example is
     then accepted and reaches user@xn--bcher-kva.example, although the
     relay still serves only the A-label.

Usage (as root, because Postfix runs as root):
    tests/e2e/postfix_addresses_e2e.py [BIN_DIR]
BIN_DIR holds notify-deliver and notify-relay; it defaults to $NOTIFY_BIN_DIR,
then .build/release, then .build/debug. The test builds nothing. Set
NOTIFY_E2E_KEEP=1 to keep the temporary directory (configuration, Postfix
log, mailboxes) for inspection.

Side effects outside the temporary directory: a system user and group named
"notify" (the pipe user in contrib/postfix/master.cf) are created when
missing and removed again at exit. The test starts and stops only its own
Postfix instance and relay, by their configuration directory and PID.
"""

import json
import os
import pwd
import re
import shutil
import smtplib
import sys
import uuid
from email.message import EmailMessage
from urllib.parse import quote

from e2e_common import (
    finish_run, is_root_or_report, require_postfix,
    DELIVERY_TIMEOUT, REPO, PostfixInstance, Relay, Results, SetupError, check_long_poll_event, copy_deliver,
    ensure_system_user, exit_on_sigterm, find_bin_dir, free_loopback_port, log, maildir_has, make_temp_root,
    remove_system_user, run, start_long_polls, wait_until)

CONTRIB = REPO / "contrib" / "postfix"
TEST_NAME = "postfix_addresses_e2e.py"

DOMAIN = "example.test"
IDN_DOMAIN = "bücher.example"
IDN_DOMAIN_ASCII = "xn--bcher-kva.example"
# The domains the relay serves and, until case 5, the only ones Postfix serves.
SERVED_DOMAINS = (DOMAIN, IDN_DOMAIN_ASCII)
SENDER = f"sender@{DOMAIN}"
PIPE_USER = "notify"
SUBADDRESS_DELIMITER = "+"
SUBJECT = "Adressen prüfen"

# Virtual mailboxes: address as Postfix looks it up, and its Maildir under
# virtual_mailbox_base. The Maildir names are ASCII so that they do not
# depend on the file system's encoding.
MAILBOXES = {
    f"alice@{DOMAIN}": "alice",
    f"jürgen@{DOMAIN}": "juergen",
    f"user@{IDN_DOMAIN_ASCII}": "idn-user",
    SENDER: "sender",
}

# The placeholders that each contrib file documents in its header comment.
PLACEHOLDER_DOMAIN = "example.com"
PLACEHOLDER_DOMAIN_PATTERN = "example\\.com"
PLACEHOLDER_CONFIG_DIR = "/etc/postfix/"
PLACEHOLDER_DELIVER = "/usr/local/bin/notify-deliver"
PLACEHOLDER_SOCKET = "/run/notify/relay.sock"
CONTRIB_PLACEHOLDERS = {
    "main.cf": [PLACEHOLDER_CONFIG_DIR],
    "master.cf": [PLACEHOLDER_DELIVER, PLACEHOLDER_SOCKET],
    "notify_bcc.regexp": [PLACEHOLDER_DOMAIN_PATTERN],
    "notify_transport.regexp": [PLACEHOLDER_DOMAIN_PATTERN, PLACEHOLDER_DOMAIN],
}
MAP_FILES = ("notify_bcc.regexp", "notify_transport.regexp")

# notify-deliver's options end at "--" in the contrib argv; options such as
# --tempfail or --subaddress-delimiter go just before it.
ARGV_RECIPIENTS = " -- ${mailbox}@${nexthop}"


class AddressPostfix(PostfixInstance):
    """The private Postfix instance with two served domains, sub-addresses and SMTPUTF8."""

    def __init__(self, root, smtp_port, deliver_path, socket_path, mail_uid, mail_gid):
        super().__init__(root, smtp_port, f"mx.{DOMAIN}")
        self.mail_dir = root / "mail"
        self.mailbox_table = self.config_dir / "virtual_mailboxes"
        self.domains = list(SERVED_DOMAINS)
        self.mailboxes = dict(MAILBOXES)
        self.deliver_path = deliver_path
        self.socket_path = socket_path
        self.mail_uid = mail_uid
        self.mail_gid = mail_gid

    def site_main_cf(self):
        # The UTF-8 addresses live in a texthash table (read when a process
        # starts, no postmap), so main.cf stays ASCII until case 5.
        return f"""\
mydomain = {DOMAIN}
mydestination =
recipient_delimiter = {SUBADDRESS_DELIMITER}
smtputf8_enable = yes
virtual_mailbox_domains = {", ".join(self.domains)}
virtual_mailbox_base = {self.mail_dir}
virtual_mailbox_maps = texthash:{self.mailbox_table}
virtual_uid_maps = static:{self.mail_uid}
virtual_gid_maps = static:{self.mail_gid}
"""

    def contrib_text(self, name, domain):
        """Read one contrib/postfix file and substitute its documented placeholders for domain."""
        text = (CONTRIB / name).read_text(encoding="utf-8")
        for placeholder in CONTRIB_PLACEHOLDERS[name]:
            if placeholder not in text:
                raise SetupError(f"contrib/postfix/{name} no longer contains the placeholder {placeholder}; "
                                 f"update the substitutions in tests/e2e/{TEST_NAME}")
        text = text.replace(PLACEHOLDER_DELIVER, str(self.deliver_path))
        text = text.replace(PLACEHOLDER_SOCKET, str(self.socket_path))
        text = text.replace(PLACEHOLDER_CONFIG_DIR, f"{self.config_dir}/")
        text = text.replace(PLACEHOLDER_DOMAIN_PATTERN, domain.replace(".", "\\."))
        text = text.replace(PLACEHOLDER_DOMAIN, domain)
        return text

    def map_text(self, name):
        """Return a contrib map for every domain: the file for the first, then its rule lines for the rest."""
        text = self.contrib_text(name, self.domains[0])
        for domain in self.domains[1:]:
            rules = [line for line in self.contrib_text(name, domain).splitlines()
                     if line.strip() and not line.startswith("#")]
            text += "\n".join(rules) + "\n"
        return text

    def master_text(self):
        """Return contrib master.cf with --subaddress-delimiter added before notify-deliver's "--"."""
        text = self.contrib_text("master.cf", DOMAIN)
        if text.count(ARGV_RECIPIENTS) != 1:
            raise SetupError(f"contrib/postfix/master.cf no longer ends the argv with '{ARGV_RECIPIENTS.strip()}'; "
                             f"update master_text() in tests/e2e/{TEST_NAME}")
        return text.replace(ARGV_RECIPIENTS, f" --subaddress-delimiter {SUBADDRESS_DELIMITER}{ARGV_RECIPIENTS}")

    def configure(self):
        self.mail_dir.mkdir(mode=0o700)
        os.chown(self.mail_dir, self.mail_uid, self.mail_gid)
        self.write_files()

    def write_files(self):
        """Write main.cf, master.cf, the two maps and the mailbox table for the current domains."""
        main_cf = (self.base_main_cf(TEST_NAME) + self.site_main_cf()
                   + "\n# contrib/postfix/main.cf follows.\n" + self.contrib_text("main.cf", DOMAIN))
        master_cf = (self.base_master_cf(TEST_NAME)
                     + "\n# contrib/postfix/master.cf follows, with --subaddress-delimiter added.\n"
                     + self.master_text())
        # write_config creates the directories and writes master.cf (ASCII)
        # and an empty main.cf. main.cf and the other files that may contain
        # UTF-8 are written here with the encoding named, because
        # write_config uses the locale's encoding.
        utf8_files = {name: self.map_text(name) for name in MAP_FILES}
        utf8_files["main.cf"] = main_cf
        utf8_files[self.mailbox_table.name] = "".join(
            f"{address} {folder}/\n" for address, folder in self.mailboxes.items())
        self.write_config("", master_cf)
        for name, text in utf8_files.items():
            (self.config_dir / name).write_text(text, encoding="utf-8")

    def add_domain(self, domain, mailboxes):
        """Serve one more domain with these extra mailbox addresses, and reload Postfix."""
        self.domains.append(domain)
        self.mailboxes.update(mailboxes)
        self.write_files()
        self.reload()

    def notify_service(self):
        """Return the notify entry of master.cf as the instance's postconf reads it."""
        completed = run(["postconf", "-c", self.config_dir, "-M", "notify/unix"])
        return completed.stdout.strip()

    def mailbox_has(self, address, message_id):
        return maildir_has(self.mail_dir / self.mailboxes[address], message_id)

    def queue_id_of(self, message_id):
        """Wait for cleanup(8)'s "message-id=" log line of message_id; return its queue id or None."""
        pattern = re.compile(r" ([0-9A-Za-z]+): message-id=" + re.escape(message_id))

        def find():
            match = pattern.search(self.log_text())
            return match.group(1) if match else None

        return wait_until(find, DELIVERY_TIMEOUT)

    def log_lines_folded(self, queue_id, *words):
        """Return the log lines of queue_id that contain every word, compared case-insensitively."""
        folded = [word.lower() for word in words]
        return [line for line in self.log_lines(queue_id) if all(word in line.lower() for word in folded)]


def build_message(recipient):
    """Return (Message-ID, EmailMessage) of a small test message for one recipient."""
    message = EmailMessage()
    message_id = f"<{uuid.uuid4().hex}@{DOMAIN}>"
    message["From"] = f"Sender <{SENDER}>"
    message["To"] = recipient
    message["Subject"] = SUBJECT
    message["Message-ID"] = message_id
    message.set_content(f"Test message from tests/e2e/{TEST_NAME}.\n")
    return message_id, message


def send_message(port, recipient, smtputf8):
    """Send one message to recipient with smtplib's send_message; return its Message-ID.

    smtplib adds SMTPUTF8 to MAIL FROM by itself when an envelope address is
    not ASCII, so it is passed here only for ASCII envelopes, to send the
    parameter once.
    """
    message_id, message = build_message(recipient)
    envelope_is_ascii = (SENDER + recipient).isascii()
    options = ["SMTPUTF8"] if smtputf8 and envelope_is_ascii else []
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.send_message(message, from_addr=SENDER, to_addrs=[recipient], mail_options=options)
    except smtplib.SMTPRecipientsRefused as error:
        code, reply = error.recipients[recipient]
        raise SetupError(f"RCPT TO:<{recipient}> rejected: {code} {reply.decode('utf-8', errors='replace')}")
    return message_id


def rcpt_reply(port, recipient):
    """Return the (code, text) reply to RCPT TO after MAIL FROM with SMTPUTF8; send no data."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        code, reply = client.mail(SENDER, ["SMTPUTF8"])
        if code != 250:
            raise SetupError(f"MAIL FROM with SMTPUTF8 rejected: {code} {reply!r}")
        code, reply = client.rcpt(recipient)
        client.rset()
    return code, reply.decode("utf-8", errors="replace")


def check_inbox_field(results, poller, key):
    """Check the "inbox" field of a long-poll body, the key the relay matched the request to."""
    try:
        inbox = json.loads(poller.body)["inbox"]
    except (TypeError, ValueError, KeyError) as error:
        inbox = f"no inbox field: {error}"
    results.check(f"{poller.inbox}: inbox field", inbox == key, f"got {inbox!r}, want {key!r}")


def check_delivery(results, postfix, relay_port, recipient, key, mailbox, paths, smtputf8=False):
    """Send one message to recipient while long-polls wait on paths; check the events, the mailbox and the log.

    key is the inbox every path must resolve to, and mailbox the address of
    the virtual mailbox that must receive the message.
    """
    pollers = start_long_polls(relay_port, paths)
    message_id = send_message(postfix.smtp_port, recipient, smtputf8)

    for poller in pollers:
        if check_long_poll_event(results, poller, message_id, SUBJECT, key, SENDER) is not None:
            check_inbox_field(results, poller, key)

    delivered = wait_until(lambda: postfix.mailbox_has(mailbox, message_id), DELIVERY_TIMEOUT)
    results.check(f"{recipient}: mailbox {mailbox} has the message", delivered,
                  f"no message with {message_id} in {postfix.mail_dir / postfix.mailboxes[mailbox]} "
                  f"after {DELIVERY_TIMEOUT} s")

    queue_id = postfix.queue_id_of(message_id)
    if not results.check(f"{recipient}: queue id in the Postfix log", queue_id is not None,
                         f"no 'message-id={message_id}' line after {DELIVERY_TIMEOUT} s"):
        return None
    finished = postfix.wait_for_removal(queue_id)
    results.check(f"{recipient}: Postfix finished the message", finished,
                  f"no '{queue_id}: removed' in the Postfix log after {DELIVERY_TIMEOUT} s")

    # The copy's address shows what recipient_bcc_maps was given: the
    # recipient as received, with its case and sub-address.
    copy = f"{recipient}.notify.invalid"
    sent = postfix.log_lines_folded(queue_id, f"to=<{copy}>", "relay=notify", "status=sent")
    results.check(f"{recipient}: notify copy {copy} delivered by the pipe transport", len(sent) == 1,
                  f"want one 'relay=notify ... status=sent' line; log for {queue_id}:\n"
                  + "\n".join(postfix.log_lines(queue_id)))
    return queue_id


def case_uppercase(results, postfix, relay_port):
    log("case 1: uppercase recipient")
    key = f"alice@{DOMAIN}"
    check_delivery(results, postfix, relay_port, f"ALICE@{DOMAIN.upper()}", key, key,
                   [key, f"ALICE@{DOMAIN.upper()}"])


def case_subaddress(results, postfix, relay_port):
    log("case 2: sub-address alice+news")
    key = f"alice@{DOMAIN}"
    recipient = f"alice+news@{DOMAIN}"
    queue_id = check_delivery(results, postfix, relay_port, recipient, key, key,
                              [key, quote(recipient, safe="@")])
    if queue_id is None:
        return

    # virtual(8) finds alice's mailbox by cutting the tag (recipient_delimiter)
    # but logs the recipient as received.
    stored = postfix.log_lines(queue_id, f"to=<{recipient}>", "relay=virtual", "status=sent")
    results.check(f"{recipient}: virtual(8) delivered the recipient as received", len(stored) == 1,
                  "\n".join(postfix.log_lines(queue_id)))


def case_utf8_local_part(results, postfix, relay_port):
    log("case 3: SMTPUTF8 local part")
    key = f"jürgen@{DOMAIN}"
    check_delivery(results, postfix, relay_port, key, key, key, [quote(key, safe="@")], smtputf8=True)


def case_idn_domain(results, postfix, relay_port):
    log("case 4: internationalized domain")
    key = f"user@{IDN_DOMAIN_ASCII}"
    results.check("A-label constant matches Python's IDNA codec",
                  IDN_DOMAIN.encode("idna").decode() == IDN_DOMAIN_ASCII,
                  f"{IDN_DOMAIN} encodes to {IDN_DOMAIN.encode('idna')!r}")
    # A subscriber may name the domain in either form; the relay converts the U-label.
    paths = [key, quote(f"user@{IDN_DOMAIN}", safe="@")]
    check_delivery(results, postfix, relay_port, key, key, key, paths, smtputf8=True)

    unicode_recipient = f"user@{IDN_DOMAIN}"
    code, reply = rcpt_reply(postfix.smtp_port, unicode_recipient)
    log(f"Postfix reply to RCPT TO:<{unicode_recipient}> with SMTPUTF8: {code} {reply}")
    if code != 250:
        log(f"Postfix rejects the U-label form; only the A-label form {key} is tested")
        return
    check_delivery(results, postfix, relay_port, unicode_recipient, key, key, paths, smtputf8=True)


def case_idn_domain_both_forms(results, postfix, relay_port):
    log("case 5: internationalized domain listed in Postfix in both forms")
    key = f"user@{IDN_DOMAIN_ASCII}"
    unicode_recipient = f"user@{IDN_DOMAIN}"
    postfix.add_domain(IDN_DOMAIN, {unicode_recipient: postfix.mailboxes[key]})

    code, reply = rcpt_reply(postfix.smtp_port, unicode_recipient)
    if not results.check(f"{unicode_recipient}: accepted once Postfix lists the U-label", code == 250,
                         f"RCPT TO reply {code} {reply}"):
        return
    # The relay still serves only the A-label form. notify-deliver and the
    # relay both convert a U-label, so this does not show which one did.
    paths = [key, quote(unicode_recipient, safe="@")]
    check_delivery(results, postfix, relay_port, unicode_recipient, key, key, paths, smtputf8=True)


def main(argv):
    exit_on_sigterm()
    results = Results()
    if not is_root_or_report(results, TEST_NAME, "starts a Postfix instance"):
        return results.summary()

    root = None
    created_user = False
    postfix = None
    relay = None
    try:
        bin_dir = find_bin_dir(argv)
        require_postfix()
        log(f"binaries from {bin_dir}")

        created_user = ensure_system_user(PIPE_USER)
        root = make_temp_root("notify-e2e-")
        deliver = copy_deliver(bin_dir, root / "bin")

        run_dir = root / "run"
        run_dir.mkdir(mode=0o755)
        socket_path = run_dir / "relay.sock"
        nobody = pwd.getpwnam("nobody")

        relay_arguments = ["--subaddress-delimiter", SUBADDRESS_DELIMITER]
        for domain in SERVED_DOMAINS[1:]:
            relay_arguments += ["--domain", domain]
        relay = Relay(bin_dir / "notify-relay", free_loopback_port(), socket_path, root / "log-relay.txt",
                      socket_group=PIPE_USER, domain=SERVED_DOMAINS[0], extra_arguments=relay_arguments)
        postfix = AddressPostfix(root, free_loopback_port(), deliver, socket_path, nobody.pw_uid, nobody.pw_gid)
        relay.start()
        postfix.configure()
        postfix.start()
        log(f"Postfix on 127.0.0.1:{postfix.smtp_port}, relay on 127.0.0.1:{relay.http_port}")

        service = postfix.notify_service()
        results.check("notify-deliver argv has --subaddress-delimiter",
                      f"--subaddress-delimiter {SUBADDRESS_DELIMITER} --" in service, service)

        case_uppercase(results, postfix, relay.http_port)
        case_subaddress(results, postfix, relay.http_port)
        case_utf8_local_part(results, postfix, relay.http_port)
        case_idn_domain(results, postfix, relay.http_port)
        case_idn_domain_both_forms(results, postfix, relay.http_port)

        bounced = [line for line in postfix.log_text().splitlines() if "status=bounced" in line]
        results.check("no status=bounced in the Postfix log", not bounced, "\n".join(bounced))
    except SetupError as error:
        results.check("setup", False, str(error))
    except Exception as error:  # any other error still gets the summary line and cleanup
        results.check("test run", False, f"{type(error).__name__}: {error}")
    finally:
        finish_run(
            results, relay=relay, root=root, remove_user=PIPE_USER if created_user else None,
            failure_logs=[("Postfix log", postfix.log_text, 4000)] if postfix is not None else [],
            stops=[postfix.stop] if postfix is not None else [])

    return results.summary()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
