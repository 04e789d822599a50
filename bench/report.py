#!/usr/bin/env python3
"""bench/report.py - turns the JSON files written by bench/run.sh into one
markdown table: every figure next to its peer measured in the same run, the
ratio, the target and whether it is met.

    report.py <results-dir> <machine-line>
"""
import json
import os
import statistics
import sys

d = sys.argv[1]
machine = sys.argv[2] if len(sys.argv) > 2 else ""
out = []


def load(name):
    p = os.path.join(d, name)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        txt = f.read().strip()
    if not txt:
        return None
    if name.endswith(".jsonl"):
        return [json.loads(l) for l in txt.splitlines() if l.strip()]
    return json.loads(txt)


def fmt(x, unit=""):
    if x is None:
        return "n/a"
    if x >= 1e6:
        return f"{x/1e6:.2f} M{unit}"
    if x >= 1e4:
        return f"{x/1e3:.0f} k{unit}"
    if x >= 100:
        return f"{x:.0f}{unit}"
    return f"{x:.1f}{unit}"


def mib(b):
    return f"{b/1048576:.1f} MiB"


def verdict(ok):
    return "**met**" if ok else "**missed**"


out.append("# batchq benchmarks\n")
out.append(f"Machine: {machine}\n")
out.append("Absolute numbers are noise on this shared machine; read the ratios "
           "(each figure and its peer come from the same run; case 1 runs the queues of a row one after "
           "another, within seconds of each other, and cases 3 and 4 alternate the peers round by round).\n")

