#!/usr/bin/env python3
"""Verifies the DKIM signature of one message with dkimpy, an implementation independent
of the one that signed it, its DNS lookup stubbed to answer with the test key's record.

Usage: verify.py RECORD < message
  RECORD: the TXT record's value ("v=DKIM1; k=rsa; p=..."), or the whole line that
  `bulletin dkim keygen` prints (NAME IN TXT "..." "...": the quoted strings are joined).
Prints `ok d=DOMAIN s=SELECTOR h=HEADERS` and exits 0 when the signature verifies; prints
`fail: WHY` and exits 1 when it does not; exits 2 when dkimpy is missing.
"""
import re
import sys

try:
    import dkim
except ImportError:
    print("dkimpy is not installed: pip install dkimpy pynacl", file=sys.stderr)
    sys.exit(2)


def main():
    record = sys.argv[1]
    if " IN TXT " in record:
        name, value = record.split(" IN TXT ", 1)
        record = "".join(re.findall(r'"([^"]*)"', value))
        expected_name = name.strip()
    else:
        expected_name = None
    message = sys.stdin.buffer.read()
    # smtp-sink writes the lines it received; make line ends CRLF as on the wire.
    message = re.sub(rb"\r?\n", b"\r\n", message)
    asked = []

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        asked.append(name.rstrip("."))
        if expected_name is not None and name.rstrip(".") != expected_name:
            return None
        return record.encode()

    d = dkim.DKIM(message)
    try:
        ok = d.verify(dnsfunc=dnsfunc)
    except dkim.DKIMException as e:
        print(f"fail: {e}")
        return 1
    if not ok:
        print(f"fail: signature does not verify (asked {asked})")
        return 1
    sig = d.signature_fields
    h = sig.get(b"h", b"").decode().replace(" ", "")
    c = sig.get(b"c", b"").decode()
    a = sig.get(b"a", b"").decode()
    print(f"ok d={d.domain.decode()} s={d.selector.decode()} a={a} c={c} h={h}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
