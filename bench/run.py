#!/usr/bin/env python3
"""The benchmark: the same work on every host of a lab fleet — exec `uname -a`, put 1 MiB,
get 1 MiB, a TCP probe, an HTTP GET — run by sortie, by pyinfra (pinned in
bench/pyinfra-requirements.txt, in its own virtualenv; bench/pyinfra-deploy.py, --parallel N),
by ansible-playbook (installed into a virtualenv here; forks = N, no fact gathering, stock and
pipelining + ControlPersist) and by plain OpenSSH commands in parallel, one connection per host,
for each N, several runs each, every host in flight at once. Reports medians of wall time,
runner CPU time and peak RSS (summed over the runner's process tree), runner CPU per host-step,
cost per host, round trips per host (wall time / RTT, with --rtt) and the ratios between the
tools, all measured side by side in the same run.

    bench/run.py [--hosts 10,50,200] [--runs 3] [--rtt 50ms] [--bandwidth 100mbit]
                 [--tools sortie,pyinfra,openssh,ansible] [--ansible-modes stock,pipelining]
                 [--ansible-max 200] [--openssh-max 200] [--sortie-base BIN] [--out FILE]

--sortie-base runs another sortie binary (an older build, say) as the tool `sortie-base`, on the
same lab right after `sortie`, for before/after figures measured side by side.
"""

import argparse
import json
import os
import resource
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


PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def tree_rss_kib(root_pid):
    """Resident memory of a process and all its descendants, in KiB (from /proc). Walks down from
    the root through each thread's `children` list, so it costs the tree's size, not the
    machine's process count (the lab's thousand sshds are not the runner's)."""
    total, stack, seen = 0, [root_pid], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KIB
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


def threads_of(pid):
    """Threads of one process now (0 when it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


# Peak thread count of the root process of the last `measure` (the runner itself).
LAST_PEAK_THREADS = [0]


def measure(cmd, env=None, cwd=None):
    """Runs cmd; returns (exit code, wall s, CPU s of the tree, peak tree RSS MiB, output); the
    root process's peak thread count is left in LAST_PEAK_THREADS[0]."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = [0]
    LAST_PEAK_THREADS[0] = 0
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss_kib(proc.pid))
            LAST_PEAK_THREADS[0] = max(LAST_PEAK_THREADS[0], threads_of(proc.pid))
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


STEPS = 5  # host-steps per host: exec, put, get, tcp, http


def raise_limits():
    """Open files up to the hard limit: a thousand hosts in flight need a few thousand sockets
    and files in the runner (and the lab, which inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def parse_ms(text):
    """`50ms`, `0.05s`, `50` (milliseconds) → milliseconds."""
    t = text.strip()
    if t.endswith("ms"):
        return float(t[:-2])
    if t.endswith("s"):
        return float(t[:-1]) * 1000
    return float(t)


def start_lab(n, rtt=None, bandwidth=None):
    lab = WORK / f"lab-{n}"
    # A range of its own, so a lab started by hand (127.0.10.x) does not collide; a free port.
    cmd = [str(ROOT / "target/release/sortie-lab"), "start", "--hosts", str(n), "--dir", str(lab),
           "--base", "127.0.40.1", "--port", "0"]
    if rtt:
        cmd += ["--rtt", rtt]
    if bandwidth:
        cmd += ["--bandwidth", bandwidth]
    sh(*cmd, stdout=subprocess.DEVNULL)
    return lab, json.loads((lab / "lab.json").read_text())


def stop_lab(lab):
    subprocess.run([str(ROOT / "target/release/sortie-lab"), "stop", "--dir", str(lab)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sortie_cmd(lab, n, blob, out, binary=None):
    return [str(binary or ROOT / "target/release/sortie"), "run", str(BENCH / "work.yml"),
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


def ensure_pyinfra():
    """pyinfra in a virtualenv of its own, at the versions bench/pyinfra-requirements.txt pins."""
    venv = WORK / "pyinfra-venv"
    req = BENCH / "pyinfra-requirements.txt"
    stamp = venv / "requirements.installed"
    if not stamp.exists() or stamp.read_text() != req.read_text():
        if not (venv / "bin/python").exists():
            sh(sys.executable, "-m", "venv", str(venv))
        sh(str(venv / "bin/pip"), "install", "-q", "-r", str(req))
        stamp.write_text(req.read_text())
    return venv


def pyinfra_setup(info, n):
    """A pyinfra inventory (Python) from the lab's: every host in group `lab`, logging in with
    the lab's key as the lab's user, host keys checked against the lab's known_hosts."""
    rows = ["# Generated by bench/run.py from the lab's lab.json.", "lab = ["]
    for h in info["hosts"]:
        data = {
            "ssh_hostname": h["address"], "ssh_port": h["port"], "ssh_user": info["user"],
            "ssh_key": str(info["identity_file"]), "ssh_known_hosts_file": str(info["known_hosts"]),
            "ssh_strict_host_key_checking": "yes", "ssh_allow_agent": False,
            "ssh_look_for_keys": False, "http_port": info["vars"]["http_port"],
        }
        rows.append(f"    ({h['name']!r}, {data!r}),")
    rows.append("]")
    inv = WORK / f"pyinfra-inventory-{n}.py"
    inv.write_text("\n".join(rows) + "\n")
    return inv


