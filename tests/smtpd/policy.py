#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) with a per-recipient policy, for tests that need some
recipients refused and others accepted in one session, which Postfix's smtp-sink cannot
do. Local parts starting with `hard` get 550 on RCPT TO; those starting with `soft` get
450 the first time and are accepted after; a message to a local part starting with
`refuse` gets 554 after its data; everyone else is accepted. Each accepted message is
dumped like smtp-sink's `-d`: `X-Rcpt-Args: <addr>` lines, then the message.

With POLICY_ONE_EHLO=1 it also refuses a second EHLO in a session (503), as some relays
do, to show that the client then goes on without it.

With POLICY_PIPELINING=1 it offers PIPELINING (RFC 2920; aiosmtpd reads commands in
order from its stream whether or not it says so). A message whose data arrived together
with the next message's MAIL FROM is dumped with `X-Next-Pipelined: yes` first.

With POLICY_MAX_PER_SESSION=N it accepts N messages per session, then answers MAIL FROM
with 421 and closes the connection, as relays that limit messages per session do. Each
dump then starts with `X-Session-Message: k` (the k-th message of its session) and
`X-Refused-Sessions: n` (how many sessions were closed that way so far).

With POLICY_SLOW_DATA=SECONDS it accepts (and dumps) each message, then waits that long
before answering the end of its data, as a relay whose content filter runs before it
replies: a client that gives up waiting has still had its message delivered.

Usage: policy.py PORT DUMP_DIR
"""
import asyncio
import os
import sys

from aiosmtpd.controller import Controller


class Policy:
    def __init__(self, dump):
        self.dump = dump
        self.seen = {}
        self.count = 0
        self.one_ehlo = os.environ.get("POLICY_ONE_EHLO") == "1"
        self.pipelining = os.environ.get("POLICY_PIPELINING") == "1"
        self.max_per_session = int(os.environ.get("POLICY_MAX_PER_SESSION", "0"))
        self.refused_sessions = 0
        self.slow_data = float(os.environ.get("POLICY_SLOW_DATA", "0"))

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        if self.one_ehlo and getattr(session, "greeted", False):
            return ["503 5.5.1 Error: duplicate EHLO"]
        session.greeted = True
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.max_per_session and getattr(session, "messages", 0) >= self.max_per_session:
            self.refused_sessions += 1
            # The reply goes out first; closing flushes it.
            asyncio.get_event_loop().call_soon(server.transport.close)
            return "421 4.7.0 Too many messages in this session, closing connection"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("hard"):
            return "550 5.1.1 <%s>: Recipient address rejected: no such user" % address
        if local.startswith("soft"):
            tries = self.seen.get(address, 0)
            self.seen[address] = tries + 1
            if tries == 0:
                return "450 4.2.0 <%s>: Recipient address rejected: try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.split("@")[0].startswith("refuse") for r in envelope.rcpt_tos):
            return "554 5.7.1 Message refused: content policy"
        # What the client wrote after the final "." and the server has not read yet
        # (a private attribute of aiosmtpd's reader: test-only introspection).
        waiting = bytes(getattr(server._reader, "_buffer", b""))
        self.count += 1
        path = os.path.join(self.dump, "m.%06d" % self.count)
        tmp = path + ".tmp"
        session.messages = getattr(session, "messages", 0) + 1
        with open(tmp, "wb") as f:
            if self.max_per_session:
                f.write(b"X-Session-Message: %d\n" % session.messages)
                f.write(b"X-Refused-Sessions: %d\n" % self.refused_sessions)
            if waiting.upper().startswith(b"MAIL FROM"):
                f.write(b"X-Next-Pipelined: yes\n")
            for r in envelope.rcpt_tos:
                f.write(("X-Rcpt-Args: <%s>\n" % r).encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, path)
        if self.slow_data:
            await asyncio.sleep(self.slow_data)
        return "250 2.0.0 Ok: queued"


def main():
    port, dump = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Policy(dump), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        asyncio.get_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
