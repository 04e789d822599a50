#!/usr/bin/env python3
"""Where the benchmark's threads run: samples /proc every few milliseconds.

    placement.py OUT.json INTERVAL_MS worker=PID receiver=PID wrk=PID ...

Each NAME=PID names a process (NAME=@COMM: the process whose command name
is COMM, looked up until it appears, e.g. wrk=@wrk); the nginx worker's process is split into
"worker" (its main thread, the event loop) and "batchq" (its other threads:
batchq's sender, worker and reporter). At every sample it reads each
thread's state and the CPU it is on or last ran on (/proc/PID/task/TID/stat,
fields 3 and 39). A thread in state R is running or waiting for a CPU.

Until SIGTERM or SIGINT; then it writes OUT.json:
  samples                  how many samples were taken
  runnable[G]              share of samples with a thread of group G in state R
  shared[G1+G2]            share of samples in which a thread of G1 and a
                           thread of G2 were both in state R on the same CPU
                           (one of them waiting for the other)
  crowded                  share of samples with more threads in state R than CPUs

Reading /proc costs the sampler some CPU (it is a bench diagnostic, off by
default: BENCH_PLACEMENT=1 in run_nginx_bench.sh).
"""
import itertools
import json
import os
import signal
import sys
import time


def threads(pid):
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def state_cpu(pid, tid):
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); field 39 (processor) is rest[36].
    return rest[0], int(rest[36])


def find_comm(comm):
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() == comm:
                        return int(d)
            except OSError:
                pass
    return None


def main():
    out, interval = sys.argv[1], float(sys.argv[2]) / 1000.0
    groups = {}
    for arg in sys.argv[3:]:
        name, pid = arg.split("=", 1)
        groups[name] = pid[1:] if pid.startswith("@") else int(pid)
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ncpu = os.cpu_count() or 1
    samples = 0
    runnable = {}
    shared = {}
    crowded = 0
    names = []
    while not stop:
        on_cpu = {}  # group -> set of CPUs with a runnable thread of the group
        total_r = 0
        for name, pid in list(groups.items()):
            if isinstance(pid, str):  # @COMM not found yet
                found = find_comm(pid)
                if found is None:
                    continue
                groups[name] = pid = found
            for tid in threads(pid):
                sc = state_cpu(pid, tid)
                if sc is None:
                    continue
                g = name
                if name == "worker" and tid != pid:
                    g = "batchq"
                if g not in names:
                    names.append(g)
                if sc[0] == "R":
                    on_cpu.setdefault(g, []).append(sc[1])
                    total_r += 1
        samples += 1
        if total_r > ncpu:
            crowded += 1
        for g, cpus in on_cpu.items():
            runnable[g] = runnable.get(g, 0) + 1
            if len(cpus) != len(set(cpus)):  # two threads of one group on one CPU
                shared[f"{g}+{g}"] = shared.get(f"{g}+{g}", 0) + 1
        for a, b in itertools.combinations(sorted(on_cpu), 2):
            if set(on_cpu[a]) & set(on_cpu[b]):
                shared[f"{a}+{b}"] = shared.get(f"{a}+{b}", 0) + 1
        time.sleep(interval)
    n = max(samples, 1)
    with open(out, "w") as f:
        json.dump({
            "samples": samples,
            "runnable": {g: round(runnable.get(g, 0) / n, 3) for g in names},
            "shared": {k: round(v / n, 3) for k, v in sorted(shared.items())},
            "crowded": round(crowded / n, 3),
        }, f)


if __name__ == "__main__":
    main()
