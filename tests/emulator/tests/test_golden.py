"""Golden request/response pairs (fixtures/golden/*.json). Each fixture is a request and the response
its source shows: a Microsoft documentation example ("observed": false) or the contract's [observed]
note ("observed": true). The responses are the sources' own examples, never recordings of the
emulator, so the test proves the emulator answers like the source:

- status equal; each listed header present (Content-Type compared by media type, "re:" values by regex);
- body of the same shape: the same keys at every level (plus "extra_keys" the fixture names with a
  reason, or any extra with "subset"), the same JSON types (null in either matches any scalar), every
  element of a list shaped like the source's first element;
- "exact": paths ("/"-separated, list index as a number) whose values equal the source's;
- "regex": paths whose values match a pattern ({crid} etc. filled in).

Placeholders in requests: {token_url} {client_id} {client_secret} {tenant} {graph_base} {invoke_url}
{exo_batch_url} {graph_token} {exo_token} {anchor} {crid}."""
import json
import os
import re

import pytest

from conftest import ANCHOR, EXO_SCOPE, GRAPH_SCOPE

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "golden")
CRID = "0f0e0d0c-0b0a-4900-8800-000000000001"
NAMES = sorted(f[:-5] for f in os.listdir(GOLDEN) if f.endswith(".json"))


def fill(v, ph):
    if isinstance(v, dict):
        return {fill(k, ph): fill(x, ph) for k, x in v.items()}
    if isinstance(v, list):
        return [fill(x, ph) for x in v]
    if isinstance(v, str):
        for k, x in ph.items():
            v = v.replace("{%s}" % k, x)
    return v


def jtype(v):
    return "null" if v is None else "bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) \
        else type(v).__name__


def shape(got, want, path, extra, subset, errors):
    if want is None or got is None:
        if isinstance(want, (dict, list)) or isinstance(got, (dict, list)):
            if want is not None or got is not None:
                errors.append("%s: %s vs source %s" % (path or "$", jtype(got), jtype(want)))
        return
    if jtype(got) != jtype(want):
        errors.append("%s: type %s, source has %s" % (path or "$", jtype(got), jtype(want)))
        return
    if isinstance(want, dict):
        allowed = {k for k in extra if k.rsplit("/", 1)[0] == path or ("/" not in k and not path)}
        allowed = {k.rsplit("/", 1)[-1] for k in allowed}
        missing = set(want) - set(got)
        more = set(got) - set(want) - allowed
        if missing:
            errors.append("%s: keys missing: %s" % (path or "$", sorted(missing)))
        if more and not subset:
            errors.append("%s: keys the source does not have: %s" % (path or "$", sorted(more)))
        for k in want:
            if k in got:
                shape(got[k], want[k], (path + "/" if path else "") + k, extra, subset, errors)
    elif isinstance(want, list):
        if want:
            for i, g in enumerate(got):
                shape(g, want[0], (path + "/" if path else "") + str(i), extra, subset, errors)
        elif got:
            errors.append("%s: source list is empty, got %d items" % (path, len(got)))


def at(doc, path):
    for p in path.split("/"):
        doc = doc[int(p)] if isinstance(doc, list) else doc[p]
    return doc


def at_source(doc, path):
    """The source's value at path; list indexes beyond the source's examples use its first element."""
    for p in path.split("/"):
        if isinstance(doc, list):
            doc = doc[min(int(p), len(doc) - 1)]
        else:
            doc = doc[p]
    return doc


@pytest.mark.parametrize("name", NAMES)
def test_golden(emu, name):
    with open(os.path.join(GOLDEN, name + ".json")) as f:
        fx = json.load(f)
    assert fx["source"] and isinstance(fx["observed"], bool)
    setup = fx.get("setup", {})
    if "config" in setup:
        assert emu.admin("PUT", "/config", setup["config"])[0] == 200
    if "app_roles" in setup:
        doc = json.load(open(os.path.join(os.path.dirname(emu.env["O365_CLIENT_CERT_FILE"]), "seed.json")))
        next(a for a in doc["apps"] if a["client_id"] == emu.cid)["roles"] = setup["app_roles"]
        assert emu.admin("POST", "/seed", doc)[0] == 200
    ph = {"token_url": emu.token_url, "client_id": emu.cid, "client_secret": emu.secret, "tenant": emu.tid,
          "graph_base": emu.url, "invoke_url": emu.invoke_url, "exo_batch_url": emu.exo_batch_url,
          "anchor": ANCHOR, "crid": CRID}
    req = fx["request"]
    headers = fill(req.get("headers", {}), ph)
    for k, v in list(headers.items()):  # tokens only when the request uses them (setup may change roles)
        if "{graph_token}" in v:
            headers[k] = v.replace("{graph_token}", emu.secret_token(GRAPH_SCOPE))
        if "{exo_token}" in v:
            headers[k] = v.replace("{exo_token}", emu.secret_token(EXO_SCOPE))
    kw = {}
    if "form" in req:
        kw["form"] = fill(req["form"], ph)
        headers.pop("Content-Type", None)  # curl --data-urlencode sets it
    elif "json" in req:
        kw["data"] = json.dumps(fill(req["json"], ph))
    r = emu.curl(req["method"], fill(req["url"], ph), headers=headers, **kw)

    want = fx["response"]
    assert r.status == want["status"], (r.status, r.raw)
    for h, v in want.get("headers", {}).items():
        got = r.header(h)
        assert got is not None, "header %s missing" % h
        if v.startswith("re:"):
            assert re.search(v[3:], got), (h, got)
        elif h.lower() == "content-type":
            assert got.split(";")[0].strip().lower() == v.split(";")[0].strip().lower(), (h, got)
        else:
            assert got == v, (h, got)
    body = r.json() if r.raw else None
    cmp_ = fx.get("compare", {})
    errors = []
    shape(body, want["body"], "", cmp_.get("extra_keys", {}), cmp_.get("subset", False), errors)
    assert not errors, errors
    for path in cmp_.get("exact", []):
        assert at(body, path) == at_source(want["body"], path), path
    for path, rx in cmp_.get("regex", {}).items():
        v = at(body, path)
        assert isinstance(v, str) and re.search(fill(rx, ph), v), (path, v)
