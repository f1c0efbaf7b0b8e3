#!/usr/bin/env python3
"""TCP Failure Lab packet capture, for where tcpdump cannot run.

Opens an AF_PACKET socket on one interface (or on all, with --interface any)
and writes what it receives to stdout as a pcap stream, the same format as
`tcpdump -w -`, so the lab reads both with one parser. Records carry
CLOCK_REALTIME timestamps in nanoseconds (the pcap convention), taken by the
kernel at receipt (SO_TIMESTAMPNS), or time.time() when no timestamp comes.

The link type is LINUX_SLL2 (276) for every interface, as `tcpdump -i any`
writes: the socket is SOCK_DGRAM, so the kernel strips the link header whatever
the device is, and this program writes the 20-byte cooked header, with the
interface index, from the address recvmsg returns.

Run it as root of the lab's network namespace (a user namespace's root is
enough: CAP_NET_RAW there). It prints "listening on IFACE, ..." on stderr once
the socket is bound, and stops on SIGTERM or when stdout is closed.
"""

import argparse
import os
import re
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
ARPHRD_LOOPBACK = 772
LINKTYPE_LINUX_SLL2 = 276
# Linux's SO_TIMESTAMPNS (35 on x86, arm and most others); Python has no name for it.
SO_TIMESTAMPNS = 35
# IP protocols worth sending to the lab: TCP, ICMP, ICMPv6, and IPv6's extension
# headers, behind which a TCP or ICMPv6 header may hide (the lab's parser walks them).
KEEP_V4 = {1, 6}
KEEP_V6 = {0, 6, 43, 44, 58, 60}


def interface_name(text):
    if text == "any" or re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", text):
        return text
    raise argparse.ArgumentTypeError(f"not an interface name: {text!r}")


def snaplen(text):
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 64 <= n <= 262144:
        raise argparse.ArgumentTypeError(f"must be 64-262144, got {text!r}")
    return n


def wanted(protocol, data):
    """TCP and ICMP over IPv4/IPv6; everything else stays out of the pipe."""
    if protocol == ETH_P_IP:
        return len(data) >= 20 and data[9] in KEEP_V4
    if protocol == ETH_P_IPV6:
        return len(data) >= 40 and data[6] in KEEP_V6
    return False


def ip_length(protocol, data, fallback):
    """The packet's length from its IP header, for a packet longer than what was read."""
    if protocol == ETH_P_IP:
        return max(fallback, struct.unpack_from("!H", data, 2)[0])
    if protocol == ETH_P_IPV6:
        return max(fallback, 40 + struct.unpack_from("!H", data, 4)[0])
    return fallback


def timestamp(ancdata):
    for level, kind, value in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
            sec, nsec = struct.unpack("@qq", value[:16])
            return sec, nsec
    ns = time.time_ns()
    return ns // 1_000_000_000, ns % 1_000_000_000


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interface", type=interface_name, default="lo")
    p.add_argument("--snaplen", type=snaplen, default=160)
    args = p.parse_args()

    # SIGTERM ends the program at once: every record already written was flushed.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    except PermissionError as e:
        print(f"capture.py: cannot open an AF_PACKET socket: {e} (needs CAP_NET_RAW)", file=sys.stderr)
        return 1
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        pass  # time.time() at receipt instead
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    except OSError:
        pass
    if args.interface != "any":
        try:
            s.bind((args.interface, ETH_P_ALL))
        except OSError as e:
            print(f"capture.py: {args.interface}: {e}", file=sys.stderr)
            return 1

    out = sys.stdout.buffer
    # pcap global header, nanosecond variant: magic, version 2.4, zone, sigfigs, snaplen, link type.
    out.write(struct.pack("=IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, args.snaplen, LINKTYPE_LINUX_SLL2))
    out.flush()
    print(f"capture.py: listening on {args.interface}, link-type LINUX_SLL2 (AF_PACKET socket), "
          f"snapshot length {args.snaplen} bytes", file=sys.stderr, flush=True)

    ifindex = {}
    while True:
        # Only the first snaplen bytes are copied: the rest of a 64 KiB segment on lo is
        # payload the lab never reads.
        data, ancdata, flags, addr = s.recvmsg(args.snaplen, socket.CMSG_SPACE(16))
        ifname, protocol, pkttype, hatype, hwaddr = addr
        # On a loopback device every packet passes twice: once leaving (PACKET_OUTGOING)
        # and once arriving (PACKET_HOST). Keep the arrival, as libpcap does, so that the
        # lab never mistakes the second copy for a retransmission.
        if hatype == ARPHRD_LOOPBACK and pkttype == PACKET_OUTGOING:
            continue
        if not wanted(protocol, data):
            continue
        sec, nsec = timestamp(ancdata)
        if ifname not in ifindex:
            try:
                ifindex[ifname] = socket.if_nametoindex(ifname)
            except OSError:
                ifindex[ifname] = 0  # the device went away meanwhile
        cooked = struct.pack("!HHIHBB8s", protocol, 0, ifindex[ifname], hatype, pkttype,
                             min(len(hwaddr), 8), hwaddr[:8].ljust(8, b"\0"))
        caught = (cooked + data)[: args.snaplen]
        size = len(data)
        if flags & socket.MSG_TRUNC:
            size = ip_length(protocol, data, size)
        out.write(struct.pack("=IIII", sec, nsec, len(caught), len(cooked) + size))
        out.write(caught)
        out.flush()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BrokenPipeError, KeyboardInterrupt):
        os._exit(0)