def pyinfra_cmd(venv, inv, n, blob, out):
    return [str(venv / "bin/pyinfra"), "-y", "--parallel", str(n), str(inv),
            str(BENCH / "pyinfra-deploy.py"), "--data", f"blob={blob}", "--data", f"out={out}"]


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


def run_tool(label, make, n, runs):
    """Runs one tool `runs` times on the lab; medians, or runs = 0 when a run failed."""
    walls, cpus, rsss, threads = [], [], [], []
    for r in range(runs):
        out = WORK / f"out-{label}-{n}-{r}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        cmd, env = make(out)
        code, wall, cpu, rss, text = measure(cmd, env=env)
        got = sum(1 for _ in out.rglob("blob.bin"))
        shutil.rmtree(out, ignore_errors=True)
        failed = None
        if code != 0:
            print(f"{label} N={n} run {r} failed (exit {code}):\n{text[-3000:]}", file=sys.stderr)
            failed = f"exit {code}, fetched {got} of {n} files"
        elif got != n:
            print(f"{label} N={n}: fetched {got} files, expected {n}", file=sys.stderr)
            failed = f"fetched {got} of {n} files"
        walls.append(wall)
        cpus.append(cpu)
        rsss.append(rss)
        threads.append(LAST_PEAK_THREADS[0])
        print(f"  {label:<20} N={n:<4} run {r}: {wall:7.2f} s wall, {cpu:7.2f} s CPU, {rss:7.1f} MiB, "
              f"{threads[-1]} threads at most"
              + (f" (FAILED: {failed})" if failed else ""), flush=True)
        if failed:
            # The figures of a failed run are kept, marked, and no more runs are made.
            return {"wall_s": median(walls), "cpu_s": median(cpus), "rss_mib": median(rsss), "runs": len(walls),
                    "failed": failed, "output_tail": text[-2000:],
                    "all_wall_s": walls, "all_cpu_s": cpus, "all_rss_mib": rsss,
                    "all_peak_threads": threads}
    return {"wall_s": median(walls), "cpu_s": median(cpus), "rss_mib": median(rsss), "runs": len(walls),
            "all_wall_s": walls, "all_cpu_s": cpus, "all_rss_mib": rsss,
            "peak_threads": max(threads) if threads else 0, "all_peak_threads": threads}


