"""Helpers of bench/bench_publisher.sh (see its header): the seed, awaiting the publisher through the
emulator's journal, the curl config rebuilt from the journal, and timing curl --parallel.
Prints `key: value` lines for the shell script to pick up."""
import argparse
import base64
import datetime
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

ANCHOR = "UPN:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@"
GRAPH_SELECT = "id,userPrincipalName,mail,onPremisesImmutableId,onPremisesSecurityIdentifier"


def guid_b64(i):
    """onPremisesImmutableId of user i: base64 of the objectGUID bench_pub_events gives it."""
    return base64.b64encode(bytes(0xB0 + b for b in range(12)) + i.to_bytes(4, "big")).decode()


def cmd_seed(a):
    fx = json.load(open(a.fixture))
    recs = [{"UserPrincipalName": f"bench{i}@{fx['domain']}", "RecipientTypeDetails": "UserMailbox",
             "ExternalDirectoryObjectId": f"00000000-0000-4000-8000-{i:012d}",
             "onPremisesImmutableId": guid_b64(i), "IsDirSynced": False, "IsExchangeCloudManaged": False}
            for i in range(a.count)]
    json.dump({"tenant_id": fx["tenant_id"], "domain": fx["domain"], "recipients": recs}, open(a.out, "w"))


def http_json(url, method="GET"):
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=60) as r:
        return json.loads(r.read())


def journal(admin, since, kind=None):
    """Every journal entry after `since` (the admin API answers at most 10,000 per call)."""
    out = []
    while True:
        q = f"{admin}/journal?since={since}" + (f"&kind={kind}" if kind else "")
        page = http_json(q)["entries"]
        if not page:
            return out
        out += page
        since = page[-1]["seq"]


def ts(e):
    return datetime.datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def cpu_s(pid):
    """utime + stime of `pid` in seconds (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cmd_await(a):
    entries, seq, written = [], 0, set()
    deadline = time.time() + a.timeout
    cpu0 = None
    while len(written) < 2 * a.count:
        if time.time() > deadline:
            sys.exit(f"timeout: {len(written) // 2} of {a.count} recipients written after {a.timeout} s")
        try:
            os.kill(a.pid, 0)
        except OSError:
            sys.exit("the publisher exited before every recipient was written")
        new = journal(a.admin, seq)
        if new:
            seq = new[-1]["seq"]
            entries += new
            if cpu0 is None:
                cpu0 = (time.time(), cpu_s(a.emu_pid))
            written.update((e["recipient"], e["attribute"]) for e in new if e["kind"] == "change")
        time.sleep(0.25)
    cpu1 = (time.time(), cpu_s(a.emu_pid))
    reqs = [e for e in entries if e["kind"] == "request"]
    changes = [e for e in entries if e["kind"] == "change"]
    # from the first Graph/Exchange request: the token fetch happens at start-up, before the Kafka group join
    # and the state restore (curl's tokens are fetched outside its timed run too)
    api = [e for e in reqs if e["endpoint"] != "token"]
    first, last = ts(api[0] if api else reqs[0]), max(ts(e) for e in changes)
    per_api = {}
    for e in reqs:
        per_api[e["endpoint"]] = per_api.get(e["endpoint"], 0) + 1
    print(f"rate: {round(a.count / (last - first), 1)}")
    print(f"work_s: {round(last - first, 3)}")
    print(f"wall_s: {round(last - a.t0, 3)}")
    print(f"requests_per_recipient: {round(len(reqs) / a.count, 3)}")
    print(f"api_requests_per_recipient: "
          f"{round(max(per_api.get('exchange', 0), per_api.get('graph', 0)) / a.count, 3)}")
    print(f"requests_by_api: {json.dumps(per_api, sort_keys=True)}")
    print(f"status_429: {sum(1 for e in reqs if e['status'] == 429)}")
    print(f"emu_cpu_share: {round((cpu1[1] - cpu0[1]) / max(cpu1[0] - cpu0[0], 0.001), 2)}")
    json.dump(reqs, open(a.journal_out, "w"))


def quote(s):
    """A curl config file string: double quotes, backslash escapes."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def token(a, resource):
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": a.client_id,
                                   "client_secret": open(a.secret_file).read(), "scope": resource + "/.default"})
    out = subprocess.run(["curl", "-fsS", "--cacert", a.ca, "-d", form, a.token_url], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)["access_token"]


