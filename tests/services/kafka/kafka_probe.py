#!/usr/bin/env python3
"""Tiny Kafka wire-protocol client for tests/services/kafka.sh (stdlib only, no JVM start).

  kafka_probe.py wait BOOTSTRAP NODES SECONDS     wait until a Metadata request to every address in
                                                  BOOTSTRAP lists NODES brokers; exit 1 on timeout
  kafka_probe.py create-topic BOOTSTRAP NAME PARTITIONS RF [KEY=VALUE ...]
                                                  CreateTopics; an existing topic is an error

Speaks the non-flexible request versions that Kafka 4.x still serves after KIP-896:
Metadata v4 and CreateTopics v4. Every read is bounded (socket timeout, length cap).
"""
import socket
import struct
import sys
import time

MAX_RESPONSE = 16 * 1024 * 1024  # a metadata response of a test cluster is a few KiB


class Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.buf[self.pos:self.pos + n].decode()
        self.pos += n
        return s


def kstr(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def call(host, port, api_key, version, body, timeout):
    header = struct.pack(">hhi", api_key, version, 1) + kstr("certsync-probe")
    req = header + body
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(req)) + req)
        n = struct.unpack(">i", recv_exact(s, 4))[0]
        if n < 4 or n > MAX_RESPONSE:
            raise ValueError(f"bad response length {n}")
        r = Reader(recv_exact(s, n))
        r.take(">i")  # correlation id
        return r


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        out += chunk
    return out


def metadata_brokers(host, port, timeout):
    # Metadata v4: topics = null (all), allow_auto_topic_creation = false.
    r = call(host, port, 3, 4, struct.pack(">i", -1) + b"\x00", timeout)
    r.take(">i")  # throttle_time_ms
    brokers = []
    for _ in range(r.take(">i")):
        node = r.take(">i")
        h = r.string()
        p = r.take(">i")
        r.string()  # rack
        brokers.append((node, h, p))
    return brokers


def parse_bootstrap(bootstrap):
    out = []
    for hp in bootstrap.split(","):
        h, p = hp.rsplit(":", 1)
        out.append((h, int(p)))
    return out


def cmd_wait(bootstrap, nodes, seconds):
    deadline = time.monotonic() + seconds
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            ok = True
            for h, p in parse_bootstrap(bootstrap):
                brokers = metadata_brokers(h, p, 2.0)
                if len(brokers) < nodes:
                    ok = False
                    last = f"{h}:{p} lists {len(brokers)} of {nodes} brokers"
                    break
            if ok:
                return 0
        except (OSError, ValueError, struct.error) as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.2)  # polling: a broker offers no readiness event to wait on
    print(f"kafka_probe: brokers at {bootstrap} not serving after {seconds}s: {last}", file=sys.stderr)
    return 1


def cmd_create_topic(bootstrap, name, partitions, rf, configs):
    h, p = parse_bootstrap(bootstrap)[0]
    body = struct.pack(">i", 1) + kstr(name) + struct.pack(">ih", partitions, rf)
    body += struct.pack(">i", 0)  # no manual assignments
    body += struct.pack(">i", len(configs))
    for kv in configs:
        k, v = kv.split("=", 1)
        body += kstr(k) + kstr(v)
    body += struct.pack(">i", 30000) + b"\x00"  # timeout_ms, validate_only=false
    r = call(h, p, 19, 4, body, 35.0)
    r.take(">i")  # throttle_time_ms
    for _ in range(r.take(">i")):
        tname = r.string()
        err = r.take(">h")
        msg = r.string()
        if err != 0:
            print(f"kafka_probe: creating topic {tname} failed: error {err}: {msg}", file=sys.stderr)
            return 1
    return 0


def main(argv):
    if len(argv) >= 4 and argv[1] == "wait":
        return cmd_wait(argv[2], int(argv[3]), float(argv[4]) if len(argv) > 4 else 60.0)
    if len(argv) >= 6 and argv[1] == "create-topic":
        return cmd_create_topic(argv[2], argv[3], int(argv[4]), int(argv[5]), argv[6:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
