#!/usr/bin/env python3
"""Where batchq's sending threads spend a request: perf samples by category.

    sender_budget.py PERF.DATA [--us MICROSECONDS]

PERF.DATA is a profile of one nginx worker from run_nginx_bench.sh
(BENCH_PERF_DIR=dir BENCH_PERF_ARGS="-F 2000 -g": perf.<mode>.<round>.data).
Samples of the event-loop thread (tid == pid) are left out; every other
thread of the worker is one of batchq's. Each sample is put in one category
by its leaf and call chain (kernel samples by the system call they are in);
the shares are printed, and with --us (the run's "batchq_threads" CPU µs per
request answered) the µs each share stands for.

On a paravirtualised guest, samples taken while interrupts are off are
delivered when they are switched back on (pvm_irq_enable, native_irq_enable):
the call chain, not the leaf, says whose time that is (the scheduler's after a
sleep in poll(); the receiver's wake-up inside sendto()).
"""
import collections
import re
import subprocess
import sys

CATEGORIES = [
    "kernel: sleeping in poll() until the answer, and the wake-up (scheduler)",
    "kernel: poll() without sleeping (libcurl's two zero-timeout checks, our poll's setup)",
    "kernel: sendto (loopback delivery to the receiver and its wake-up)",
    "kernel: recvfrom",
    "kernel: futex (the queue's worker_cv, parkers)",
    "kernel: preemption and other scheduling",
    "kernel: other",
    "libcurl (its own code)",
    "libc: malloc/free (mostly libcurl's per-transfer structures)",
    "libc: sscanf & co. (libcurl's status line)",
    "libc: system-call entry and exit",
    "libc: mutex",
    "libc: other (copies, string functions)",
    "clock reads (vdso, clock_gettime)",
    "libbatchq: the entry's JSON",
    "libbatchq: queue, sender pool, transfer",
    "other",
]


def category(frames):
    syms = " ".join(f[1] for f in frames)
    leaf_sym, leaf_dso = frames[0][1], frames[0][2]
    if "kernel" in leaf_dso:
        if "do_sys_poll" in syms or "__poll" in syms:
            return CATEGORIES[0] if "schedule" in syms else CATEGORIES[1]
        if "sendto" in syms or "tcp_sendmsg" in syms or "__send" in syms:
            return CATEGORIES[2]
        if "recvfrom" in syms or "tcp_recvmsg" in syms or "__libc_recv" in syms:
            return CATEGORIES[3]
        if "futex" in syms:
            return CATEGORIES[4]
        if "schedule" in syms or "exit_to_user_mode" in syms:
            return CATEGORIES[5]
        return CATEGORIES[6]
    if "libcurl" in leaf_dso:
        return CATEGORIES[7]
    if "libc.so" in leaf_dso:
        if re.search(r"malloc|free|calloc|realloc|unlink_chunk|consolidate|memalign", leaf_sym):
            return CATEGORIES[8]
        if re.search(r"scanf|_IO_|strto", leaf_sym):
            return CATEGORIES[9]
        if re.search(r"__poll|__send|__libc_recv|recv|send|syscall", leaf_sym):
            return CATEGORIES[10]
        if "clock_gettime" in leaf_sym:
            return CATEGORIES[13]
        if "pthread_mutex" in leaf_sym:
            return CATEGORIES[11]
        return CATEGORIES[12]
    if "vdso" in leaf_dso:
        return CATEGORIES[13]
    if "libbatchq" in leaf_dso:
        if re.search(r"streamer|put_number|json_escape|lua_to_json", leaf_sym):
            return CATEGORIES[14]
        return CATEGORIES[15]
    return CATEGORIES[16]


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        sys.exit(__doc__)
    data, us = args[0], None
    if "--us" in args:
        us = float(args[args.index("--us") + 1])
    text = subprocess.run(["perf", "script", "-i", data, "-F", "pid,tid,ip,sym,dso"],
                          capture_output=True, text=True, check=True).stdout
    counts = collections.Counter()
    for block in text.split("\n\n"):
        lines = [l for l in block.split("\n") if l.strip()]
        if len(lines) < 2:
            continue
        ids = re.match(r"\s*(\d+)/(\d+)", lines[0])
        if not ids or ids.group(1) == ids.group(2):
            continue  # the event-loop thread
        frames = []
        for l in lines[1:]:
            m = re.match(r"\s*([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$", l)
            if m:
                frames.append(m.groups())
        if frames:
            counts[category(frames)] += 1
    total = sum(counts.values())
    if not total:
        sys.exit("no samples of batchq's threads in " + data)
    for name, n in counts.most_common():
        share = n / total
        print("%5.1f%%%s  %s" % (100 * share, "  %5.1f µs" % (share * us) if us else "", name))
    print("%d samples of batchq's threads" % total)


if __name__ == "__main__":
    main()