def derive(row, n, rtt_ms):
    """Per host, per host-step and per round trip figures; ratios between the tools."""
    for label, m in list(row.items()):
        if not isinstance(m, dict) or not m.get("runs"):
            continue
        m["cpu_ms_per_host_step"] = m["cpu_s"] * 1000 / (n * STEPS)
        m["wall_ms_per_host"] = m["wall_s"] * 1000 / n
        m["rss_kib_per_host"] = m["rss_mib"] * 1024 / n
        if rtt_ms:
            m["round_trips_per_host"] = m["wall_s"] * 1000 / rtt_ms
    s = row.get("sortie")
    if not s or not s.get("runs"):
        return
    ans = [row[k] for k in ("ansible-stock", "ansible-pipelining") if k in row and row[k].get("runs")]
    if ans:
        best = min(ans, key=lambda m: m["wall_s"])
        row["ratio_ansible_over_sortie_wall"] = best["wall_s"] / s["wall_s"]
        row["ratio_ansible_over_sortie_cpu"] = min(a["cpu_s"] for a in ans) / s["cpu_s"]
    p = row.get("pyinfra")
    if p and p.get("runs"):
        row["ratio_pyinfra_over_sortie_wall"] = p["wall_s"] / s["wall_s"]
        row["ratio_pyinfra_over_sortie_cpu"] = p["cpu_s"] / s["cpu_s"]
        row["ratio_pyinfra_over_sortie_rss"] = p["rss_mib"] / s["rss_mib"]
    b = row.get("sortie-base")
    if b and b.get("runs"):
        for what, key in (("wall", "wall_s"), ("cpu", "cpu_s"), ("rss", "rss_mib")):
            row[f"ratio_base_over_sortie_{what}"] = b[key] / s[key]
    o = row.get("openssh")
    if o and o.get("runs"):
        row["ratio_sortie_over_openssh_wall"] = s["wall_s"] / o["wall_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", default="10,50,200")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rtt", help="start the lab with a WAN of this round trip (e.g. 50ms)")
    ap.add_argument("--bandwidth", help="with --rtt: cap each connection (e.g. 100mbit)")
    ap.add_argument("--tools", default="sortie,pyinfra,openssh,ansible")
    ap.add_argument("--no-ansible", action="store_true", help="the same as leaving ansible out of --tools")
    ap.add_argument("--ansible-modes", default="stock,pipelining")
    ap.add_argument("--ansible-max", type=int, default=200, help="skip Ansible above this many hosts")
    ap.add_argument("--ansible-runs-200", type=int, default=1, help="Ansible runs at N >= 200 (each takes minutes)")
    ap.add_argument("--openssh-max", type=int, default=200,
                    help="skip OpenSSH above this many hosts (five processes per host at once)")
    ap.add_argument("--no-build", action="store_true", help="use target/release as it is")
    ap.add_argument("--sortie-base", help="another sortie binary, run as the tool `sortie-base`")
    ap.add_argument("--base-first", action="store_true", help="run `sortie-base` before `sortie`")
    ap.add_argument("--out", default=str(BENCH / "results.json"))
    args = ap.parse_args()
    tools = set(args.tools.split(","))
    if args.no_ansible:
        tools.discard("ansible")
    rtt_ms = parse_ms(args.rtt) if args.rtt else None
    load_at_start = os.getloadavg()

    nofile = raise_limits()
    if not args.no_build:
        sh("cargo", "build", "--release", "--quiet", "-p", "sortie", "-p", "sortie-lab", cwd=ROOT)
    WORK.mkdir(exist_ok=True)
    blob = WORK / "blob.bin"
    blob.write_bytes(os.urandom(1 << 20))
    ansible = ensure_ansible() if "ansible" in tools else None
    pyinfra = ensure_pyinfra() if "pyinfra" in tools else None
    results = []
    for n in [int(x) for x in args.hosts.split(",")]:
        lab, info = start_lab(n, args.rtt, args.bandwidth)
        try:
            if rtt_ms and info["vars"].get("wan_rtt_ms") != rtt_ms:
                sys.exit(f"the lab says its round trip is {info['vars'].get('wan_rtt_ms')} ms, not {rtt_ms}")
            row = {"hosts": n, "rtt_ms": rtt_ms, "bandwidth": args.bandwidth, "steps_per_host": STEPS,
                   "loadavg_at_start": os.getloadavg()}
            runners = []
            if "sortie" in tools:
                runners.append(("sortie", lambda out: (sortie_cmd(lab, n, blob, out), None)))
            if args.sortie_base:
                base = Path(args.sortie_base).resolve()
                runners.insert(0 if args.base_first else len(runners),
                               ("sortie-base", lambda out: (sortie_cmd(lab, n, blob, out, base), None)))
            if pyinfra:
                inv = pyinfra_setup(info, n)
                runners.append(("pyinfra", lambda out, inv=inv: (pyinfra_cmd(pyinfra, inv, n, blob, out), None)))
            if "openssh" in tools and n <= args.openssh_max:
                runners.append(("openssh", lambda out: (openssh_script(lab, info, blob, out), None)))
            if ansible and n <= args.ansible_max:
                for mode in args.ansible_modes.split(","):
                    pipe = mode == "pipelining"
                    inv, cfg = ansible_setup(lab, info, n, pipe)

                    def mk(out, inv=inv, cfg=cfg):
                        env = dict(os.environ, ANSIBLE_CONFIG=str(cfg))
                        cmd = [str(ansible / "bin/ansible-playbook"), "-i", str(inv), str(BENCH / "ansible-work.yml"),
                               "-e", f"blob={blob}", "-e", f"out={out}"]
                        return cmd, env
                    runners.append((f"ansible-{mode}", mk))
            for label, make in runners:
                runs = args.runs
                if label.startswith("ansible") and n >= 200:
                    runs = min(runs, args.ansible_runs_200)
                row[label] = run_tool(label, make, n, runs)
            derive(row, n, rtt_ms)
            results.append(row)
        finally:
            stop_lab(lab)
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "nofile": nofile,
            "cpus": os.cpu_count(), "loadavg_at_start": load_at_start, "loadavg_at_end": os.getloadavg(), "argv": sys.argv[1:]}
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print_table(results)


def fmt(m, key, spec, unit=""):
    return f"{m[key]:{spec}}{unit}" if m and m.get("runs") and key in m else "—"


def print_table(results):
    print("\n| hosts | RTT | tool | wall | round trips per host | runner CPU | CPU per host-step | peak RSS | RSS per host |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        rtt = f"{r['rtt_ms']:g} ms" if r["rtt_ms"] else "loopback"
        for label, m in r.items():
            if not isinstance(m, dict):
                continue
            if not m.get("runs"):
                print(f"| {r['hosts']} | {rtt} | {label} | failed: {m.get('failed', '?')} | | | | | |")
                continue
            name = f"{label} (failed: {m['failed']})" if m.get("failed") else label
            print(f"| {r['hosts']} | {rtt} | {name} | {fmt(m, 'wall_s', '.2f', ' s')} | "
                  f"{fmt(m, 'round_trips_per_host', '.1f')} | {fmt(m, 'cpu_s', '.2f', ' s')} | "
                  f"{fmt(m, 'cpu_ms_per_host_step', '.2f', ' ms')} | {fmt(m, 'rss_mib', '.0f', ' MiB')} | "
                  f"{fmt(m, 'rss_kib_per_host', '.0f', ' KiB')} |")
        ratios = {k: v for k, v in r.items() if k.startswith("ratio_")}
        if ratios:
            print(f"|   | {rtt} | ratios N={r['hosts']} | " + ", ".join(f"{k[6:]} {v:.2f}" for k, v in ratios.items()) + " | | | | | |")


if __name__ == "__main__":
    main()
