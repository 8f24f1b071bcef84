#!/usr/bin/env bash
# The original's headline configuration (run_train_creative_agent_fixed.sh): EnCodec 24 kHz
# latents, 2-stage cascade with 6 layers and 8 heads, the masking creative agent, GAN 0.1,
# envelope-correlation penalty 0.5, batch 8 per device, 16 s clips, shuffled targets.
#
#   ENCODEC_WEIGHTS=encodec_24khz.safetensors DATASET=dataset_pairs_wav experiments/headline.sh
#
# ENCODEC_WEIGHTS: the published encodec_24khz-d7cc33bc.th, a Hugging Face model.safetensors,
# or a file made by `python -m jaxaudio.codecs.convert` (jaxaudio never downloads weights).
# Extra arguments are passed on (e.g. --resume checkpoints_creative_agent_fixed/interrupted_checkpoint).
set -euo pipefail
: "${ENCODEC_WEIGHTS:?set ENCODEC_WEIGHTS to your EnCodec 24 kHz weights file}"
: "${DATASET:=dataset_pairs_wav}"
exec python -m jaxaudio.train \
  --dataset_folder "$DATASET" --clip_seconds 16 \
  --codec encodec --codec_weights "$ENCODEC_WEIGHTS" \
  --encoding_dim 128 --nhead 8 --num_layers 6 --num_transformer_layers 3 --dropout 0.1 \
  --epochs 200 --batch_size 8 --lr 1e-4 --weight_decay 0.01 --patience 20 --seed 42 \
  --checkpoint_dir checkpoints_creative_agent_fixed --save_every 10 \
  --unity_test false --shuffle_targets true --anti_cheating 0.1 \
  --loss_weight_input 0.3 --loss_weight_target 0.3 --loss_weight_spectral 0.0 --loss_weight_mel 0.0 \
  --mask_type none --use_creative_agent true --mask_reg_weight 0.1 --balance_loss_weight 15.0 \
  --gan_weight 0.1 --disc_lr 5e-5 --disc_update_freq 1 --corr_weight 0.5 \
  "$@"
