#!/usr/bin/env python3
"""Seed corpora for the fuzz targets from capture files (classic pcap, either byte order).

Usage: seed.py OUT_DIR PCAP...   (writes OUT_DIR/parse_frame/* and OUT_DIR/decode_value/*)
Each parse_frame seed is one selector byte (the link type index of the target) + one frame.
"""
import hashlib
import os
import struct
import sys

# LINKTYPE -> index into the target's LINKS table.
SELECTOR = {1: 0, 113: 1, 276: 2, 101: 3, 228: 4, 229: 5}


def frames(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        return  # pcapng and others: not needed for seeds
    linktype = struct.unpack(end + "I", data[20:24])[0] & 0x03FFFFFF
    if linktype not in SELECTOR:
        return
    at = 24
    while at + 16 <= len(data):
        _, _, caplen, wirelen = struct.unpack(end + "IIII", data[at:at + 16])
        frame = data[at + 16:at + 16 + caplen]
        if len(frame) < caplen:
            return
        yield linktype, frame, wirelen
        at += 16 + caplen


def value(linktype, frame, wirelen):
    # The record value layout of wire/src/value.rs (version 1).
    node, iface = b"seed-node", b"eth0"
    head = struct.pack("<BBHIQBB", 1, 0, linktype, wirelen, 0, len(node), len(iface))
    return head + node + iface + frame


def main():
    out = sys.argv[1]
    for target in ("parse_frame", "decode_value", "decode_key"):
        os.makedirs(os.path.join(out, target), exist_ok=True)
    n = 0
    for path in sys.argv[2:]:
        for linktype, frame, wirelen in frames(path):
            for target, blob in (
                ("parse_frame", bytes([SELECTOR[linktype]]) + frame),
                ("decode_value", value(linktype, frame, wirelen)),
            ):
                name = hashlib.sha1(blob).hexdigest()
                with open(os.path.join(out, target, name), "wb") as f:
                    f.write(blob)
            n += 1
    # A few valid keys: unparsed, IPv4 and IPv6 layouts.
    for blob in (b"\x01\x00", b"\x01\x04\x06" + bytes(12), b"\x01\x06\x11" + bytes(36),
                 b"\x01\x01\x08\x06" + bytes(12)):
        with open(os.path.join(out, "decode_key", hashlib.sha1(blob).hexdigest()), "wb") as f:
            f.write(blob)
    print(f"seeded {n} frames into {out}")


if __name__ == "__main__":
    main()
