"""Fault injection (429 + Retry-After, 503, slow, dropped connections, per recipient, per endpoint, at
a seeded rate), the throttling model, the journal and the admin API."""
import email.utils
import json
import os
import socket
import subprocess
import time

ALICE = "alice@contoso.onmicrosoft.com"
BOB = "bob@contoso.onmicrosoft.com"
HERE = os.path.dirname(os.path.abspath(__file__))


def test_429_per_recipient_with_retry_after(emu):
    emu.admin("POST", "/faults", {"endpoint": "exchange", "identity": "5eed0001-0000-4000-8000-000000000001",
                                  "action": "status", "status": 429, "retry_after": 12})
    r = emu.invoke("Get-Mailbox", {"Identity": ALICE})  # named by UPN, matched through its object id
    assert r.status == 429 and r.header("retry-after") == "12"
    assert r.json()["error"]["code"] == "TooManyRequests"
    assert emu.invoke("Get-Mailbox", {"Identity": BOB}).status == 200


def test_retry_after_as_http_date_follows_date_header(emu):
    emu.admin("PUT", "/clock", {"offset_s": -7200})  # the emulator's clock is 2 h behind
    emu.admin("POST", "/faults", {"endpoint": "exchange", "action": "status", "status": 429, "retry_after": 30,
                                  "retry_after_format": "http-date"})
    before = emu.admin("GET", "/clock")[1]["now"]
    r = emu.invoke("Get-Mailbox", {"Identity": ALICE})
    assert r.status == 429
    ra = email.utils.parsedate_to_datetime(r.header("retry-after"))
    date = email.utils.parsedate_to_datetime(r.header("date"))
    # One clock reading per response: Date + 30 s is exactly the Retry-After date ...
    assert (ra - date).total_seconds() == 30
    assert abs(date.timestamp() - (time.time() - 7200)) < 5
    # ... and it is rounded up, so a client that waits for the date never retries early.
    assert ra.timestamp() >= before + 30


def test_503_per_endpoint_and_count(emu):
    emu.admin("POST", "/faults", {"endpoint": "graph", "action": "status", "status": 503, "count": 2})
    assert emu.graph("/users?$select=id").status == 503
    assert emu.graph("/users?$select=id").status == 503
    assert emu.graph("/users?$select=id").status == 200
    assert emu.invoke("Get-Mailbox", {"Identity": ALICE}).status == 200


def test_rate_is_seeded_and_repeatable(emu):
    def pattern():
        emu.admin("POST", "/reset")
        emu.admin("PUT", "/faults/seed", {"seed": 42})
        emu.admin("POST", "/faults", {"endpoint": "exchange", "action": "status", "status": 503, "rate": 0.5})
        return [emu.invoke("Get-Mailbox", {"Identity": ALICE}).status for _ in range(12)]
    a, b = pattern(), pattern()
    assert a == b and 503 in a and 200 in a


def test_slow_response(emu):
    emu.admin("POST", "/faults", {"endpoint": "exchange", "action": "delay", "delay_ms": 400, "count": 1})
    t0 = time.monotonic()
    assert emu.invoke("Get-Mailbox", {"Identity": ALICE}).status == 200
    assert time.monotonic() - t0 >= 0.4


def test_dropped_connection(emu):
    emu.admin("POST", "/faults", {"endpoint": "exchange", "action": "drop", "count": 1})
    r = emu.invoke("Get-Mailbox", {"Identity": ALICE})
    assert r.status == 0 and r.rc != 0  # curl: empty reply / connection reset
    emu.admin("POST", "/faults", {"endpoint": "exchange", "action": "partial", "count": 1})
    r = emu.invoke("Get-Mailbox", {"Identity": ALICE})
    assert r.rc != 0  # truncated body
    assert emu.invoke("Get-Mailbox", {"Identity": ALICE}).status == 200


def test_throttling_model(emu):
    emu.admin("PUT", "/throttle", {"budget": 3, "window_s": 20, "apis": ["exchange"]})
    rs = [emu.invoke("Get-Mailbox", {"Identity": ALICE}) for _ in range(4)]
    assert [r.status for r in rs] == [200, 200, 200, 429]
    assert [r.header("rate-limit-remaining") for r in rs[:3]] == ["2", "1", "0"]
    assert all(r.header("rate-limit-limit") == "3" for r in rs)
    assert 1 <= int(rs[3].header("retry-after")) <= 20
    emu.admin("PUT", "/clock", {"offset_s": 21})  # the window has passed
    assert emu.invoke("Get-Mailbox", {"Identity": ALICE}).status == 200


def test_journal_order_and_ids(emu):
    crids = ["00000000-0000-4000-8000-00000000000%d" % i for i in range(3)]
    for c in crids:
        emu.invoke("Get-Mailbox", {"Identity": ALICE}, crid=c)
    reqs = [e for e in emu.journal("request") if e["endpoint"] == "exchange"]
    assert [e["request_id"] for e in reqs] == crids
    assert [e["seq"] for e in reqs] == sorted(e["seq"] for e in reqs)
    assert all(e["cmdlet"] == "Get-Mailbox" and e["identity"] == ALICE and e["outcome"] == "ok" for e in reqs)


