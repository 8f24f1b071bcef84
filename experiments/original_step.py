"""The original's own train step (PowerMuse's ``train_simple_worker.train_epoch``), timed and
its device memory measured, for side-by-side figures in one device call.

Needs torch with CUDA, a clone of the original (``--original_dir``: the repository's root, whose
``backend/`` holds the model files that ``train_simple_worker.py`` imports from its folder)
and the ``encodec`` 0.1.1 package (``--encodec_dir``: the folder holding ``encodec/``; its
24 kHz model is built with random weights, ``pretrained=False``, so nothing is downloaded).
Nothing of the original is copied here: this script imports it from where it lies.

The step is the original's headline configuration (``run_train_creative_agent_fixed.sh``:
6 layers, 8 heads, 3 cascade stages, GAN 0.1 with its discriminator, correlation 0.5, RMS
weights 0.3, balance 15, anti-cheating 0.1, batch 8 of 16 s) with ``--agent`` masking (the
script's) or compositional. Batches are what its ``WavPairsDataset`` yields: the input's
EnCodec latents ``[B, 128, 1200]`` and the raw target ``[B, 1, 384000]``. Each step runs through
``train_epoch`` itself (one batch per call, so each call's ``.item()`` reads end the step).

Prints one JSON line: ``max_memory_allocated`` (GiB, ``torch.cuda.max_memory_allocated`` over
the timed steps, after ``reset_peak_memory_stats``), the median step time and samples/s, with
TF32 on (``--tf32``, the default: XLA's default float32 precision on the GPU) or off.

    python experiments/original_step.py --original_dir PowerMuse --encodec_dir encodec-0.1.1 \\
        --agent compositional
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
import types


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--original_dir", required=True)
    p.add_argument("--encodec_dir", required=True)
    p.add_argument("--agent", choices=("masking", "compositional"), default="masking")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--clip_seconds", type=float, default=16.0)
    p.add_argument("--num_layers", type=int, default=6)
    p.add_argument("--stages", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--tf32", type=lambda s: s.lower() == "true", default=True)
    p.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test")
    p.add_argument("--out", default=None)
    a = p.parse_args()

    root = os.path.abspath(a.original_dir)
    sys.path[:0] = [os.path.abspath(a.encodec_dir), root, os.path.join(root, "backend")]
    # dataset_wav_pairs (imported by the worker, unused here) imports soundfile
    sys.modules.setdefault("soundfile", types.ModuleType("soundfile"))
    import torch

    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    import encodec
    import train_simple_worker as worker
    from audio_discriminator import AudioDiscriminator
    from model_simple_transformer import SimpleTransformer

    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    # load_encodec_model() with random weights instead of the downloaded ones
    codec = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    codec.set_target_bandwidth(6.0)
    codec = codec.to(dev).train()
    for prm in codec.parameters():
        prm.requires_grad = False

    class DDPLike(torch.nn.Module):  # train_epoch reads model.module (the DDP wrapper's)
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args):
            return self.module(*args)

    with contextlib.redirect_stdout(io.StringIO()):
        net = SimpleTransformer(encoding_dim=128, nhead=8, num_layers=a.num_layers, dropout=0.1,
                                num_transformer_layers=a.stages, anti_cheating=0.1,
                                use_creative_agent=a.agent == "masking",
                                use_compositional_agent=a.agent == "compositional").to(dev)
    model = DDPLike(net)
    disc = AudioDiscriminator(encoding_dim=128, hidden_dims=[256, 512, 512, 256]).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    disc_opt = torch.optim.AdamW(disc.parameters(), lr=5e-5, weight_decay=0.01,
                                 betas=(0.5, 0.999))
    n = int(a.clip_seconds * 24000)
    gen = torch.Generator(device=dev).manual_seed(1)  # noqa: the same draws every run
    with torch.no_grad():
        audio = 0.1 * torch.randn(a.batch, 1, n, device=dev, generator=gen)
        inputs = codec.encoder(audio)  # what WavPairsDataset stores: the input's latents
        targets = 0.1 * torch.randn(a.batch, 1, n, device=dev, generator=gen)
    kw = dict(unity_test=False, loss_weight_input=0.3, loss_weight_target=0.3,
              loss_weight_spectral=0.0, loss_weight_mel=0.0, mask_type="none",
              mask_reg_weight=0.1, balance_loss_weight=15.0, discriminator=disc,
              disc_optimizer=disc_opt, gan_weight=0.1, disc_update_freq=1, corr_weight=0.5)

    def step(epoch: int) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            worker.train_epoch(model, codec, [(inputs, targets)], opt, dev, 1, epoch, **kw)

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for i in range(a.warmup):
        step(i + 1)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(a.steps):
        t0 = time.perf_counter()
        step(a.warmup + i + 1)
        sync()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    rec = {
        "case": f"original_train_step_{a.agent}",
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__, "tf32": a.tf32, "batch": a.batch,
        "clip_seconds": a.clip_seconds, "frames": int(inputs.shape[-1]),
        "num_layers": a.num_layers, "stages": a.stages,
        "parameters": sum(p.numel() for p in net.parameters()),
        "median_step_s": round(med, 5), "samples_per_second": round(a.batch / med, 2),
        "max_memory_allocated_gib": (round(torch.cuda.max_memory_allocated() / 2**30, 3)
                                     if cuda else None),
        "max_memory_reserved_gib": (round(torch.cuda.max_memory_reserved() / 2**30, 3)
                                    if cuda else None),
    }
    print(json.dumps(rec), flush=True)
    if a.out:
        with open(a.out, "a") as f:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
