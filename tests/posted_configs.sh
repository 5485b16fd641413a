#!/usr/bin/env bash
# Configs as people post them train as they are, and `gradacc options --from-config` explains every
# key of each (none refused):
#   1. a DeepSpeed ZeRO-2 config with bf16, communication_data_type, tensorboard and
#      gradient_clipping (2 ranks): TensorBoard files in output_path/job_name;
#   2. a DeepSpeed ZeRO-3 config with its stage3_* knobs (2 ranks);
#   3. a Hugging Face TrainingArguments JSON with auto_find_batch_size, label_smoothing_factor,
#      report_to and logging_dir (one process): TensorBoard files in logging_dir, and the notes.
# Usage: posted_configs.sh path/to/gradacc path/to/venv/python
set -u
G=${1:?usage: posted_configs.sh gradacc python}
PY=${2:?usage: posted_configs.sh gradacc python}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
. "$(dirname "$0")/ranks_lib.sh"  # fail, port
cd "$D" || exit 1

cat >ds_zero2.json <<'JSON'
{
  "train_batch_size": 64,
  "train_micro_batch_size_per_gpu": 16,
  "gradient_accumulation_steps": 2,
  "gradient_clipping": 1.0,
  "steps_per_print": 1,
  "wall_clock_breakdown": false,
  "optimizer": {"type": "AdamW", "params": {"lr": 3e-4, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}},
  "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 3e-4, "warmup_num_steps": 2}},
  "bf16": {"enabled": true},
  "communication_data_type": "bf16",
  "zero_optimization": {"stage": 2, "allgather_partitions": true, "allgather_bucket_size": 200000000,
                        "overlap_comm": true, "reduce_scatter": true, "reduce_bucket_size": 200000000,
                        "contiguous_gradients": true},
  "tensorboard": {"enabled": true, "output_path": "ds_logs/", "job_name": "mlp_zero2"}
}
JSON
cat >ds_zero3.json <<'JSON'
{
  "train_micro_batch_size_per_gpu": 16,
  "gradient_accumulation_steps": 2,
  "gradient_clipping": 1.0,
  "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "weight_decay": 0.01}},
  "fp16": {"enabled": false},
  "zero_optimization": {"stage": 3, "overlap_comm": true, "contiguous_gradients": true, "sub_group_size": 1e9,
                        "reduce_bucket_size": 1e6, "stage3_prefetch_bucket_size": 1e6,
                        "stage3_param_persistence_threshold": 1e4, "stage3_max_live_parameters": 1e9,
                        "stage3_max_reuse_distance": 1e9, "stage3_gather_16bit_weights_on_model_save": true}
}
JSON
cat >hf_args.json <<'JSON'
{
  "output_dir": "hf_out",
  "overwrite_output_dir": true,
  "do_train": true,
  "per_device_train_batch_size": 16,
  "gradient_accumulation_steps": 4,
  "learning_rate": 0.001,
  "weight_decay": 0.0,
  "max_grad_norm": 1.0,
  "max_steps": 3,
  "lr_scheduler_type": "cosine",
  "warmup_ratio": 0.1,
  "logging_dir": "hf_out/tb",
  "logging_steps": 1,
  "save_strategy": "no",
  "seed": 42,
  "bf16": true,
  "auto_find_batch_size": true,
  "label_smoothing_factor": 0.1,
  "report_to": ["tensorboard"],
  "dataloader_num_workers": 2,
  "run_name": "mlp-hf"
}
JSON

explain() {  # explain FILE: every key gets a verdict, none refused
  "$G" options --from-config "$1" >"$1.md" 2>&1 || fail "options --from-config $1: $(cat "$1.md")"
  local keys rows
  keys=$("$PY" -c 'import json, sys
def leaves(o):
    return sum(leaves(v) if isinstance(v, dict) else 1 for v in o.values())
print(leaves(json.load(open(sys.argv[1]))))' "$1")
  rows=$(grep -c '^| `' "$1.md")
  [ "$rows" = "$keys" ] || fail "$1: $rows verdicts for $keys keys: $(cat "$1.md")"
  grep -q "| refused |" "$1.md" && fail "$1: a key is refused: $(grep '| refused |' "$1.md")"
  echo "$1: $keys keys explained ($(grep -c '| mapped |' "$1.md") mapped, $(grep -c '| honoured |' "$1.md") honoured, $(grep -c '| ignored |' "$1.md") ignored), none refused"
}
m=(--model mlp --train-limit 512 --threads 1 --progress off)

explain ds_zero2.json
"$G" launch --nproc 2 -- train --config ds_zero2.json "${m[@]}" --steps 3 >ds2.out 2>&1 \
  || fail "ds_zero2.json: $(tail -3 ds2.out)"
ls ds_logs/mlp_zero2/events.out.tfevents.* >/dev/null 2>&1 || fail "ds_zero2.json: no event file in ds_logs/mlp_zero2"
grep -q "trained 3 optimizer steps" ds2.out || fail "ds_zero2.json: $(tail -3 ds2.out)"
echo "ds_zero2.json trains at 2 ranks (ZeRO-2, bf16 weights, bf16 on the wire): $(grep -o 'last window loss [0-9.]*' ds2.out | head -1); TensorBoard in ds_logs/mlp_zero2"

explain ds_zero3.json
"$G" launch --nproc 2 -- train --config ds_zero3.json "${m[@]}" --steps 3 >ds3.out 2>&1 \
  || fail "ds_zero3.json: $(tail -3 ds3.out)"
grep -q "trained 3 optimizer steps" ds3.out || fail "ds_zero3.json: $(tail -3 ds3.out)"
echo "ds_zero3.json trains at 2 ranks (ZeRO-3): $(grep -o 'last window loss [0-9.]*' ds3.out | head -1)"

explain hf_args.json
"$G" train --config hf_args.json "${m[@]}" >hf.out 2>&1 || fail "hf_args.json: $(tail -3 hf.out)"
ls hf_out/tb/events.out.tfevents.* >/dev/null 2>&1 || fail "hf_args.json: no event file in hf_out/tb"
grep -q "note: auto_find_batch_size" hf.out || fail "hf_args.json: no auto_find_batch_size note: $(cat hf.out)"
grep -q "trained 3 optimizer steps" hf.out || fail "hf_args.json: $(tail -3 hf.out)"
echo "hf_args.json trains (bf16 autocast, label smoothing 0.1, cosine): $(grep -o 'last window loss [0-9.]*' hf.out); TensorBoard in hf_out/tb"
echo "posted_configs: all checks passed"
