"""Command line: python3 -m o365emu --seed FILE [options]. See ../README.md."""
import argparse
import json
import os
import signal
import ssl
import sys
import threading

from . import admin, faults, journal, server, state


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(prog="o365emu", description="Office 365 emulator for certsync tests")
    p.add_argument("--seed", required=True, help="tenant seed JSON (see fixtures/tenant.json)")
    p.add_argument("--config", help="start-up faults/throttle/config JSON (see README)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="API port; 0 picks a free one")
    p.add_argument("--admin-port", type=int, default=0, help="admin API port; 0 picks a free one")
    p.add_argument("--tls-cert", help="PEM certificate (chain) for HTTPS")
    p.add_argument("--tls-key", help="PEM private key for HTTPS")
    p.add_argument("--plain-http", action="store_true", help="serve the API without TLS (debugging only)")
    p.add_argument("--authority", action="append", default=[],
                   help="extra base URL accepted as client-assertion aud prefix (repeatable)")
    p.add_argument("--ready-file", help="write {url, admin_url, pid} here once listening")
    a = p.parse_args(argv)

    if a.host not in ("127.0.0.1", "::1", "localhost"):
        p.error("--host must be a loopback address: the emulator is for tests only")
    if not a.plain_http and not (a.tls_cert and a.tls_key):
        p.error("HTTPS needs --tls-cert and --tls-key (or --plain-http for debugging)")
    tenant = state.Tenant()
    try:
        tenant.load(state.load_seed_file(a.seed))
    except (OSError, state.SeedError) as e:
        print("o365emu: error: seed %s: %s" % (a.seed, e), file=sys.stderr)
        return 2
    emu = server.Emulator(tenant, journal.Journal(), faults.Faults(), a.authority)
    if a.config:
        try:
            with open(a.config, encoding="utf-8") as f:
                cfg = json.load(f)
            for k in cfg:
                if k not in ("faults", "throttle", "fault_seed", "config"):
                    raise state.SeedError("unknown key '%s' (expected faults, throttle, fault_seed, config)" % k)
            if "fault_seed" in cfg:
                emu.faults.set_seed(int(cfg["fault_seed"]))
            emu.startup_faults = [faults.check_rule(r) for r in cfg.get("faults", [])]
            emu.startup_throttle = cfg.get("throttle")
            emu.startup_config = cfg.get("config", {})
            emu.reset()
        except (OSError, ValueError, state.SeedError, faults.FaultError) as e:
            print("o365emu: error: config %s: %s" % (a.config, e), file=sys.stderr)
            return 2
    ctx = None
    if not a.plain_http:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(a.tls_cert, a.tls_key)
        except (OSError, ssl.SSLError) as e:
            print("o365emu: error: --tls-cert/--tls-key: %s" % e, file=sys.stderr)
            return 2
    try:
        api = server.ApiServer((a.host, a.port), emu, ctx)
        adm = admin.AdminServer((a.host, a.admin_port), emu)
    except OSError as e:
        print("o365emu: error: cannot listen on %s: %s" % (a.host, e), file=sys.stderr)
        return 2
    port = api.server_address[1]
    scheme = "http" if a.plain_http else "https"
    url = "%s://127.0.0.1:%d" % (scheme, port)
    emu.authorities = [url, "%s://localhost:%d" % (scheme, port)] + list(a.authority)
    admin_url = "http://127.0.0.1:%d" % adm.server_address[1]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (api, adm)]
    for t in threads:
        t.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if a.ready_file:
        write_atomic(a.ready_file, json.dumps({"url": url, "admin_url": admin_url, "pid": os.getpid()}) + "\n")
    print("o365emu ready url=%s admin_url=%s pid=%d" % (url, admin_url, os.getpid()), flush=True)
    stop.wait()
    api.shutdown()
    adm.shutdown()
    api.server_close()
    adm.server_close()
    server.log("info", "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
