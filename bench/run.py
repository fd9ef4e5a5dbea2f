#!/usr/bin/env python3
"""The benchmark: the same work on every host of a lab fleet — exec `uname -a`, put 1 MiB,
get 1 MiB, a TCP probe, an HTTP GET — run by sortie, by ansible-playbook (installed into a
virtualenv here; forks = N, no fact gathering, best of stock and pipelining + ControlPersist)
and by plain OpenSSH commands in parallel (the floor), for each N, several runs each. Reports
medians of wall time, runner CPU time and peak RSS (summed over the runner's process tree), and
the ratios sortie/Ansible and sortie/OpenSSH measured side by side in the same run.

    bench/run.py [--hosts 10,50,200] [--runs 3] [--no-ansible] [--ansible-max 50] [--out FILE]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / ".work"


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def tree_rss_kib(root_pid):
    """Resident memory of a process and all its descendants, in KiB (from /proc)."""
    children = {}
    rss = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/statm") as f:
                pages = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        pid = int(entry)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = pages * (os.sysconf("SC_PAGE_SIZE") // 1024)
    total, stack = 0, [root_pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def measure(cmd, env=None, cwd=None):
    """Runs cmd; returns (exit code, wall s, CPU s of the tree, peak tree RSS MiB, output)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss_kib(proc.pid))
            done.wait(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out_chunks = []
    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    done.set()
    t.join()
    reader.join(timeout=5)
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    text = b"".join(c for c in out_chunks if c).decode(errors="replace")
    return proc.returncode, wall, cpu, max(peak[0], usage.ru_maxrss) / 1024, text


def start_lab(n):
    lab = WORK / f"lab-{n}"
    # A range of its own, so a lab started by hand (127.0.10.x) does not collide.
    sh(str(ROOT / "target/release/sortie-lab"), "start", "--hosts", str(n), "--dir", str(lab),
       "--base", "127.0.40.1", "--port", "2422",
       stdout=subprocess.DEVNULL)
    return lab, json.loads((lab / "lab.json").read_text())


def stop_lab(lab):
    subprocess.run([str(ROOT / "target/release/sortie-lab"), "stop", "--dir", str(lab)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sortie_cmd(lab, n, blob, out):
    return [str(ROOT / "target/release/sortie"), "run", str(BENCH / "work.yml"),
            "-i", str(lab / "inventory.yml"), "-c", str(n), "--format", "plain",
            "-e", f"blob={blob}", "-e", f"out={out}"]


def openssh_script(lab, info, blob, out):
    """A shell script doing the work with ssh/scp, one multiplexed connection per host."""
    http_port = info["vars"]["http_port"]
    cfg = lab / "ssh_config"
    lines = ["#!/bin/bash", "set -u", f"cfg={cfg}", "fail=0"]
    for h in info["hosts"]:
        name, addr, port = h["name"], h["address"], h["port"]
        ctl = f"{WORK}/ctl-%C"
        opts = f"-F $cfg -o ControlMaster=auto -o ControlPath={ctl} -o ControlPersist=30"
        lines.append(
            "( "
            f"ssh {opts} {name} uname -a >/dev/null"
            f" && ssh {opts} {name} mkdir -p /tmp/openssh-bench/{name}"
            f" && scp -q {opts} {blob} {name}:/tmp/openssh-bench/{name}/blob.bin"
            f" && mkdir -p {out}/{name}"
            f" && scp -q {opts} {name}:/tmp/openssh-bench/{name}/blob.bin {out}/{name}/blob.bin"
            f" && timeout 5 bash -c '</dev/tcp/{addr}/{port}'"
            f" && curl -sf -o /dev/null http://{addr}:{http_port}/health"
            f" ; ssh {opts} -O exit {name} 2>/dev/null ) &"
        )
    lines += ["for j in $(jobs -p); do wait $j || fail=1; done", "exit $fail"]
    path = WORK / "openssh.sh"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)
    return [str(path)]


def ensure_ansible():
    venv = WORK / "venv"
    if not (venv / "bin/ansible-playbook").exists():
        sh(sys.executable, "-m", "venv", str(venv))
        sh(str(venv / "bin/pip"), "install", "-q", "ansible-core")
    return venv


def ansible_setup(lab, info, n, pipelining):
    inv = WORK / f"ansible-{n}.ini"
    key = info["identity_file"]
    kh = info["known_hosts"]
    rows = ["localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3", "[lab]"]
    for h in info["hosts"]:
        rows.append(f"{h['name']} ansible_host={h['address']} ansible_port={h['port']} "
                    f"ansible_user={info['user']} ansible_ssh_private_key_file={key} "
                    "ansible_python_interpreter=/usr/bin/python3")
    rows.append("[all:vars]")
    rows.append(f"http_port={info['vars']['http_port']}")
    inv.write_text("\n".join(rows) + "\n")
    cfg = WORK / f"ansible-{n}-{'pipe' if pipelining else 'stock'}.cfg"
    ssh_args = f"-o UserKnownHostsFile={kh}"
    if pipelining:
        ssh_args += f" -o ControlMaster=auto -o ControlPersist=60s -o ControlPath={WORK}/actl-%C"
    cfg.write_text("\n".join([
        "[defaults]", f"forks = {n}", "gathering = explicit", "host_key_checking = True",
        "interpreter_python = /usr/bin/python3", "stdout_callback = default", "",
        "[ssh_connection]", f"ssh_args = {ssh_args}", f"pipelining = {pipelining}", "",
    ]))
    return inv, cfg


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", default="10,50,200")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-ansible", action="store_true")
    ap.add_argument("--ansible-max", type=int, default=200, help="skip Ansible above this many hosts")
    ap.add_argument("--ansible-runs-200", type=int, default=1, help="Ansible runs at N >= 200 (each takes minutes)")
    ap.add_argument("--out", default=str(BENCH / "results.json"))
    args = ap.parse_args()

    sh("cargo", "build", "--release", "--quiet", "-p", "sortie", "-p", "sortie-lab", cwd=ROOT)
    WORK.mkdir(exist_ok=True)
    blob = WORK / "blob.bin"
    blob.write_bytes(os.urandom(1 << 20))
    venv = None if args.no_ansible else ensure_ansible()
    results = []
    for n in [int(x) for x in args.hosts.split(",")]:
        lab, info = start_lab(n)
        try:
            row = {"hosts": n}
            runners = [("sortie", lambda out: (sortie_cmd(lab, n, blob, out), None))]
            runners.append(("openssh", lambda out: (openssh_script(lab, info, blob, out), None)))
            if venv and n <= args.ansible_max:
                for pipe in (False, True):
                    label = "ansible-pipelining" if pipe else "ansible-stock"
                    inv, cfg = ansible_setup(lab, info, n, pipe)

                    def mk(out, inv=inv, cfg=cfg):
                        env = dict(os.environ, ANSIBLE_CONFIG=str(cfg))
                        cmd = [str(venv / "bin/ansible-playbook"), "-i", str(inv), str(BENCH / "ansible-work.yml"),
                               "-e", f"blob={blob}", "-e", f"out={out}"]
                        return cmd, env
                    runners.append((label, mk))
            for label, make in runners:
                walls, cpus, rsss = [], [], []
                runs = args.runs
                if label.startswith("ansible") and n >= 200:
                    runs = min(runs, args.ansible_runs_200)
                for r in range(runs):
                    out = WORK / f"out-{label}-{n}-{r}"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir(parents=True)
                    cmd, env = make(out)
                    code, wall, cpu, rss, text = measure(cmd, env=env)
                    if code != 0:
                        print(f"{label} N={n} run {r} failed (exit {code}):\n{text[-3000:]}", file=sys.stderr)
                        walls = []
                        break
                    got = sum(1 for _ in out.rglob("blob.bin"))
                    if got != n:
                        print(f"{label} N={n}: fetched {got} files, expected {n}", file=sys.stderr)
                    walls.append(wall)
                    cpus.append(cpu)
                    rsss.append(rss)
                    print(f"  {label:<20} N={n:<4} run {r}: {wall:7.2f} s wall, {cpu:7.2f} s CPU, {rss:7.1f} MiB", flush=True)
                row[label] = {"wall_s": median(walls), "cpu_s": median(cpus), "rss_mib": median(rsss), "runs": len(walls)}
            ans = [row[k]["wall_s"] for k in ("ansible-stock", "ansible-pipelining") if k in row and row[k]["runs"]]
            if ans:
                row["ansible-best_wall_s"] = min(ans)
                row["ratio_ansible_over_sortie"] = min(ans) / row["sortie"]["wall_s"]
            if row["openssh"]["runs"] and row["sortie"]["runs"]:
                row["ratio_sortie_over_openssh"] = row["sortie"]["wall_s"] / row["openssh"]["wall_s"]
            results.append(row)
        finally:
            stop_lab(lab)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


def print_table(results):
    print("\n| hosts | sortie wall | sortie CPU | sortie peak RSS | OpenSSH wall | Ansible wall (best) | Ansible peak RSS | Ansible ÷ sortie | sortie ÷ OpenSSH |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s, o = r["sortie"], r["openssh"]
        best = min((r[k] for k in ("ansible-stock", "ansible-pipelining") if k in r and r[k]["runs"]),
                   key=lambda x: x["wall_s"], default=None)
        ans = f"{best['wall_s']:.2f} s" if best else "not run"
        ans_rss = f"{best['rss_mib']:.0f} MiB" if best else "—"
        ratio_a = f"{r['ratio_ansible_over_sortie']:.1f}×" if "ratio_ansible_over_sortie" in r else "—"
        ratio_o = f"{r['ratio_sortie_over_openssh']:.2f}" if "ratio_sortie_over_openssh" in r else "—"
        print(f"| {r['hosts']} | {s['wall_s']:.2f} s | {s['cpu_s']:.2f} s | {s['rss_mib']:.1f} MiB | {o['wall_s']:.2f} s | {ans} | {ans_rss} | {ratio_a} | {ratio_o} |")


if __name__ == "__main__":
    main()