# ---- case 1 -----------------------------------------------------------------
enq = load("enqueue.json")
if enq:
    med = {}
    cpu = {}
    for b in enq["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        # enqueue/<queue>/<producers>/<bytes>/<entries or 0>/iterations:..;
        # enqueue_sustained/...: 2,000,000 entries per round (by = "64s")
        parts = b["run_name"].split("/")
        q, p, by = parts[1], int(parts[2]), int(parts[3])
        if parts[0] == "enqueue_sustained":
            by = f"{by}s"
        med[(q, p, by)] = b["items_per_second"]
        if "cpu_ns_per_entry" in b:
            cpu[(q, p, by)] = b["cpu_ns_per_entry"]
    out.append("\n## 1. Enqueue throughput (P producers, 1 consumer draining)\n")
    out.append("Median of 5 repetitions x 5 iterations (200,000 entries per round; 40,000 of 4096 B); the rows "
               "\"2,000,000 per round\" (median of 3 x 3, spdlog not run) last about ten times longer, long enough "
               "that a consumer falling behind pays for its backlog inside the round. Every entry consumed inside the timed region. "
               "ns/entry = wall time / entries. CPU: CPU time of the whole process (all threads) in the timed "
               "region per entry, batchq vs moodycamel (moodycamel's consumer polls and yields; batchq's worker polls, yielding, for a bounded while after a busy wake-up, then sleeps); the CPU "
               "ratio is moodycamel's CPU / batchq's, so above 1 means batchq is cheaper.\n")
    out.append("| entry | producers | batchq | moodycamel | spdlog mpmc | batchq / moodycamel | batchq / spdlog | "
               "CPU ns/entry batchq / moodycamel | CPU ratio | target |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for by in (64, 512, 4096, "64s"):
        for p in (1, 2, 4):
            a, m, s = (med.get((q, p, by)) for q in ("batchq", "moodycamel", "spdlog"))
            if a is None or m is None:
                continue
            rm = a / m
            rs = a / s if s else None
            ca, cm = cpu.get(("batchq", p, by)), cpu.get(("moodycamel", p, by))
            ccol = f"{ca:.0f} / {cm:.0f}" if ca and cm else "n/a"
            crat = f"{cm / ca:.2f}x" if ca and cm else "n/a"
            tgt = ""
            if by == 64:
                tgt = f">= 1.0x moodycamel (issue 15) {verdict(rm >= 1.0)}"
            if by == "64s":
                tgt = f"(no target) >= 1.0x moodycamel {verdict(rm >= 1.0)}"
            if p == 4 and rs is not None:
                if by != 64:
                    tgt += f">= 1.0x moodycamel {verdict(rm >= 1.0)}"
                tgt += f"; >= 3x spdlog {verdict(rs >= 3.0)}"
            label = "64 B, 2,000,000 per round" if by == "64s" else f"{by} B"
            scol = f"{fmt(s, '/s')} ({1e9/s:.0f} ns)" if s else "not run"
            rscol = f"{rs:.2f}x" if rs is not None else ""
            out.append(f"| {label} | {p} | {fmt(a, '/s')} ({1e9/a:.0f} ns) | {fmt(m, '/s')} ({1e9/m:.0f} ns) | "
                       f"{scol} | {rm:.2f}x | {rscol} | {ccol} | {crat} | {tgt} |")

# ---- case 2 -----------------------------------------------------------------
ffi = load("ffi.json")
if ffi:
    out.append("\n## 2. LuaJIT: C ABI enqueue via FFI vs pure-Lua Kong batch_queue:add\n")
    out.append("Same LuaJIT process, same strings, batches of 1000; best of 5 after warm-up.\n")
    out.append("| entry | batchq module `q:enqueue` | raw FFI `batchq_enqueue` | pure-Lua Kong add | module / pure-Lua | target |")
    out.append("|---|---|---|---|---|---|")
    for r in ffi:
        ratio = r["module_ns"] / r["lua_ns"]
        out.append(f"| {r['bytes']} B | {r['module_ns']:.0f} ns | {r['raw_ns']:.0f} ns | {r['lua_ns']:.1f} ns | "
                   f"{ratio:.1f}x | <= 1.0x {verdict(ratio <= 1.0)} |")

lj = load("lua_json.json")
if lj:
    out.append("\n## 2b. JSON off the worker: string.buffer entry -> JSON on batchq's thread (issue 14)\n")
    out.append(f"One Kong-style entry ({lj['json_bytes']} B of JSON, {lj['encoded_bytes']} B encoded), same LuaJIT "
               "process, CPU time of the calling thread per entry, best of 5 after warm-up. The decoder is "
               "`batchq_lua_to_json` called via FFI (what the sending thread does per entry).\n")
    out.append("| figure | batchq | peer | peer / batchq | target |")
    out.append("|---|---|---|---|---|")
    r1 = lj["cjson_ns"] / lj["decoder_ns"]
    out.append(f"| entry -> JSON: decoder vs `cjson.encode` | {lj['decoder_ns']:.0f} ns | {lj['cjson_ns']:.0f} ns | "
               f"{r1:.1f}x | >= 3x {verdict(r1 >= 3)} |")
    r2 = lj["cjson_enqueue_ns"] / lj["enqueue_table_ns"]
    out.append(f"| Lua side: `q:enqueue_table(t)` vs `q:enqueue(cjson.encode(t))` | {lj['enqueue_table_ns']:.0f} ns | "
               f"{lj['cjson_enqueue_ns']:.0f} ns | {r2:.1f}x | (no target) |")
    out.append(f"| reference: `buf:encode(t)` alone | {lj['bufencode_ns']:.0f} ns | | | |")

# ---- case 3 -----------------------------------------------------------------
dl = load("delivery.json")
if dl:
    out.append("\n## 3. End-to-end delivery to a loopback receiver vs raw libcurl\n")
    out.append("512 B entries, one connection each, same receiver; 5 rounds after a warm-up round, the peers "
               "back to back in each round; entries/s and CPU: medians; ratios: median of the ratios within each "
               "round. Both clocks cover the same work: each entry is made inside the timed loop (as a program "
               "makes its log lines), then batchq enqueues it and the clock stops when every entry is delivered "
               "(answered 200), while raw libcurl builds each body from its batch's entries and posts it on one "
               "keep-alive connection. The last columns repeat the earlier method (every entry, and raw libcurl's "
               "every body, made before the clock starts: the transport alone) in the same rounds.\n")
    out.append("| batch size | entries | batchq http_log | raw libcurl (same bodies) | ratio | CPU ns/entry batchq: producer + worker + receiver | CPU ns/entry raw: poster + receiver | producer still enqueueing during | target | made before the clock: batchq / raw / ratio |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in dl:
        ratio = r.get("ratio", r["batchq_eps"] / r["curl_eps"])
        note = "" if r["complete"] else " (entries missing!)"
        share = r.get("enqueue_share")
        share_s = f"{100 * share:.0f}% of batchq's time" if share is not None else ""
        cpu = r.get("cpu_ns", {})
        bq = cpu.get("batchq")
        cu = cpu.get("curl")
        bq_s = f"{bq[0]:.0f} + {bq[1]:.0f} + {bq[2]:.0f} = {sum(bq):.0f}" if bq else ""
        cu_s = f"{cu[0] + cu[1]:.0f} + {cu[2]:.0f} = {sum(cu):.0f}" if cu else ""
        pre = ""
        if "curl_prebuilt_eps" in r:
            pre = (f"{fmt(r['batchq_prebuilt_eps'], '/s')} / {fmt(r['curl_prebuilt_eps'], '/s')} / "
                   f"{r['ratio_prebuilt']:.2f}x")
        out.append(f"| {r['batch']} | {r['entries']} | {fmt(r['batchq_eps'], '/s')} | {fmt(r['curl_eps'], '/s')} | "
                   f"{ratio:.2f}x | {bq_s} | {cu_s} | {share_s} | >= 0.9x {verdict(ratio >= 0.9)}{note} | {pre} |")

# ---- case 4 -----------------------------------------------------------------
ng = load("nginx.json")
if ng:
    modes = {m["mode"]: m for m in ng["modes"]}
    out.append("\n## 4. nginx (1 worker) + wrk against the same receiver\n")
    out.append(f"{ng.get('wrk', '')}. req/s and p99: median of the rounds; ratios: median of the ratios measured "
               "within each round. After `nginx -s quit`: not received = requests answered - entries the receiver "
               "got, split into entries reported dropped (printed in the error log with their reason) and "
               "entries lost silently.\n")
    out.append("| mode | req/s | p99 latency | answered | received | reported dropped | lost silently | vs entry-only | vs pure-Lua (same queue size) | CPU µs/request: worker, batchq threads, receiver, wrk | target |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, m in modes.items():
        logging = name.startswith("batchq") or name.startswith("purelua")
        r_base = m.get("vs_entry_only")
        vs_base = f"{r_base:.2f}x" if r_base is not None and name not in ("none", "entry_only") else ""
        r_lua = m.get("vs_purelua")
        vs_lua = f"{r_lua:.2f}x" if r_lua is not None else ""
        tgt = ""
        if name.startswith("batchq_q"):
            qs = name[len("batchq_q"):].split("_")[0]
            tgt = f">= 0.95x entry-only {verdict(r_base is not None and r_base >= 0.95)}"
            if qs == "1":
                tgt += f"; >= 3x pure-Lua {verdict(r_lua is not None and r_lua >= 3.0)}"
            if qs == "100":  # issue 14: JSON off the worker
                tgt += (f"; issue 14: >= 1.3x entry-only {verdict(r_base is not None and r_base >= 1.3)}, "
                        f">= 1.5x pure-Lua {verdict(r_lua is not None and r_lua >= 1.5)}")
            tgt += f"; 0 lost {verdict(m['lost'] == 0)}"
        cols = [str(m["answered"]), str(m["received"]), str(m["reported"]), str(m["silent"])] if logging else ["", "", "", ""]
        c = m.get("cpu_us")
        cpu = (f"{c['worker']:.1f}, {c['batchq_threads']:.1f}, {c['receiver']:.1f}, {c['wrk']:.1f}" if c else "")
        out.append(f"| {name} | {m['rps']:.0f} | {m['p99_ms']:.2f} ms | " + " | ".join(cols) +
                   f" | {vs_base} | {vs_lua} | {cpu} | {tgt} |")
    if "serialize_only" in modes and modes["serialize_only"].get("vs_entry_only"):
        # issue 14's ceiling: a logger that takes Kong's serialized table can
        # at best run as fast as building that table and nothing else.
        out.append(f"\nCeiling for issue 14's 1.3x: serialize_only (the table built, no JSON, nothing sent) runs at "
                   f"{modes['serialize_only']['vs_entry_only']:.2f}x entry-only in the same rounds; "
                   "CPU columns: the nginx worker's event-loop thread, batchq's threads inside the worker, the "
                   "receiver and wrk, per request answered during the wrk run (all four share the machine's CPUs).")

# ---- case 5 -----------------------------------------------------------------
mem = load("memory.jsonl")
if mem:
    out.append("\n## 5. Memory while the endpoint is down and entries keep coming\n")
    out.append("512 B entries at 200k/s for 4 s into an http_log bounded by max_bytes (drop_oldest), endpoint "
               "refusing connections. RSS sampled every 20 ms; growth = peak - RSS before the queue was made "
               "(the process baseline, libcurl etc., is reported separately).\n")
    out.append("| queue_size | drops taken by | max_bytes | bytes_held at end | RSS baseline | RSS peak | growth | growth / max_bytes | target growth <= 1.2 x max_bytes + 8 MiB |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for r in mem:
        growth = r["rss_peak"] - r["rss_baseline"]
        tgt = r["max_bytes"] * 1.2 + 8 * 1048576
        judged = f"{mib(tgt)} {verdict(growth <= tgt)}"
        if r["mode"] == "pull" and "buffered_at_peak" in r:
            # The pull buffer holds up to drop_buffer_bytes by design (what the
            # host has not polled yet): judged also with what it held at the peak.
            buf = r["buffered_at_peak"]
            tgt_buf = (r["max_bytes"] + buf) * 1.2 + 8 * 1048576
            judged += f"; with the {mib(buf)} in the pull buffer at the peak: {mib(tgt_buf)} {verdict(growth <= tgt_buf)}"
        out.append(f"| {r['queue_size']} | {'on_drop callback' if r['mode'] == 'push' else 'pull buffer, polled every 100 ms'} | "
                   f"{mib(r['max_bytes'])} | {mib(r['bytes_held'])} | {mib(r['rss_baseline'])} | {mib(r['rss_peak'])} | "
                   f"{mib(growth)} | {growth / r['max_bytes']:.2f}x | {judged} |")

# ---- case 6 -----------------------------------------------------------------
sp = load("spool.json")
if sp:
    e = sp["enqueue_ns"]
    r = sp["records_per_s"]
    out.append("\n## 6. The spool's cost\n")
    out.append(f"{sp['entry_bytes']} B entries, {sp['entries']} per round, median of {sp['rounds']} interleaved rounds.\n")
    out.append("http_log::enqueue, memory only vs write-ahead (the entry is in the spool's file, page cache, "
               "before enqueue returns; nothing is sent during the loop):\n")
    out.append("| mode | ns/enqueue | vs memory only |")
    out.append("|---|---|---|")
    for m, label in (("memory", "memory only"), ("wal_never", "write-ahead, fsync never"),
                     ("wal_interval", "write-ahead, fsync interval"), ("wal_always", "write-ahead, fsync always")):
        out.append(f"| {label} | {e[m]:.0f} | {e[m] / e['memory']:.2f}x |")
    out.append("\nAppending records in batches of 100, per fsync policy, against the same bytes written raw "
               "(one write() per record; fdatasync() per batch for `always`):\n")
    out.append("| policy | spool records/s | raw records/s | ratio |")
    out.append("|---|---|---|---|")
    out.append(f"| always (fsync per batch) | {fmt(r['spool_always'])} | {fmt(r['raw_fsync'])} (write + fdatasync) | "
               f"{r['spool_always'] / r['raw_fsync']:.2f}x |")
    out.append(f"| interval (100 ms) | {fmt(r['spool_interval'])} | {fmt(r['raw'])} (write only) | "
               f"{r['spool_interval'] / r['raw']:.2f}x |")
    out.append(f"| never | {fmt(r['spool_never'])} | {fmt(r['raw'])} (write only) | {r['spool_never'] / r['raw']:.2f}x |")

text = "\n".join(out) + "\n"
sys.stdout.write(text)
