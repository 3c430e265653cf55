"""The journal: every request and every state change, in order, readable through the admin API.

Request entries: seq, time, kind=request, request_id (client-request-id, or the emulator's own id when
the client sent none), endpoint, method, path, app_id, cmdlet, identity, status, outcome, fault.
Change entries: seq, time, kind=change, request_id, cmdlet, identity, recipient (ExternalDirectoryObjectId),
attribute, before/after (SHA-256 of each value, in order), unchanged (true when the write was identical)."""
import threading

from . import util

MAX_ENTRIES = 200000  # bounded: a runaway client cannot exhaust memory


class Journal:
    def __init__(self):
        self.lock = threading.Lock()
        self.entries = []
        self.seq = 0
        self.dropped = 0

    def add(self, now, kind, **fields):
        with self.lock:
            self.seq += 1
            e = {"seq": self.seq, "time": util.iso(now), "kind": kind}
            e.update(fields)
            self.entries.append(e)
            if len(self.entries) > MAX_ENTRIES:
                del self.entries[0]
                self.dropped += 1
            return e

    def read(self, since=0, kind=None, limit=10000):
        with self.lock:
            out = [e for e in self.entries if e["seq"] > since and (kind is None or e["kind"] == kind)]
            return {"entries": out[:limit], "last_seq": self.seq, "dropped": self.dropped}

    def clear(self):
        with self.lock:
            self.entries = []
            self.dropped = 0
