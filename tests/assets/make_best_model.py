"""Write ``original_best_model.pt``: a small checkpoint in the original trainer's format.

Run with a Python that has torch (the project's tests never import it)::

    /root/venv311/bin/python tests/assets/make_best_model.py [path/to/transformer_single.npz]

The dict mirrors what ``train_simple_worker.py`` saves as ``best_model.pt``: ``epoch``,
``model_state_dict`` (``model.module.state_dict()``: the original's torch names), a real AdamW
``optimizer_state_dict`` after one step, the losses, and ``args`` (an ``argparse.Namespace``
carrying every option of ``train_simple_ddp.py``; the trainer itself stores ``vars(args)``, which
the loader accepts as well). Weights and configuration come from the ``transformer_single``
fixture; ``original_best_model_expected.npz`` keeps that fixture's input and eval output so the
test checks the loaded model against the original's numbers.
"""

import argparse
import collections
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
FIXTURES = Path(os.environ.get("JAXAUDIO_FIXTURES", HERE.parents[2] / "shared" / "fixtures"))
DEFAULT_FIXTURE = FIXTURES / "transformer_single.npz"


def trainer_args(config: dict) -> argparse.Namespace:
    """The options of ``train_simple_ddp.py`` at their defaults, model sizes from the fixture."""
    args = dict(
        encoding_dim=128, nhead=8, num_layers=4, num_transformer_layers=1, dropout=0.1,
        encodec_bandwidth=6.0, encodec_sr=24000, dataset_folder="dataset_pairs_wav", epochs=200,
        batch_size=16, lr=1e-4, weight_decay=0.01, num_workers=0, patience=20, seed=42,
        checkpoint_dir="checkpoints_simple", save_every=10, resume=None, world_size=4, local_rank=0,
        unity_test=False, shuffle_targets=False, anti_cheating=0.0, loss_weight_input=0.0,
        loss_weight_target=1.0, loss_weight_spectral=0.0, loss_weight_mel=0.0, mask_type="none",
        mask_temporal_segment=150, mask_freq_split=0.3, mask_channel_keep=0.5,
        mask_energy_threshold=0.7, use_creative_agent=False, use_compositional_agent=False,
        mask_reg_weight=0.1, balance_loss_weight=5.0, corr_weight=0.0, gan_weight=0.0,
        disc_lr=None, disc_update_freq=1,
    )
    for key in ("encoding_dim", "nhead", "num_layers", "num_transformer_layers", "dropout"):
        args[key] = config[key]
    return argparse.Namespace(**args)


def main() -> None:
    fixture = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_FIXTURE
    z = np.load(fixture)
    config = json.loads(str(z["meta/config"]))
    state = collections.OrderedDict(
        (k[len("param/"):], torch.from_numpy(np.array(z[k]))) for k in z.files if k.startswith("param/")
    )
    buffers = {"output_proj.weight_u", "output_proj.weight_v"}
    params = [torch.nn.Parameter(v.clone()) for k, v in state.items() if k not in buffers]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    for p in params:
        p.grad = torch.full_like(p, 1e-3)
    optimizer.step()
    checkpoint = {
        "epoch": 3,
        "model_state_dict": state,
        "optimizer_state_dict": optimizer.state_dict(),
        "train_loss": 0.5,
        "val_loss": 0.25,
        "best_val_loss": 0.25,
        "args": trainer_args(config),
    }
    torch.save(checkpoint, HERE / "original_best_model.pt")
    np.savez(
        HERE / "original_best_model_expected.npz",
        input=np.asarray(z["in/0"]),
        eval_output=np.asarray(z["out/eval/0"]),
        config=json.dumps(config),
    )
    print("wrote", HERE / "original_best_model.pt")


if __name__ == "__main__":
    main()
