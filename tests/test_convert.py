"""The torch weight port: the original's best_model.pt, strictness, and torch names.

``tests/assets/original_best_model.pt`` is a real ``torch.save`` file in the original trainer's
format, written by ``tests/assets/make_best_model.py`` from the ``transformer_single`` fixture;
``original_best_model_expected.npz`` holds that fixture's input and eval output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fixtures import assert_output_close, load_fixture
from jaxaudio.torch_port import (
    StateDictError,
    checkpoint_from_dict,
    config_from_checkpoint,
    load_original_checkpoint,
    load_torch_state_dict,
    read_original_checkpoint,
    torch_state_dict,
)
from jaxaudio.nn import BatchNorm1d, Conv1d, LayerNorm, Linear, MultiheadAttention, PositionalEncoding
from jaxaudio.models.transformer import SimpleTransformer

ASSETS = Path(__file__).resolve().parent / "assets"
CHECKPOINT = ASSETS / "original_best_model.pt"
EXPECTED = ASSETS / "original_best_model_expected.npz"
SIZE_KEYS = ("encoding_dim", "nhead", "num_layers", "num_transformer_layers", "dropout")


def test_original_checkpoint_gives_the_original_outputs():
    model, config = load_original_checkpoint(CHECKPOINT)
    with np.load(EXPECTED) as z:
        x, expected, fixture_config = z["input"], z["eval_output"], json.loads(str(z["config"]))
    assert {k: config[k] for k in SIZE_KEYS} == {k: fixture_config[k] for k in SIZE_KEYS}
    assert config["use_creative_agent"] is False and config["use_compositional_agent"] is False
    out = jax.jit(lambda m, a: m(a))(model, jnp.asarray(x))
    assert_output_close(out.output, expected, "eval output of the loaded best_model.pt")
    ckpt = read_original_checkpoint(CHECKPOINT)
    # a pickled Python float: exact; approx is moot
    assert ckpt.epoch == 3 and ckpt.args["lr"] == pytest.approx(1e-4)


def _single_state_dict():
    return read_original_checkpoint(CHECKPOINT).state_dict


def _abstract_single(config):  # shapes only: nothing is drawn
    return nnx.eval_shape(lambda: SimpleTransformer(**config, rngs=nnx.Rngs(0)))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.pop("transformer.layers.1.linear2.bias"), "missing keys.*transformer.layers.1.linear2.bias"),
        (lambda sd: sd.update({"transformer.layers.2.norm1.weight": np.ones(3)}), "unused keys.*layers.2.norm1"),
        (lambda sd: sd.update({"post_norm.bias": np.zeros(7, np.float32)}), r"wrong shapes.*post_norm.bias: \[7\], expected \["),
    ],
    ids=["missing", "extra", "mis-shaped"],
)
def test_strict_loading_names_the_offending_key(edit, message):
    ckpt = read_original_checkpoint(CHECKPOINT)
    sd = dict(ckpt.state_dict)
    edit(sd)
    model = _abstract_single(ckpt.config)
    with pytest.raises(StateDictError, match=message):
        load_torch_state_dict(model, sd, source="edited.pt")
    values = [v.get_value() for _, v in nnx.to_flat_state(nnx.state(model))]
    assert all(isinstance(v, jax.ShapeDtypeStruct) for v in values), "a failed load must assign nothing"


def test_checkpoint_dict_variants():
    sd = _single_state_dict()
    ns = read_original_checkpoint(CHECKPOINT).args
    ddp = {"model_state_dict": {f"module.{k}": v for k, v in sd.items()}, "args": dict(ns), "epoch": 1}
    plain = checkpoint_from_dict({"model_state_dict": sd, "args": argparse.Namespace(**ns)})
    assert checkpoint_from_dict(ddp).config == plain.config
    assert set(checkpoint_from_dict(ddp).state_dict) == set(sd)
    no_args = checkpoint_from_dict({"model_state_dict": sd}).config  # sizes from the weights
    assert {k: no_args[k] for k in ("encoding_dim", "num_layers", "num_transformer_layers")} == {
        k: plain.config[k] for k in ("encoding_dim", "num_layers", "num_transformer_layers")
    }
    with pytest.raises(StateDictError, match="num_layers"):
        checkpoint_from_dict({"model_state_dict": sd, "args": dict(ns, num_layers=ns["num_layers"] + 1)})
    with pytest.raises(StateDictError, match="model_state_dict"):
        checkpoint_from_dict({"state": sd}, source="other.pt")


class _Toy(nnx.Module):
    """One of every torch-named layer, under torch-like attribute names, in a Sequential too."""

    def __init__(self, rngs):
        self.seq = nnx.Sequential(Linear(3, 4, rngs=rngs), nnx.relu, Linear(4, 5, rngs=rngs))
        self.conv = Conv1d(5, 6, 3, rngs=rngs)
        self.bn = BatchNorm1d(6)
        self.norm = LayerNorm(6)
        self.attn = MultiheadAttention(6, 2, rngs=rngs)
        self.pos = PositionalEncoding(6, 0.0, max_len=10)
        self.drop = nnx.Dropout(0.5, rngs=rngs)  # RNG state: never a torch key


def test_torch_names_roundtrip_and_constants():
    a, b = _Toy(nnx.Rngs(0)), nnx.eval_shape(lambda: _Toy(nnx.Rngs(1)))
    sd = torch_state_dict(a)
    shapes = {k: v.shape for k, v in sd.items()}
    assert shapes["seq.0.weight"] == (4, 3) and shapes["seq.2.weight"] == (5, 4)
    assert shapes["conv.weight"] == (6, 5, 3)
    assert shapes["attn.in_proj_weight"] == (18, 6) and shapes["attn.out_proj.weight"] == (6, 6)
    assert {"bn.running_mean", "bn.running_var", "bn.num_batches_tracked", "norm.weight", "pos.pe"} <= set(sd)
    np.testing.assert_array_equal(sd["seq.0.weight"], np.asarray(a.seq.layers[0].weight[...]))
    load_torch_state_dict(b, sd)
    back = torch_state_dict(b)
    assert set(back) == set(sd)
    for k, v in back.items():
        np.testing.assert_array_equal(v, sd[k], err_msg=k)
    with pytest.raises(StateDictError, match=r"constant buffers with other values \(1\): pos.pe"):
        load_torch_state_dict(b, dict(sd, **{"pos.pe": sd["pos.pe"] + 0.5}))


@pytest.mark.parametrize(
    "name",
    ["transformer_single", "transformer_cascade", "transformer_cascade_masking", "transformer_cascade_compositional"],
)
def test_configuration_from_weights_matches_fixture(name):
    fx = load_fixture(name)
    c = fx.config
    config = config_from_checkpoint(fx.group("param"), {"nhead": c["nhead"]}, source=name)
    assert config["encoding_dim"] == c["encoding_dim"] and config["num_layers"] == c["num_layers"]
    assert (config["num_transformer_layers"] > 1) == (c["num_transformer_layers"] > 1)
    assert config["use_creative_agent"] == bool(c.get("use_creative_agent", False))
    assert config["use_compositional_agent"] == bool(c.get("use_compositional_agent", False))
    if "agent" in c:
        assert config["composer_layers"] == c["agent"]["composer_layers"]
        assert config["component_dim"] == c["agent"]["component_dim"]
    if config["num_transformer_layers"] > 1:
        wrong = {"use_creative_agent": not config["use_creative_agent"], "use_compositional_agent": False}
        with pytest.raises(StateDictError, match="agent"):
            config_from_checkpoint(fx.group("param"), wrong, source=name)
