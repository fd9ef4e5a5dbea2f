#!/usr/bin/env bash
# The HTML report at scale: a report of HOSTS hosts × STEPS steps (default 1,000 × 10, one host
# in fifty failing, made up by this script: the page does not care where the numbers came
# from), rendered by `sortie report html`, then opened in headless Chromium (tests/web/page.mjs)
# RUNS times. Prints the page size and, per run, first contentful paint and load (ms).
# Usage: bench/html/run.sh [HOSTS] [STEPS] [RUNS]
set -euo pipefail
hosts="${1:-1000}"; steps="${2:-10}"; runs="${3:-3}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
python3 - "$hosts" "$steps" > "$work/report.json" <<'PY'
import json, sys
hosts, steps = int(sys.argv[1]), int(sys.argv[2])
loc = {"file": "fleet.yml", "line": 4, "column": 5, "end_line": 4, "end_column": 8}
def task(h, s):
    failed = h % 50 == 7 and s == steps - 1
    return {"id": f"s{s}", "name": f"check {s}", "kind": "ssh",
            "status": "failed" if failed else "ok", "ignored": False,
            "message": "rc: expected eq 0, found 1" if failed else None,
            "error": None, "checks": [], "output": {"rc": 1 if failed else 0},
            "attempts": 1, "duration_ms": 40 + (h * 7 + s * 13) % 200,
            "started_ms": (h // 50) * 900 + s * 260, "location": loc}
def host(h):
    ts = [task(h, s) for s in range(steps)]
    st = "failed" if any(t["status"] == "failed" for t in ts) else "ok"
    return {"name": f"web{h:04d}", "address": "127.0.0.1", "status": st,
            "duration_ms": 2600, "tasks": ts}
hs = [host(h) for h in range(hosts)]
failed = sum(h["status"] == "failed" for h in hs)
summary = lambda ok, failed: {"hosts": hosts, "ok": ok, "changed": 0, "failed": failed,
                              "skipped": 0, "unreachable": 0}
print(json.dumps({"version": 2, "run_id": "bench", "playbook": "fleet.yml", "inventory": [],
    "started_at": "2026-12-02T00:00:00Z", "duration_ms": (hosts // 50) * 900 + steps * 260,
    "interrupted": False, "exit_code": 1 if failed else 0, "dry_run": False, "warnings": [],
    "plays": [{"name": "fleet", "hosts": hs}],
    "tasks": summary(hosts * steps - failed, failed), "hosts": summary(hosts - failed, failed)}))
PY
sortie="${SORTIE:-$root/target/release/sortie}"
[ -x "$sortie" ] || sortie="$root/target/debug/sortie"
/usr/bin/time -f "render: %e s, %M KiB" "$sortie" report html "$work/report.json" -o "$work/page.html"
echo "page: $(stat -c %s "$work/page.html") bytes ($(gzip -c "$work/page.html" | wc -c) gzipped), $hosts hosts x $steps steps"
for i in $(seq "$runs"); do
  mkdir -p "$work/profile$i"
  node "$root/tests/web/page.mjs" "$work/page.html" "$work/profile$i" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("chromium: first contentful paint %.0f ms, load %d ms, requests %d" % (r["paint"].get("first-contentful-paint", -1), r["load_ms"], len(r["requests"])))'
done
