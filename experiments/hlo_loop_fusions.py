"""What each while loop of a compiled program launches per iteration, and whether its fusions
recompute earlier work: reads the optimised HLO text that ``bench_train_step.py --profile_dir
DIR`` writes (``DIR/hlo.txt``; ``profile_h200.sh`` keeps it as ``hlo_<semantics>.txt.gz``).

For every ``while`` body: its kernels (fusions and custom calls) in order, how many are matrix
products (``gemm_fusion*``, cuBLAS / cuDNN custom calls), and for every other fusion how many
product outputs of the same iteration it reads. A fusion that reads more than one is
recomputing earlier steps' elementwise work from their products' outputs: that is how the
eighth session found EnCodec's LSTM scan re-running every earlier cell of an unrolled
iteration inside each step's cell kernel (step ``k`` of 8 read ``k`` products), which the
scan step's optimisation barrier now prevents (experiments/README.md).

    python experiments/hlo_loop_fusions.py hlo_raw.txt.gz [--out loops.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from pathlib import Path

_COMP = re.compile(r"^(?:ENTRY\s+)?%([\w.\-]+)\s*\(.*\{\s*$")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.*)$")
_CALL = re.compile(r"\b(fusion|custom-call|while)\(([^)]*)\)")
_BODY = re.compile(r"\bbody=%([\w.\-]+)")
_OPERAND = re.compile(r"%([\w.\-]+)")


def computations(text: str) -> dict[str, list[tuple[str, str, list[str]]]]:
    """``name -> [(instruction, op, operands)]`` for the ops that launch work (fusion,
    custom-call, while), in program order."""
    comps, current = {}, None
    for line in text.splitlines():
        m = _COMP.match(line)
        if m:
            current = comps.setdefault(m.group(1), [])
            continue
        if current is None or line.startswith("}"):
            current = None if line.startswith("}") else current
            continue
        m = _INSTR.match(line)
        call = _CALL.search(m.group(2)) if m else None
        if call:
            body = _BODY.search(m.group(2))
            operands = _OPERAND.findall(call.group(2))
            current.append((m.group(1), call.group(1) + (f":{body.group(1)}" if body else ""),
                            operands))
    return comps


def is_product(name: str, op: str) -> bool:
    return name.startswith(("gemm_fusion", "cublas", "cudnn")) or (
        op == "custom-call" and re.search(r"gemm|conv|cublas|cudnn", name) is not None)


def loop_report(text: str) -> list[dict]:
    """One entry per while body: kernels per iteration, products, and the fusions that read
    more than one product output of the same iteration."""
    comps = computations(text)
    bodies = [op.split(":", 1)[1] for instrs in comps.values() for _, op, _ in instrs
              if op.startswith("while:")]
    report = []
    for body in dict.fromkeys(bodies):
        instrs = comps.get(body, [])
        products = {name for name, op, _ in instrs if is_product(name, op)}
        reads = {name: sum(o in products for o in operands) for name, op, operands in instrs
                 if name not in products and not op.startswith("while")}
        report.append({
            "body": body, "kernels": len(instrs), "products": len(products),
            "max_products_read": max(reads.values(), default=0),
            "recomputing_fusions": {n: k for n, k in reads.items() if k > 1},
        })
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("hlo", type=Path, help="hlo.txt or hlo_<semantics>.txt.gz")
    p.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    a = p.parse_args()
    raw = a.hlo.read_bytes()
    text = (gzip.decompress(raw) if a.hlo.suffix == ".gz" else raw).decode()
    report = loop_report(text)
    for r in report:
        flag = f"  RECOMPUTES: {len(r['recomputing_fusions'])} fusions read up to " \
               f"{r['max_products_read']} products" if r["recomputing_fusions"] else ""
        print(f"{r['body']}: {r['kernels']} kernels a iteration, {r['products']} products{flag}")
    if a.out:
        a.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
