"""Make the EnCodec test assets with the reference ``encodec`` 0.1.1 package and torch.

Run with an environment that has torch and the ``encodec`` package (installed with
``--no-deps``; its unused ``einops`` / ``torchaudio`` imports are stubbed here when missing):

    /root/venv311/bin/python tests/assets/make_encodec_assets.py

Writes, next to this script:

- ``encodec_tiny.th``: ``torch.save(EncodecModel.state_dict())`` of a tiny *causal* model A in
  the published file's layout (``encoder.model.N.conv.conv.weight_g``..., ``quantizer.vq...``),
  a zip archive like ``encodec_24khz-d7cc33bc.th``;
- ``encodec_tiny_legacy.th``: a small state dict in torch's legacy (pre-zip) format;
- ``encodec_tiny_ref.npz``: the reference outputs of model A on inputs whose lengths are not
  multiples of the hop (and shorter than the padding), and a tiny *non-causal* model B with
  odd strides and identity skips (``b/param/...``) with its outputs. Layout as the shared
  fixtures: ``meta/config`` (JSON), ``in/*``, ``out/*``, ``grad/*``; references computed in
  float64 from the float32 weights and inputs.

Weight-norm gains are scaled away from ``||v||`` so that the fold ``g * v / ||v||`` is tested.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

for _name in ("einops", "torchaudio"):  # imported by encodec/__init__ but unused by SEANet
    try:
        __import__(_name)
    except ImportError:
        _stub = types.ModuleType(_name)
        _stub.rearrange = _stub.repeat = None
        sys.modules[_name] = _stub

from encodec.model import EncodecModel  # noqa: E402
from encodec.modules.seanet import SEANetDecoder, SEANetEncoder  # noqa: E402
from encodec.quantization import ResidualVectorQuantizer  # noqa: E402

HERE = Path(__file__).resolve().parent

MODEL_A = dict(channels=1, dimension=16, n_filters=2, n_residual_layers=2, ratios=[5, 4, 2], causal=True,
               norm="weight_norm", pad_mode="reflect", lstm=2)
MODEL_B = dict(channels=1, dimension=8, n_filters=2, n_residual_layers=1, ratios=[3, 2], causal=False,
               norm="weight_norm", pad_mode="reflect", lstm=1, true_skip=True, residual_kernel_size=5)


def randomize(module: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("weight_g"):
                p.mul_(0.5 + torch.rand(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def reference(enc, dec, lengths, frames, gen, batch=2):
    enc64, dec64 = enc.double(), dec.double()
    out = {}
    for n in lengths:
        x = torch.randn(batch, 1, n, generator=gen).float()
        out[f"in/audio_{n}"] = x.numpy()
        with torch.no_grad():
            out[f"out/encoded_{n}"] = enc64(x.double()).numpy()
    z = torch.randn(batch, enc.dimension, frames, generator=gen).float()
    zz = z.double().requires_grad_(True)
    y = dec64(zz)
    r = torch.randn(y.shape, generator=gen).float()
    (y * r.double()).sum().backward()
    out |= {"in/latent": z.numpy(), "in/R": r.numpy(), "out/decoded": y.detach().numpy(),
            "grad/latent": zz.grad.numpy()}
    return out


def main() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)

    enc_a, dec_a = SEANetEncoder(**MODEL_A), SEANetDecoder(**MODEL_A)
    quant = ResidualVectorQuantizer(dimension=MODEL_A["dimension"], n_q=2, bins=8)
    model = EncodecModel(enc_a, dec_a, quant, target_bandwidths=[1.5], sample_rate=24000, channels=1, name="tiny")
    randomize(model, gen)
    state = model.state_dict()
    torch.save(state, HERE / "encodec_tiny.th")
    legacy = {k: v for k, v in state.items() if k.startswith("encoder.model.0.")}
    torch.save(legacy, HERE / "encodec_tiny_legacy.th", _use_new_zipfile_serialization=False)

    arrays = {f"a/{k}": v for k, v in reference(enc_a, dec_a, [1, 41, 1001], 5, gen).items()}

    enc_b, dec_b = SEANetEncoder(**MODEL_B), SEANetDecoder(**MODEL_B)
    randomize(enc_b, gen)
    randomize(dec_b, gen)
    for prefix, m in (("encoder", enc_b), ("decoder", dec_b)):
        for k, v in m.state_dict().items():
            arrays[f"b/param/{prefix}.{k}"] = v.float().numpy()
    arrays |= {f"b/{k}": v for k, v in reference(enc_b, dec_b, [1, 4, 47], 3, gen).items()}

    config = {
        "package": "encodec 0.1.1",
        "a": {"SEANet": MODEL_A, "weights": "encodec_tiny.th (EncodecModel.state_dict(), quantizer included)"},
        "b": {"SEANet": MODEL_B, "weights": "b/param/<name>, encoder.* / decoder.* as in EncodecModel"},
        "grad": "d sum(decoder(latent) * R) / d latent",
        "torch": torch.__version__,
    }
    np.savez_compressed(HERE / "encodec_tiny_ref.npz", **{"meta/config": json.dumps(config)}, **arrays)
    print("wrote", sorted(p.name for p in HERE.glob("encodec_tiny*")))


if __name__ == "__main__":
    main()
