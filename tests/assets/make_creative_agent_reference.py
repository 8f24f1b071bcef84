"""Make ``creative_agent_reference.npz``: more of the original masking agent's numbers.

The shared fixture ``creative_agent.npz`` holds the eval-mode forward only. This script runs the
original PyTorch ``creative_agent.py`` (PowerMuse / Jingle_D) on that fixture's weights and
inputs, in float64, and stores what the fixture lacks:

- ``out/restored_input``, ``out/restored_target``: the cascade's per-sample RMS restore of the
  masked encodings (``backend/model_simple_transformer.py``: ``sqrt(mean(x^2) + 1e-8)`` per
  sample, before and after masking);
- ``out/adversarial/{generator,discriminator}_loss``: ``adversarial_loss(masked_input, target)``;
- ``out/rhythm/<key>``: ``evaluate_rhythm_transfer(input, target, masked_input + masked_target)``;
- ``grad/param/<name>`` (tensors of at most 10,000 values), ``gradnorm/param/<name>`` and
  ``gradsum/param/<name>`` (all tensors), ``grad/in/{input,target}``: gradients of
  ``sum(restored_input * R_input) + sum(restored_target * R_target) + reg_loss + balance_loss
  + generator_loss + discriminator_loss + sum(style_score(masked_target))`` in eval mode, with
  ``in/R_input``, ``in/R_target`` drawn here.

``meta/config`` records the SHA-256 of the fixture's weights and inputs; the tests fail with a
pointer to this script when the fixture no longer matches. jaxaudio never imports torch: run
this with a Python that has torch and numpy, from the project root:

    python tests/assets/make_creative_agent_reference.py --original PATH/TO/PowerMuse \
        --fixture ../shared/fixtures/creative_agent.npz \
        --out tests/assets/creative_agent_reference.npz

``--original`` is a folder holding the original's ``creative_agent.py`` (its import of
``correlation_penalty`` must resolve; that module is not used here).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import numpy as np

FULL_GRAD_MAX_SIZE = 10_000


def fixture_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the sorted ``param/`` and ``in/`` arrays (names, shapes, float32 bytes)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        if k.startswith(("param/", "in/")):
            a = np.ascontiguousarray(arrays[k], dtype=np.float32)
            h.update(k.encode())
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--original", required=True)
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    sys.path.insert(0, args.original)
    import creative_agent as original

    with np.load(args.fixture) as z:
        arrays = {k: z[k] for k in z.files}
    config = json.loads(str(arrays["meta/config"]))
    agent = original.CreativeAgent(config["encoding_dim"], config["use_discriminator"])
    agent = agent.double().eval()
    state = {k[len("param/"):]: torch.from_numpy(v).double()
             for k, v in arrays.items() if k.startswith("param/")}
    agent.load_state_dict(state, strict=True)

    x = torch.from_numpy(arrays["in/input"]).double().requires_grad_(True)
    y = torch.from_numpy(arrays["in/target"]).double().requires_grad_(True)
    rng = np.random.default_rng(args.seed)
    r_in = rng.standard_normal(x.shape).astype(np.float32)
    r_tgt = rng.standard_normal(y.shape).astype(np.float32)

    masked_input, masked_target, reg_loss, balance_loss = agent.generate_creative_masks(x, y)

    def rms(t):
        return torch.sqrt(torch.mean(t ** 2, dim=(1, 2), keepdim=True) + 1e-8)

    restored_input = masked_input * (rms(x) / rms(masked_input))
    restored_target = masked_target * (rms(y) / rms(masked_target))
    gen_loss, disc_loss = agent.adversarial_loss(masked_input, y)
    _, style_score = agent.judge_quality(masked_target)
    objective = (torch.sum(restored_input * torch.from_numpy(r_in).double())
                 + torch.sum(restored_target * torch.from_numpy(r_tgt).double())
                 + reg_loss + balance_loss + gen_loss + disc_loss + style_score.sum())
    objective.backward()
    with torch.no_grad():
        rhythm = original.evaluate_rhythm_transfer(x, y, masked_input + masked_target)

    out: dict[str, np.ndarray] = {
        "in/R_input": r_in,
        "in/R_target": r_tgt,
        "out/restored_input": restored_input.detach().numpy().astype(np.float32),
        "out/restored_target": restored_target.detach().numpy().astype(np.float32),
        "out/adversarial/generator_loss": np.float64(gen_loss.item()),
        "out/adversarial/discriminator_loss": np.float64(disc_loss.item()),
        "out/style_score_masked_target": style_score.detach().numpy(),
        "out/objective": np.float64(objective.item()),
        "grad/in/input": x.grad.numpy().astype(np.float32),
        "grad/in/target": y.grad.numpy().astype(np.float32),
    }
    for key, value in rhythm.items():
        out[f"out/rhythm/{key}"] = np.asarray(value, dtype=bool if isinstance(value, bool)
                                              else np.float64)
    for name, p in agent.named_parameters():
        g = p.grad.numpy() if p.grad is not None else np.zeros(tuple(p.shape))
        out[f"gradnorm/param/{name}"] = np.float64(np.linalg.norm(g))
        out[f"gradsum/param/{name}"] = np.float64(g.sum())
        if g.size <= FULL_GRAD_MAX_SIZE:
            out[f"grad/param/{name}"] = g.astype(np.float32)
    out["meta/config"] = np.asarray(json.dumps({
        "source_fixture": "creative_agent.npz",
        "source_fixture_sha256": fixture_digest(arrays),
        "encoding_dim": config["encoding_dim"],
        "use_discriminator": config["use_discriminator"],
        "mode": "eval, float64",
        "objective": "sum(restored_input * R_input) + sum(restored_target * R_target) + reg_loss"
                     " + balance_loss + generator_loss + discriminator_loss"
                     " + sum(judge_quality(masked_target)[1])",
        "adversarial": "adversarial_loss(fake=masked_input, real=target)",
        "rhythm": "evaluate_rhythm_transfer(input, target, masked_input + masked_target)",
        "torch": torch.__version__,
        "seed": args.seed,
    }))
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}: {len(out)} arrays")


if __name__ == "__main__":
    main()