def cmd_curlcfg(a):
    """The publisher's requests (from the journal) as a curl config: Exchange bodies rebuilt the way
    pub_exchange_build_set_body builds them, Graph lookups the way pub_graph builds them."""
    reqs = json.load(open(a.journal))
    der = base64.b64encode(open(a.cert_der, "rb").read()).decode()
    p7 = base64.b64encode(open(a.cert_p7, "rb").read()).decode()
    exo, graph = token(a, "https://outlook.office365.com"), token(a, "https://graph.microsoft.com")
    n, graph_i = 0, 0
    with open(a.out, "w") as f:
        for e in reqs:
            sep = "next\n" if n else ""
            if e["endpoint"] == "exchange" and e["path"].endswith("/InvokeCommand"):
                params = {"Identity": e["identity"]}
                if (e["cmdlet"] or "").startswith("Set-"):
                    params.update({"UserCertificate@odata.type": "#Collection(Exchange.ByteArrayType)",
                                   "UserCertificate": [{"Data": der}],
                                   "UserSMimeCertificate@odata.type": "#Collection(Exchange.ByteArrayType)",
                                   "UserSMimeCertificate": [{"Data": p7}]})
                body = json.dumps({"CmdletInput": {"CmdletName": e["cmdlet"], "Parameters": params}},
                                  separators=(",", ":"))
                url = f"{a.base}/adminapi/beta/{a.tenant}/InvokeCommand"
                hdrs = [f"Authorization: Bearer {exo}", "Content-Type: application/json",
                        "Accept: application/json", f"X-CmdletName: {e['cmdlet']}", "X-ResponseFormat: json",
                        f"X-AnchorMailbox: {ANCHOR}{a.domain}"]
                f.write(f"{sep}url = {quote(url)}\nrequest = \"POST\"\ndata-binary = {quote(body)}\n")
            elif e["endpoint"] == "graph" and e["method"] == "GET":
                # the journal keeps the path, not the query: lookups go to the recipients in order
                filt = f"onPremisesImmutableId eq '{guid_b64(graph_i)}'"
                graph_i += 1
                url = (f"{a.base}/v1.0/users?%24filter={urllib.parse.quote(filt, safe='')}"
                       f"&%24select={urllib.parse.quote(GRAPH_SELECT, safe='')}&%24count=true")
                hdrs = [f"Authorization: Bearer {graph}", "Accept: application/json",
                        "ConsistencyLevel: eventual"]
                f.write(f"{sep}url = {quote(url)}\n")
            elif e["endpoint"] == "token":
                continue  # curl's two tokens are fetched above, outside the timed run
            else:
                sys.exit(f"cannot replay journal entry {e['seq']}: {e['endpoint']} {e['method']} {e['path']}")
            for h in hdrs + [f"client-request-id: {uuid.uuid4()}"]:
                f.write(f"header = {quote(h)}\n")
            f.write(f"cacert = {quote(a.ca)}\noutput = \"/dev/null\"\nsilent\n"
                    f"write-out = \"%{{http_code}}:%{{exitcode}}\\n\"\n")
            n += 1
    print(f"requests: {n}")


def cmd_timecurl(a):
    cpu0, t0 = cpu_s(a.emu_pid), time.time()
    p = subprocess.run(["curl", "-s", "--parallel", "--parallel-max", str(a.parallel_max), "-K", a.config],
                       capture_output=True, text=True)
    t1, cpu1 = time.time(), cpu_s(a.emu_pid)
    codes = {}
    for c in p.stdout.split():
        codes[c] = codes.get(c, 0) + 1
    print(f"answers: {json.dumps(codes, sort_keys=True)}")
    bad = {c: k for c, k in codes.items() if not c.startswith("2")}
    if bad:
        sys.exit(f"curl got non-2xx answers {bad} (curl exit {p.returncode}: {p.stderr[-500:]})")
    written = {(e["recipient"], e["attribute"]) for e in journal(a.admin, 0, "change")}
    if len(written) != 2 * a.count:
        sys.exit(f"curl's replay wrote {len(written)} attribute values, expected {2 * a.count}")
    print(f"rate: {round(a.count / (t1 - t0), 1)}")
    print(f"wall_s: {round(t1 - t0, 3)}")
    print(f"emu_cpu_share: {round((cpu1 - cpu0) / (t1 - t0), 2)}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--fixture", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("await")
    s.add_argument("--admin", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--t0", type=float, required=True)
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--emu-pid", type=int, required=True)
    s.add_argument("--timeout", type=int, required=True)
    s.add_argument("--journal-out", required=True)
    s = sub.add_parser("curlcfg")
    for k in ("journal", "cert-der", "cert-p7", "token-url", "client-id", "secret-file", "ca", "base", "tenant",
              "domain", "out"):
        s.add_argument("--" + k, required=True)
    s = sub.add_parser("timecurl")
    s.add_argument("--config", required=True)
    s.add_argument("--parallel-max", type=int, required=True)
    s.add_argument("--emu-pid", type=int, required=True)
    s.add_argument("--admin", required=True)
    s.add_argument("--count", type=int, required=True)
    a = ap.parse_args()
    {"seed": cmd_seed, "await": cmd_await, "curlcfg": cmd_curlcfg, "timecurl": cmd_timecurl}[a.cmd](a)


if __name__ == "__main__":
    main()
