"""EnCodec weight loading: .th without torch, HF safetensors (both spellings), own format, strict errors."""

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from jaxaudio.codecs import make_codec
from jaxaudio.codecs.convert import main as convert_main
from jaxaudio.codecs.encodec import EncodecWeightsError, encodec_from_state_dict, load_encodec
from jaxaudio.torch_io import TorchFileError, flatten_state_dict, load_torch_file
from tests.fixtures import load_fixture

ASSETS = Path(__file__).resolve().parent / "assets"
TH = ASSETS / "encodec_tiny.th"


def _same_weights(a, b):
    wa, wb = a.weights(), b.weights()
    assert sorted(wa) == sorted(wb)
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


def test_th_loads_without_torch_and_ignores_the_quantizer():
    state = flatten_state_dict(load_torch_file(TH))
    assert any(k.startswith("quantizer.") for k in state)
    torch_was_imported = "torch" in sys.modules  # by another test, where torch is installed
    codec = load_encodec(TH)
    assert torch_was_imported or "torch" not in sys.modules
    meta = json.loads(str(np.load(ASSETS / "encodec_tiny_ref.npz")["meta/config"]))["a"]["SEANet"]
    cfg = codec.config
    for key in ("channels", "dimension", "n_filters", "n_residual_layers", "lstm", "causal", "norm", "pad_mode"):
        assert getattr(cfg, key) == meta[key], key
    assert cfg.ratios == tuple(meta["ratios"])
    _same_weights(codec, encodec_from_state_dict(state))


def _hf_params(fx, spelling):
    out = {}
    for k, v in fx.group("param").items():
        if spelling == "parametrizations":
            k = k.replace(".weight_g", ".parametrizations.weight.original0").replace(
                ".weight_v", ".parametrizations.weight.original1"
            )
        out[k] = v
    out["quantizer.layers.0.codebook.embed"] = np.zeros((4, 128), np.float32)  # ignored, as in the real file
    return out


@pytest.mark.parametrize("spelling", ["weight_g", "parametrizations"])
def test_hf_safetensors_without_torch(tmp_path, spelling):
    fx = load_fixture("encodec_hf")
    path = tmp_path / "model.safetensors"
    save_file(_hf_params(fx, spelling), str(path))
    codec = load_encodec(path)
    _same_weights(codec, encodec_from_state_dict(fx.group("param")))


def test_convert_writes_own_format_atomically_and_never_clobbers(tmp_path, capsys):
    dst = tmp_path / "tiny.safetensors"
    assert convert_main([str(TH), str(dst)]) == 0
    converted = load_encodec(dst)
    original = load_encodec(TH)
    _same_weights(converted, original)
    assert converted.identity() == original.identity()
    assert converted.config == original.config
    before = dst.read_bytes()
    assert convert_main([str(TH), str(dst)]) == 2  # bad input: the one exit code of every tool
    assert "--overwrite" in capsys.readouterr().err
    assert dst.read_bytes() == before
    assert convert_main([str(TH), str(dst), "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.safetensors"]  # no temp file left behind
    with pytest.raises(EncodecWeightsError, match="cannot override"):
        load_encodec(dst, n_filters=8)


def _state():
    return flatten_state_dict(load_torch_file(TH))


def test_missing_key_is_named():
    state = _state()
    del state["decoder.model.3.convtr.convtr.weight_v"]
    with pytest.raises(EncodecWeightsError) as e:
        encodec_from_state_dict(state, source="damaged.th")
    msg = str(e.value)
    assert "damaged.th" in msg and "missing keys (1)" in msg and "decoder.model.3.convtr.convtr.weight_v" in msg


def test_unused_key_is_named():
    state = _state()
    state["encoder.model.99.conv.conv.bias"] = np.zeros(3, np.float32)
    with pytest.raises(EncodecWeightsError, match=r"unused keys \(1\): encoder\.model\.99\.conv\.conv\.bias"):
        encodec_from_state_dict(state, source="extra.th")


def test_wrong_shape_is_named_with_both_shapes():
    state = _state()
    key = "encoder.model.0.conv.conv.bias"
    state[key] = np.zeros(state[key].shape[0] + 1, np.float32)
    with pytest.raises(EncodecWeightsError) as e:
        encodec_from_state_dict(state, source="shapes.th")
    assert "wrong shapes (1)" in str(e.value) and key in str(e.value)


def test_files_that_are_not_checkpoints(tmp_path):
    text = tmp_path / "notes.th"
    text.write_text("not a checkpoint")
    with pytest.raises(EncodecWeightsError, match="notes.th: not an EnCodec checkpoint"):
        load_encodec(text)
    with pytest.raises(EncodecWeightsError, match="no such file"):
        load_encodec(tmp_path / "absent.th")
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(TorchFileError, match="other.zip"):
        load_encodec(archive)
    with pytest.raises(TorchFileError, match=r"jaxaudio\[torch\]"):
        load_encodec(ASSETS / "encodec_tiny_legacy.th")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"model.fc.weight": np.zeros((2, 2), np.float32)}, str(foreign))
    with pytest.raises(EncodecWeightsError, match="not an EnCodec state dict"):
        load_encodec(foreign)


def test_make_codec_encodec():
    with pytest.raises(ValueError, match="--codec_weights"):
        make_codec("encodec")
    assert make_codec("encodec", str(TH)).identity() == load_encodec(TH).identity()
    tiny = make_codec("encodec", random_seed=0, n_filters=2, dimension=8, ratios=(2,), lstm=1)
    assert (tiny.dim, tiny.hop_length) == (8, 2)
