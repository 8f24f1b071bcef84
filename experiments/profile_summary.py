"""Where a traced train step's device time goes: reads the newest ``*.trace.json.gz`` that
``bench_train_step.py --profile_dir DIR`` wrote, maps each GPU kernel's XLA op to the source
file and line that made it (the ``metadata`` of the compiled program, ``DIR/hlo.txt``), and
sums the kernels' time per source file and per source line, per step.

    python experiments/profile_summary.py DIR [--steps 2] [--out summary.json]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
from pathlib import Path

_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=.*?metadata=\{([^}]*)\}")
_FIELD = re.compile(r'(\w+)=(?:"([^"]*)"|(\S+))')
_TABLES = ("FileNames", "FunctionNames", "FileLocations", "StackFrames")


def _tables(hlo_text: str) -> dict[str, dict[str, str]]:
    """The stack-frame tables XLA prints after the module: ``id -> rest of the line``."""
    tables, current = {name: {} for name in _TABLES}, None
    for line in hlo_text.splitlines():
        if line.strip() in _TABLES:
            current = line.strip()
        elif current and re.match(r"^\d+ ", line):
            k, rest = line.split(" ", 1)
            tables[current][k] = rest.strip()
        elif current and line.strip():
            current = None
    return tables


def op_sources(hlo_text: str) -> dict[str, tuple[str, str]]:
    """HLO instruction name -> (the innermost project ``file:line`` of the stack that made
    it, the op's name)."""
    t = _tables(hlo_text)
    files = {k: v.strip('"') for k, v in t["FileNames"].items()}
    locs = {k: dict((a, b or c) for a, b, c in _FIELD.findall(v)) for k, v in t["FileLocations"].items()}
    frames = {k: dict((a, b or c) for a, b, c in _FIELD.findall(v)) for k, v in t["StackFrames"].items()}

    def where(frame_id: str) -> str:
        seen = set()
        while frame_id in frames and frame_id not in seen:  # innermost frame first
            seen.add(frame_id)
            loc = locs.get(frames[frame_id].get("file_location_id", ""), {})
            path = files.get(loc.get("file_name_id", ""), "?")
            if "jaxaudio/" in path and "/experiments/" not in path:
                return f"{path.split('jaxaudio/', 1)[-1]}:{loc.get('line', '?')}"
            frame_id = frames[frame_id].get("parent_frame_id", "")
        return "?:?"

    out, calls, members, comp = {}, {}, collections.defaultdict(list), None
    for line in hlo_text.splitlines():
        head = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if head and not line.startswith(" "):
            comp = head.group(1)
            continue
        m = _INSTR.match(line)
        name = m.group(1) if m else (re.match(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=", line) or [None, None])[1]
        if name is None:
            continue
        called = re.search(r"calls=%?([\w.\-]+)", line)
        if called:
            calls[name] = called.group(1)
        if m:
            fields = {k: v or w for k, v, w in _FIELD.findall(m.group(2))}
            out[name] = (where(fields.get("stack_frame_id", "")), fields.get("op_name", ""))
            if comp:
                members[comp].append(out[name])
    # a fusion (or call) whose own line has no project frame: the most common one inside it
    for name, comp_name in calls.items():
        if out.get(name, ("?:?",))[0] == "?:?":
            inner = [src for src in members.get(comp_name, []) if src[0] != "?:?"]
            if inner:
                out[name] = collections.Counter(inner).most_common(1)[0][0]
    return out


def newest_trace_events(folder) -> tuple[Path | None, list]:
    """``(file, events)`` of the newest ``*.trace.json.gz`` under ``folder`` (``(None, [])``
    when there is none)."""
    files = sorted(Path(folder).rglob("*.trace.json.gz"), key=lambda f: f.stat().st_mtime)
    if not files:
        return None, []
    with gzip.open(files[-1], "rt") as f:
        return files[-1], json.load(f).get("traceEvents", [])


def compile_phases(folder, top: int = 40) -> list:
    """The host's events of a traced compilation (``bench_train_step.py --compile_trace``),
    summed by name with digits folded: ``[name, seconds inclusive, count]``, longest first
    (nested phases count in their parents too)."""
    total, count = collections.Counter(), collections.Counter()
    for e in newest_trace_events(folder)[1]:
        if e.get("ph") == "X" and "dur" in e:
            name = re.sub(r"[0-9]+", "#", str(e.get("name", "?")))[:120]
            total[name] += float(e["dur"]) / 1e6
            count[name] += 1
    return [[k, round(v, 2), count[k]] for k, v in total.most_common(top)]


def _op_key(event: dict, sources: dict) -> str:
    """The HLO instruction a kernel event belongs to: its ``hlo_op`` argument, else its kernel
    name with the instruction's number restored (``fusion_12`` -> ``fusion.12``)."""
    args = event.get("args") or {}
    for key in (args.get("hlo_op", ""), event.get("name", ""),
                re.sub(r"_(\d+)$", r".\1", event.get("name", ""))):
        if key in sources:
            return key
    return args.get("hlo_op", "") or event.get("name", "")


def idle_time(events: list, gpu: set, sources: dict, top_n: int = 25) -> dict:
    """Where the GPU waits inside the traced steps: the time between the union of its kernels'
    (and copies') intervals, per step, bucketed by gap length, and summed per source line of the
    kernel that ends each wait (what the GPU was waiting to be given). Steps start at each
    occurrence of the trace's first kernel's op."""
    ev = sorted((e for e in events if e.get("ph") == "X" and e.get("pid") in gpu and "dur" in e),
                key=lambda e: float(e["ts"]))
    if not ev:
        return {}
    op = lambda e: _op_key(e, sources)
    first = op(ev[0])
    starts = [float(e["ts"]) for e in ev if op(e) == first]
    buckets = [3, 10, 30, 100, 1000, float("inf")]
    by_bucket = collections.Counter()
    by_next, by_pair = collections.Counter(), collections.Counter()
    idle_steps, spans = [0.0] * len(starts), [0.0] * len(starts)
    end, prev, step = float(ev[0]["ts"]), ev[0], 0
    for e in ev:
        ts = float(e["ts"])
        while step + 1 < len(starts) and ts >= starts[step + 1]:
            step += 1
            end = max(end, starts[step])  # the wait between steps is not counted
        gap = ts - end
        if gap > 0:
            idle_steps[step] += gap
            label = next(f"<{b} us" if b != float("inf") else ">1000 us" for b in buckets if gap < b)
            by_bucket[label] += gap
            nxt = sources.get(op(e), ("?:?", ""))[0]
            by_next[nxt] += gap
            by_pair[f"{prev.get('name', '?')[:60]} -> {e.get('name', '?')[:60]}"] += gap
        end = max(end, ts + float(e["dur"]))
        prev = e
        spans[step] = end - starts[step]
    n = len(starts)
    ms = lambda c: [[k, round(v / 1e3 / n, 3)] for k, v in c.most_common(top_n)]
    return {"steps": n, "step_span_ms": [round(s / 1e3, 3) for s in spans],
            "idle_ms": [round(s / 1e3, 3) for s in idle_steps],
            "idle_ms_per_step_by_gap": ms(by_bucket),
            "idle_ms_per_step_by_next_line": ms(by_next),
            "idle_ms_per_step_by_kernel_pair": ms(by_pair)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trace_dir")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    root = Path(a.trace_dir)
    trace, events = newest_trace_events(root)
    if trace is None:
        raise SystemExit(f"profile_summary: no *.trace.json.gz under {a.trace_dir}")
    sources = op_sources((root / "hlo.txt").read_text()) if (root / "hlo.txt").exists() else {}
    pids = {e["pid"]: e.get("args", {}).get("name", "") for e in events
            if e.get("ph") == "M" and e.get("name") == "process_name"}
    gpu = {pid for pid, name in pids.items() if "gpu" in name.lower()}
    by_file, by_line, by_kernel = collections.Counter(), collections.Counter(), collections.Counter()
    unmapped = collections.Counter()
    names = {}
    total = 0.0
    for e in events:
        if e.get("ph") != "X" or e.get("pid") not in gpu or "dur" not in e:
            continue
        line, op_name = sources.get(_op_key(e, sources), ("?:?", ""))
        ms = float(e["dur"]) / 1e3 / a.steps
        by_file[line.rsplit(":", 1)[0]] += ms
        by_line[line] += ms
        by_kernel[e.get("name", "?")] += ms
        if line == "?:?":
            unmapped[e.get("name", "?")] += ms
        names.setdefault(line, op_name[-160:])
        total += ms
    top = lambda c, n: [[k, round(v, 3)] for k, v in c.most_common(n)]
    summary = {
        "trace": str(trace), "gpu_processes": sorted(pids[p] for p in gpu),
        "kernel_ms_per_step": round(total, 2),
        "by_source_file_ms": top(by_file, 30),
        "by_source_line_ms": [[k, v, names.get(k, "")] for k, v in top(by_line, 40)],
        "by_kernel_ms": top(by_kernel, 30),
        # library kernels inside XLA's command buffers carry the buffer's name, not their op's
        "unmapped_kernels_ms": top(unmapped, 25),
        "idle": idle_time(events, gpu, sources),
        "sample_events": [e for e in events if e.get("ph") == "X" and e.get("pid") in gpu][:15],
    }
    text = json.dumps(summary, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
