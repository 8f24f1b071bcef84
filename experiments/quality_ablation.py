"""Quality ablation: train variants of one configuration side by side, evaluate each.

Trains every variant (``NAME[:--flag=value...]``) in its own process at once on one GPU
(``XLA_PYTHON_CLIENT_PREALLOCATE=false``), from the issue's recipe: built-in settings, MDCT
codec, 4-s clips, 4 layers, masking agent, batch 32; then runs ``python -m jaxaudio.evaluate``
on each best model, on 11 unseen synthetic pairs and on the recorded-instrument pairs
(``experiments/make_recorded_eval_set.py``), and writes ``probe.json`` (curves + medians).

    python -m jaxaudio.data.synth --output_dir /tmp/ds --num_pairs 1200 --duration 4 --seed 0
    RECORDED=/work/evalsets/recorded/val python experiments/quality_ablation.py /tmp/ds OUT 12 \
        "orig:--gan_weight=0.1:--gan_variant=original:--mask_gate=learned:--cascade_update=additive" \
        "new:--gan_weight=0.1"
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RECORDED = os.environ.get("RECORDED", "/work/evalsets/recorded/val")


def evaluate(ckpt, ds, n=11):
    res={}
    for name, extra in (("synthetic", ["--num_pairs", str(n)]), ("recorded", ["--val_folder", RECORDED, "--song_mode", "sum"])):
        js=f"/tmp/eval_{abs(hash(ckpt))}_{name}.json"
        r=subprocess.run([sys.executable,"-m","jaxaudio.evaluate","--checkpoint",ckpt,"--output_json",js]+extra,capture_output=True,text=True)
        if r.returncode: print(r.stderr[-2000:]); continue
        agg=json.load(open(js))["aggregate"]
        res[name]={k: round(v,3) for k,v in agg.items() if k in ("distance_ratio","comb_db_excess","hf_share_excess","onset_corr_input","chroma_sim_target","chroma_sim_input_baseline")}
    return res

if __name__ == "__main__":
    ds=sys.argv[1]; out=Path(sys.argv[2]); epochs=sys.argv[3]; variants=sys.argv[4:]
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"]="false"
    procs={}
    for v in variants:
        name, *flags = v.split(":")
        ck=f"/tmp/ck_{name}"
        cmd=[sys.executable,"-m","jaxaudio.train","--builtin","--dataset_folder",ds,"--clip_seconds","4",
             "--num_layers","4","--use_creative_agent","true","--batch_size","32","--epochs",epochs,
             "--no_mlflow","--log_samples","0","--checkpoint_dir",ck,"--save_every","1000"]+[x for f in flags for x in f.split("=",1)]
        procs[name]=(ck, subprocess.Popen(cmd,stdout=open(out/f"{name}_train.log","w"),stderr=subprocess.STDOUT))
    t=time.time(); res={}
    for name,(ck,p) in procs.items():
        rc=p.wait(); print(name,"rc",rc,"%.0fs"%(time.time()-t),flush=True)
        if rc: print(open(out/f"{name}_train.log").read()[-3000:]); continue
        lines=[json.loads(l) for l in open(f"{ck}/metrics.jsonl")]
        keys=["train_loss","val_loss","train_gan_loss","train_disc_loss","train_disc_real_acc","train_disc_fake_acc","learning_rate","train_complementarity","train_input_mask_mean","train_input_mask_temporal_std","train_mask_onset_corr","train_gan_weight_effective","train_disc_r1"]
        res[name]=dict(curve=[{k:round(l[k],4) for k in keys if k in l} for l in lines])
    import concurrent.futures as cf
    with cf.ThreadPoolExecutor(len(res)) as ex:
        futs={n: ex.submit(evaluate, f"/tmp/ck_{n}/best_model", ds) for n in res}
        for n,f in futs.items():
            res[n]["eval"]=f.result(); print(n, json.dumps(res[n]["eval"]), json.dumps(res[n]["curve"][-1]), flush=True)
    (out/"probe.json").write_text(json.dumps(res,indent=1))
