"""Convert EnCodec weights once into jaxaudio's own format, which then loads fast.

    python -m jaxaudio.codecs.convert encodec_24khz-d7cc33bc.th encodec_24khz.safetensors

SRC is the published ``.th`` (or a Hugging Face ``model.safetensors`` / ``pytorch_model.bin``);
DST is written atomically and never replaces an existing file without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys

from jaxaudio.codecs.encodec import EncodecWeightsError, load_encodec, save_encodec
from jaxaudio.torch_io import TorchFileError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxaudio.codecs.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="EnCodec checkpoint: .th / .pt / .bin (torch.save) or .safetensors")
    parser.add_argument("dst", help="output .safetensors in jaxaudio's format")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    parser.add_argument("--non-causal", action="store_true", help="the checkpoint is a non-causal SEANet")
    args = parser.parse_args(argv)
    overrides = {"causal": False} if args.non_causal else {}
    try:
        codec = load_encodec(args.src, **overrides)
        out = save_encodec(codec, args.dst, overwrite=args.overwrite)
    except (EncodecWeightsError, TorchFileError, FileExistsError) as e:
        msg = str(e)
        if isinstance(e, EncodecWeightsError) and args.src not in msg:
            msg = f"{args.src}: {msg}"  # some weight-layout errors do not name their file
        print(f"error: {msg}", file=sys.stderr)
        return 2  # bad input, as every jaxaudio tool
    print(f"wrote {out} ({codec.identity()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
