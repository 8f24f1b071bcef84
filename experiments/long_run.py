"""Long runs of the issue-12 recipe, resumable across device calls, then the 50-pair evaluation.

Trains each variant (``NAME[:EPOCHS][:--flag=value...]``) of the issue's recipe (built-in
settings, MDCT codec, 1200 synthetic pairs of 4 s, 4 layers, masking agent, batch 32, GAN 0.1)
in its own process, side by side on one GPU, until ``--deadline`` seconds have passed; then
sends SIGTERM, so each saves ``interrupted_checkpoint/`` and exits. Run the same command again
(same ``--root``) and the unfinished variants resume (``--resume``), the finished ones are
skipped. ``eval`` measures each finished variant's best model with ``python -m
jaxaudio.evaluate`` on ``--num_pairs`` unseen synthetic pairs and on ``--recorded`` pairs,
generates blends of two pairs, writes ``evaluate --report`` pages of the first
``--report_pairs`` recorded pairs, and packs curves, metrics, audio and reports into
``OUT/long_run.tar``. A variant's flags override the recipe's (``--creative_agent=compositional``).

    python experiments/long_run.py train --root runs/long --deadline 560 \
        "new:200:--gan_weight=0.1" "orig:40:--gan_weight=0.1:--gan_variant=original:..."
    python experiments/long_run.py eval --root runs/long --out $OUT --recorded DIR/val new orig
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

RECIPE = ["--builtin", "--clip_seconds", "4", "--num_layers", "4", "--creative_agent", "masking",
          "--batch_size", "32", "--no_mlflow", "--log_samples", "0", "--save_every", "1000"]


def parse(spec):
    name, *rest = spec.split(":")
    epochs = int(rest.pop(0)) if rest and rest[0].isdigit() else 200
    flags = [x for f in rest for x in f.split("=", 1)]
    return name, epochs, flags


def epochs_done(ck: Path) -> int:
    m = ck / "metrics.jsonl"
    return sum(1 for _ in open(m)) if m.exists() else 0


def train(args):
    root = Path(args.root)
    ds = root / "ds"
    if not (ds / "train").exists():
        subprocess.run([sys.executable, "-m", "jaxaudio.data.synth", "--output_dir", str(ds),
                        "--num_pairs", "1200", "--duration", "4", "--seed", "0"], check=True)
    # Side by side on one GPU: each process's allocator is capped at its share, leaving room
    # for the others' compilation (three uncapped processes once ran one out of memory while
    # it loaded its program).
    share = f"{0.9 / max(1, len(args.variants)):.2f}"
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false", PYTHONUNBUFFERED="1")
    env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", share)
    procs = {}
    for spec in args.variants:
        name, epochs, flags = parse(spec)
        ck = root / f"ck_{name}"
        if (ck / "FINISHED").exists():
            print(name, "finished already", flush=True)
            continue
        cmd = [sys.executable, "-m", "jaxaudio.train", *RECIPE, "--dataset_folder", str(ds),
               "--epochs", str(epochs), "--checkpoint_dir", str(ck), *flags]
        if ck.exists() and any(ck.glob("interrupted_checkpoint/step_*")):
            cmd += ["--resume", str(ck)]
        log = open(root / f"{name}_train.log", "a")
        procs[name] = (ck, epochs, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
    t0 = time.time()
    while any(p.poll() is None for _, _, p in procs.values()) and time.time() - t0 < args.deadline:
        time.sleep(5)
    for _, _, p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for name, (ck, epochs, p) in procs.items():
        rc = p.wait()
        done = epochs_done(ck)
        if rc == 0 and done >= epochs:
            (ck / "FINISHED").write_text("ok\n")
        print(f"{name}: rc {rc}, {done}/{epochs} epochs, {time.time() - t0:.0f} s", flush=True)
    # The curves so far come back with every call (a cold machine loses runs/).
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, (ck, _, _) in procs.items():
        if (ck / "metrics.jsonl").exists():
            (out / f"{name}_metrics.jsonl").write_bytes((ck / "metrics.jsonl").read_bytes())


def evaluate(args):
    root, out = Path(args.root), Path(args.out)
    # Several evaluations share the GPU: without this each would take 75 % of its memory.
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    staging = root / "eval"
    staging.mkdir(parents=True, exist_ok=True)
    jobs = []
    for name in args.variants:
        ck = root / f"ck_{name}"
        for label, extra in (("synthetic", ["--num_pairs", str(args.num_pairs)]),
                             ("recorded", ["--val_folder", args.recorded, "--song_mode", "sum"])):
            js = staging / f"{name}_{label}.json"
            if label == "recorded" and args.report_pairs:
                extra += ["--report", str(staging / f"{name}_report"),
                          "--report_pairs", str(args.report_pairs)]
            jobs.append((name, label, subprocess.Popen(
                [sys.executable, "-m", "jaxaudio.evaluate", "--checkpoint", str(ck),
                 "--output_json", str(js), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True)))
        for pair in ("0000", "0003"):
            src = Path(args.recorded)
            subprocess.run([sys.executable, "-m", "jaxaudio.generate", "--checkpoint", str(ck),
                            "--input_audio", str(src / f"pair_{pair}_input.wav"),
                            "--target_audio", str(src / f"pair_{pair}_output.wav"),
                            "--output", str(staging / f"{name}_recorded_{pair}.wav"), "--overwrite"],
                           check=False)
        (staging / f"{name}_metrics.jsonl").write_bytes((ck / "metrics.jsonl").read_bytes())
    for name, label, p in jobs:
        text, _ = p.communicate()
        print(f"== {name} {label} (rc {p.returncode})\n{text[-2500:]}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out / "long_run.tar", "w") as tar:
        for f in sorted(staging.iterdir()):
            if f.suffix in (".json", ".jsonl", ".wav") or f.name.endswith("_report"):
                tar.add(f, arcname=f.name)
    print(json.dumps({f.name: f.stat().st_size for f in staging.iterdir()}), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=("train", "eval"))
    ap.add_argument("--root", default="runs/long")
    ap.add_argument("--deadline", type=float, default=540.0, help="seconds before SIGTERM")
    ap.add_argument("--out", default=os.environ.get("OUT", "runs/long/out"))
    ap.add_argument("--recorded", default=".device/recorded50/val")
    ap.add_argument("--num_pairs", type=int, default=50)
    ap.add_argument("--report_pairs", type=int, default=0, help="report pages of N recorded pairs")
    ap.add_argument("variants", nargs="+")
    a = ap.parse_args()
    train(a) if a.phase == "train" else evaluate(a)