def test_admin_seed_state_and_bad_input(emu):
    st, rec = emu.admin("POST", "/state/recipients", {"UserPrincipalName": "new@contoso.onmicrosoft.com",
                                                      "RecipientTypeDetails": "MailUser"})
    assert st == 200 and emu.invoke("Get-MailUser", {"Identity": "new@contoso.onmicrosoft.com"}).status == 200
    st, err = emu.admin("POST", "/state/recipients", {"UserPrincipalName": "x@y", "RecipientTypeDetails": "Robot"})
    assert st == 400 and "RecipientTypeDetails" in err["error"]
    st, err = emu.admin("POST", "/faults", {"action": "explode"})
    assert st == 400 and "action" in err["error"]
    st, err = emu.admin("PUT", "/config", {"no_such": 1})
    assert st == 400 and "no_such" in err["error"]
    emu.admin("POST", "/reset")
    assert emu.invoke("Get-MailUser", {"Identity": "new@contoso.onmicrosoft.com"}).status == 404


def test_faults_from_config_file(tmp_path):
    cfg = tmp_path / "faults.json"
    cfg.write_text(json.dumps({"faults": [{"endpoint": "token", "action": "status", "status": 503}]}))
    d = tmp_path / "emu"
    sh = os.path.join(os.path.dirname(HERE), "emulator.sh")
    subprocess.run([sh, "start", str(d), "--config", str(cfg)], check=True, capture_output=True)
    try:
        env = dict(l.split("=", 1) for l in (d / "env").read_text().split())
        out = subprocess.run(["curl", "-sS", "--cacert", env["O365_EMULATOR_CA_FILE"], "-o", "/dev/null", "-w",
                              "%{http_code}", env["O365_TOKEN_URL"], "-d", "grant_type=client_credentials"],
                             capture_output=True, text=True)
        assert out.stdout == "503"
    finally:
        subprocess.run([sh, "stop", str(d)], check=True, capture_output=True)
    assert not (d / "pid").exists()


def test_tls_is_verified(emu, tmp_path):
    # A client that trusts another CA must fail the handshake (the publisher verifies the emulator).
    other = tmp_path / "other-ca"
    subprocess.run([os.path.join(HERE, "..", "..", "tools", "test_ca.sh"), "other", str(other)], check=True)
    p = subprocess.run(["curl", "-sS", "--cacert", str(other / "other-ca.pem"), emu.url + "/v1.0/users"],
                       capture_output=True)
    assert p.returncode == 60  # CURLE_PEER_FAILED_VERIFICATION


# --- connection limits --------------------------------------------------------------------------------

def wait_closed(sock, limit_s):
    """Seconds until the server closed `sock` (recv returns b'' or fails), or None after limit_s."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < limit_s:
        try:
            if sock.recv(1) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - t0
    return None


def test_slow_request_is_cut_at_the_deadline(emu):
    """Slowloris: a byte every 0.3 s kept a thread for ever (each read finished within the 60 s
    timeout). The whole request must now arrive within request_read_deadline_s."""
    assert emu.admin("PUT", "/config", {"request_read_deadline_s": 1})[0] == 200
    s = emu.tls_socket()
    s.sendall(b"GET /v1.0/users HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    closed = False
    for _ in range(20):  # up to 6 s of trickling
        try:
            s.sendall(b"X")
        except OSError:
            closed = True
            break
        s.settimeout(0.3)
        try:
            if s.recv(1) == b"":
                closed = True
                break
        except socket.timeout:
            pass
        except OSError:
            closed = True
            break
    elapsed = time.monotonic() - t0
    s.close()
    assert closed and elapsed < 4, elapsed
    # A TCP connection that never starts its TLS handshake is cut as well.
    raw = socket.create_connection(tuple(emu.url[len("https://"):].split(":")[0:1]) +
                                   (int(emu.url.rsplit(":", 1)[1]),), timeout=5)
    took = wait_closed(raw, 5)
    raw.close()
    assert took is not None and took < 4, took
    # Normal requests still work.
    assert emu.graph("/users?$select=id").status == 200


def test_concurrent_connections_are_bounded(emu):
    assert emu.admin("PUT", "/config", {"max_connections": 2})[0] == 200
    host, port = emu.url[len("https://"):].split(":")
    held = [socket.create_connection((host, int(port)), timeout=5) for _ in range(2)]
    try:
        time.sleep(0.2)  # let the server accept both (no event to await from outside the process)
        extra = socket.create_connection((host, int(port)), timeout=5)
        took = wait_closed(extra, 3)
        extra.close()
        assert took is not None and took < 2, took
    finally:
        for s in held:
            s.close()
    # Once the held connections are gone, requests are served again.
    for _ in range(50):
        r = emu.graph("/users?$select=id")
        if r.status == 200:
            break
        time.sleep(0.1)
    assert r.status == 200


# --- journal bounds ---------------------------------------------------------------------------------

def test_journal_truncates_huge_identity_and_path(emu):
    big = "x" * 200000
    emu.invoke("Get-Mailbox", {"Identity": big})
    emu.graph("/users/" + "y" * 50000)
    entries = [e for e in emu.journal("request") if e["endpoint"] in ("exchange", "graph")]
    assert len(entries) == 2
    for e in entries:
        for k, v in e.items():
            assert not isinstance(v, str) or len(v) < 400, (k, len(v))


def test_journal_is_a_bounded_deque():
    from o365emu.journal import Journal
    j = Journal(max_entries=5)
    for i in range(12):
        j.add(0, "request", n=i)
    got = j.read()
    assert [e["n"] for e in got["entries"]] == [7, 8, 9, 10, 11] and got["dropped"] == 7
    big = Journal(max_entries=100000)
    for i in range(100000):
        big.add(0, "request")
    t0 = time.monotonic()
    for i in range(20000):  # each add past the bound drops the oldest in O(1)
        big.add(0, "request")
    assert time.monotonic() - t0 < 1.5
    assert big.read(limit=1)["dropped"] == 20000
