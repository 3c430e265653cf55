#!/usr/bin/env python3
"""The metric names the alert rules and the Grafana dashboard use, and checks that they exist.

    metric-names.py names FILE...                     print every metric name FILE(s) use, one a line
    metric-names.py check-dashboard DASHBOARD SRC_DIR...
        the dashboard is valid JSON of the expected shape (unique panel ids, every panel has PromQL targets),
        and every metric name it or the alert file next to it uses is registered somewhere in the C sources
        under SRC_DIR(s) (a string literal), or is Prometheus' own `up`
    metric-names.py check-scrape FILES... -- SCRAPE...
        every metric name FILES use is a sample in the union of the /metrics scrapes SCRAPE (text format)

FILE is a Prometheus rule file (.yaml: every `expr`) or a Grafana dashboard (.json: every target `expr`
and every templating `label_values(metric, ...)`). Names come from the PromQL itself, so the checks cannot
drift from the files. Exit 0 when all is well, 1 with one line per problem, 2 on bad usage.
"""
import json
import pathlib
import re
import sys

# Made by Prometheus for every target, never exposed by a service.
PROMETHEUS_OWN = {"up"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan"}
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def promql_metric_names(expr):
    """Metric names in one PromQL expression: identifiers that are not functions, keywords, label names
    (inside {...} or a by/without/on/ignoring/group_* list), durations or Grafana variables."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\$\{[^}]*\}|\$[A-Za-z_]\w*", "1", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in IDENT.finditer(s):
        word = m.group(0)
        before = s[m.start() - 1] if m.start() > 0 else " "
        if before.isdigit() or before == ".":
            continue  # part of a number or duration such as 5m, 0.95, 1e3
        if word.lower() in KEYWORDS or re.match(r"\s*\(", s[m.end():]):
            continue
        names.add(word)
    return names


def exprs_of(path):
    """(where, expression) pairs of a rule file or a dashboard."""
    text = pathlib.Path(path).read_text(encoding="utf-8")
    out = []
    if path.endswith(".json"):
        dash = json.loads(text)
        panels = list(dash.get("panels", []))
        for p in list(panels):
            panels.extend(p.get("panels", []))
        for p in panels:
            for t in p.get("targets", []):
                out.append((f"{path}: panel {p.get('title')!r} target {t.get('refId')}", t["expr"]))
        for v in dash.get("templating", {}).get("list", []):
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            m = re.match(r"\s*label_values\(\s*([^,)]+)", q)
            if v.get("type") == "query" and m:
                out.append((f"{path}: variable {v.get('name')}", m.group(1)))
    else:
        # A rule file: every `expr:` block scalar or one-line value (the YAML parser is not in the stdlib).
        lines = text.splitlines()
        i = 0
        while i < len(lines):
            m = re.match(r"^(\s*)expr:\s*(.*)$", lines[i])
            if not m:
                i += 1
                continue
            indent, rest = len(m.group(1)), m.group(2)
            where = f"{path}:{i + 1}"
            if rest.strip() in ("|", "|-", ">", ">-"):
                body = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                    body.append(lines[i])
                    i += 1
                out.append((where, "\n".join(body)))
            else:
                out.append((where, rest.strip().strip("'\"")))
                i += 1
    if not out:
        raise SystemExit(f"metric-names: {path}: no PromQL expression found (not a rule file or dashboard?)")
    return out


def names_of(paths):
    names = {}
    for p in paths:
        for where, e in exprs_of(p):
            for n in promql_metric_names(e):
                names.setdefault(n, where)
    return names


def registered_in_sources(dirs):
    """Every string literal in the C sources that looks like a metric name, with the histogram series."""
    found = set()
    for d in dirs:
        for f in pathlib.Path(d).rglob("*.[ch]"):
            for lit in re.findall(r'"((?:certsync|process)_[a-z0-9_]+)"', f.read_text(encoding="utf-8", errors="replace")):
                found.update({lit, lit + "_bucket", lit + "_sum", lit + "_count"})
    return found


def scraped(paths):
    found = set()
    for p in paths:
        for line in pathlib.Path(p).read_text(encoding="utf-8").splitlines():
            m = IDENT.match(line)
            if m and not line.startswith("#"):
                found.add(m.group(0))
    return found


def check_dashboard(dash, src_dirs):
    problems = []
    d = json.loads(pathlib.Path(dash).read_text(encoding="utf-8"))
    ids = [p.get("id") for p in d.get("panels", [])]
    if len(ids) != len(set(ids)):
        problems.append(f"{dash}: panel ids are not unique")
    for p in d.get("panels", []):
        if p.get("type") != "row" and not p.get("targets"):
            problems.append(f"{dash}: panel {p.get('title')!r} has no PromQL target")
    if not d.get("uid") or not d.get("title"):
        problems.append(f"{dash}: uid and title are required")
    alerts = str(pathlib.Path(dash).with_name("alerts.yaml"))
    known = registered_in_sources(src_dirs) | PROMETHEUS_OWN
    for n, where in sorted(names_of([dash, alerts]).items()):
        if n not in known:
            problems.append(f"{where}: metric {n} is registered by no service (not a string literal in the sources)")
    return problems


def main(argv):
    if len(argv) >= 2 and argv[0] == "names":
        for n in sorted(names_of(argv[1:])):
            print(n)
        return 0
    if len(argv) >= 3 and argv[0] == "check-dashboard":
        problems = check_dashboard(argv[1], argv[2:])
    elif argv and argv[0] == "check-scrape" and "--" in argv:
        k = argv.index("--")
        files, scrapes = argv[1:k], argv[k + 1:]
        if not files or not scrapes:
            print(__doc__, file=sys.stderr)
            return 2
        have = scraped(scrapes)
        problems = [f"{where}: metric {n} is in no /metrics scrape ({', '.join(scrapes)})"
                    for n, where in sorted(names_of(files).items()) if n not in have and n not in PROMETHEUS_OWN]
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for p in problems:
        print("FAIL: " + p)
    if problems:
        return 1
    print("metric-names: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
