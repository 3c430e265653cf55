"""Fault injection and the throttling model.

A fault rule: {"endpoint": "token"|"exchange"|"graph"|"any", "cmdlet": name, "identity": recipient,
"action": "status"|"delay"|"drop"|"partial"|"aadsts", "status": 429|503|504, "retry_after": seconds,
"retry_after_format": "seconds"|"http-date", "delay_ms": n, "code": AADSTS code, "rate": 0..1,
"count": n (apply n times, then retire), "skip": n (let the first n matches through)}.
Rates draw from one random.Random seeded by the admin API or the config file: runs repeat exactly.

The throttling model: a budget of N requests per (app, tenant, api) in a fixed window of W seconds;
request N+1 in the window gets 429 with Retry-After = seconds to the window's end."""
import math
import random
import threading

ENDPOINTS = {"token", "exchange", "graph", "any"}
ACTIONS = {"status", "delay", "drop", "partial", "aadsts"}


class FaultError(Exception):
    pass


def check_rule(rule):
    if not isinstance(rule, dict):
        raise FaultError("a fault rule must be a JSON object")
    known = {"endpoint", "cmdlet", "identity", "action", "status", "retry_after", "retry_after_format",
             "delay_ms", "code", "rate", "count", "skip", "id"}
    for k in rule:
        if k not in known:
            raise FaultError("unknown fault field '%s'; known: %s" % (k, sorted(known)))
    r = dict(rule)
    r.setdefault("endpoint", "any")
    if r["endpoint"] not in ENDPOINTS:
        raise FaultError("fault endpoint '%s' is not one of %s" % (r["endpoint"], sorted(ENDPOINTS)))
    if r.get("action") not in ACTIONS:
        raise FaultError("fault action '%s' is not one of %s" % (r.get("action"), sorted(ACTIONS)))
    if r["action"] == "status" and r.get("status") not in (429, 500, 502, 503, 504):
        raise FaultError("a status fault needs status 429, 500, 502, 503 or 504")
    if r["action"] == "aadsts" and r["endpoint"] != "token":
        raise FaultError("an aadsts fault applies to endpoint 'token' only")
    if r["action"] == "aadsts" and r.get("code") not in (90055, 90033):
        raise FaultError("an aadsts fault needs code 90055 (tenant throttling) or 90033 (transient)")
    if r["action"] == "delay" and not isinstance(r.get("delay_ms"), int):
        raise FaultError("a delay fault needs delay_ms (integer)")
    for k, lo in (("count", 1), ("skip", 0), ("retry_after", 0)):
        if k in r and (not isinstance(r[k], int) or r[k] < lo):
            raise FaultError("fault %s must be an integer >= %d" % (k, lo))
    if "rate" in r and not (isinstance(r["rate"], (int, float)) and 0 <= r["rate"] <= 1):
        raise FaultError("fault rate must be a number between 0 and 1")
    if r.get("retry_after_format", "seconds") not in ("seconds", "http-date"):
        raise FaultError("retry_after_format must be 'seconds' or 'http-date'")
    return r


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.next_id = 1
        self.rng = random.Random(0)
        self.seed = 0
        self.throttle = None   # {"budget": N, "window_s": W, "apis": [...]}
        self.windows = {}      # (app, tenant, api) -> [window_start, count]

    def reset(self):
        with self.lock:
            self.rules = []
            self.rng = random.Random(self.seed)
            self.throttle = None
            self.windows = {}

    def set_seed(self, seed):
        with self.lock:
            self.seed = seed
            self.rng = random.Random(seed)

    def add(self, rule):
        r = check_rule(rule)
        with self.lock:
            r["id"] = self.next_id
            r["matched"] = 0
            r["applied"] = 0
            self.next_id += 1
            self.rules.append(r)
            return dict(r)

    def list(self):
        with self.lock:
            return [dict(r) for r in self.rules]

    def clear(self):
        with self.lock:
            self.rules = []

    def pick(self, endpoint, cmdlet=None, identities=()):
        """The first rule that fires for this request (and counts it), or None."""
        ids = {i.lower() for i in identities if i}
        with self.lock:
            for r in self.rules:
                if r["endpoint"] not in ("any", endpoint):
                    continue
                if r.get("cmdlet") and (cmdlet or "").lower() != r["cmdlet"].lower():
                    continue
                if r.get("identity") and r["identity"].lower() not in ids:
                    continue
                r["matched"] += 1
                if r["matched"] <= r.get("skip", 0):
                    continue
                if "rate" in r and self.rng.random() >= r["rate"]:
                    continue
                r["applied"] += 1
                fired = dict(r)
                if "count" in r and r["applied"] >= r["count"]:
                    self.rules.remove(r)
                return fired
        return None

    def set_throttle(self, cfg):
        if cfg is None:
            with self.lock:
                self.throttle = None
                self.windows = {}
            return
        if not isinstance(cfg, dict) or not isinstance(cfg.get("budget"), int) or cfg["budget"] < 1 \
                or not isinstance(cfg.get("window_s"), (int, float)) or cfg["window_s"] <= 0:
            raise FaultError("throttle needs {'budget': N >= 1, 'window_s': seconds > 0, "
                             "'apis': ['exchange','graph','token']}")
        apis = cfg.get("apis", ["exchange", "graph"])
        with self.lock:
            self.throttle = {"budget": cfg["budget"], "window_s": cfg["window_s"], "apis": list(apis)}
            self.windows = {}

    def window_keys(self):
        """[[app, tenant, api], ...] of the throttling windows that exist (tests prove which callers
        have a budget)."""
        with self.lock:
            return [list(k) for k in self.windows]

    def take(self, app, tenant, api, now, default_limit, default_window):
        """Counts one request against the budget. Returns (allowed, limit, remaining, reset_s)."""
        with self.lock:
            t = self.throttle
            if t is None or api not in t["apis"]:
                return True, default_limit, default_limit, default_window
            key = (app, tenant, api)
            w = self.windows.get(key)
            if w is None or now >= w[0] + t["window_s"]:
                w = [now, 0]
                self.windows[key] = w
            w[1] += 1
            reset = max(1, math.ceil(w[0] + t["window_s"] - now))
            remaining = max(0, t["budget"] - w[1])
            return w[1] <= t["budget"], t["budget"], remaining, reset
