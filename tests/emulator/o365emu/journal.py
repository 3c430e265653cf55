"""The journal: every request and every state change, in order, readable through the admin API.

Request entries: seq, time, kind=request, request_id (client-request-id, or the emulator's own id when
the client sent none), endpoint, method, path, app_id, cmdlet, identity, status, outcome, fault.
Change entries: seq, time, kind=change, request_id, cmdlet, identity, recipient (ExternalDirectoryObjectId),
attribute, before/after (SHA-256 of each value, in order), unchanged (true when the write was identical)."""
import collections
import threading

from . import util

MAX_ENTRIES = 200000  # bounded: a runaway client cannot exhaust memory


class Journal:
    """Entries in a deque of at most max_entries (the oldest drop off in O(1)); every string field is
    cut to util.TRUNCATE_AT characters, so a 4 MB Identity or path costs the journal a few hundred bytes."""

    def __init__(self, max_entries=MAX_ENTRIES):
        self.lock = threading.Lock()
        self.max_entries = max_entries
        self.entries = collections.deque(maxlen=max_entries)
        self.seq = 0
        self.dropped = 0

    def add(self, now, kind, **fields):
        with self.lock:
            self.seq += 1
            e = {"seq": self.seq, "time": util.iso(now), "kind": kind}
            e.update({k: util.truncate(v) for k, v in fields.items()})
            if len(self.entries) == self.max_entries:
                self.dropped += 1
            self.entries.append(e)
            return e

    def read(self, since=0, kind=None, limit=10000):
        with self.lock:
            out = [e for e in self.entries if e["seq"] > since and (kind is None or e["kind"] == kind)]
            return {"entries": out[:limit], "last_seq": self.seq, "dropped": self.dropped}

    def clear(self):
        with self.lock:
            self.entries.clear()
            self.dropped = 0
