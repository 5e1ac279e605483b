#!/usr/bin/env bash
# Everything that needs an NVIDIA GPU, in one timed run (the lent-GPU sessions have minutes, not hours):
#   1. the GPU tests (pytest -m gpu): shipped model and TorchScript on CUDA vs CPU, TensorRT engines
#      (fp32/fp16) vs the eager model where TensorRT is installed, both training stages under bf16;
#   2. bench/model_latency.py, bench/backend_latency.py (TensorRT engines where TensorRT is
#      installed) and bench/train_throughput.py on CUDA;
#   3. the demo recording replayed with the model on CUDA (MAD_MODEL__DEVICE=cuda);
#   4. FIT_CONFIG (default configs/mad_small_step3.yaml) from FIT_INIT (default: step 2's
#      runs/mad_small/mad_small.safetensors, carried along with its .json), with 14 workers, stopped
#      at the time budget; the checkpoint, sidecar and metrics are copied to OUT.
# Usage: BUDGET_S=540 OUT=/path bench/gpu_session.sh   (PYTHON defaults to python3; FIT=0 skips step 4)
# Python packages the GPU image lacks can come as wheels in .whl/ (installed to /tmp/site first).
set -u
START=$(date +%s)
BUDGET_S=${BUDGET_S:-540}
OUT=${OUT:-build/gpu_session}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
LOG="$OUT/gpu_checks.log"
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
# DataLoader workers hand batches over in shared memory; a VM's small /dev/shm would kill them.
df -h /dev/shm | tail -1
mount -o remount,size=32G /dev/shm 2>/dev/null && df -h /dev/shm | tail -1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
step() { echo; echo "== [$(( $(date +%s) - START )) s] $*"; }

step "GPU tests"
timeout 300 $PY -m pytest -q -m gpu -p no:cacheprovider tests
step "model latency on CUDA"
timeout 90 $PY bench/model_latency.py --device cuda
step "agent backends on CUDA (TensorRT engines are built here when TensorRT is installed)"
$PY -c "import tensorrt; print('tensorrt', tensorrt.__version__)" || echo "no TensorRT on this machine"
timeout 240 $PY bench/backend_latency.py --device cuda
step "training throughput on CUDA (bf16 autocast, batch 64)"
timeout 90 $PY bench/train_throughput.py --device cuda --batch-size 64 --steps 10 --models mad_small
step "replay of demo/recorded.h5 on CUDA"
MAD_MODEL__DEVICE=cuda timeout 60 $PY -m agent.cli replay demo/recorded.h5
step "ONNX export replayed on CUDA (ONNX Runtime's CUDA provider where installed)"
$PY -m train.cli export --checkpoint models/mad_small.safetensors --format onnx --out /tmp/mad_small.onnx \
  && { MAD_MODEL__DEVICE=cuda timeout 60 $PY -m agent.cli replay demo/recorded.h5 --model /tmp/mad_small.onnx \
       || MAD_MODEL__DEVICE=cpu timeout 60 $PY -m agent.cli replay demo/recorded.h5 --model /tmp/mad_small.onnx; }
if [ "${FIT:-1}" = 0 ]; then step "done (FIT=0: no training step)"; ls -la "$OUT"; exit 0; fi
FIT_CONFIG=${FIT_CONFIG:-configs/mad_small_step3.yaml}
FIT_INIT=${FIT_INIT:-runs/mad_small/mad_small.safetensors}
step "fit $FIT_CONFIG from $FIT_INIT for $(( $(left) - 40 )) s"
timeout --signal=INT $(( $(left) - 40 )) $PY -m train.cli fit --config "$FIT_CONFIG" --device "${FIT_DEVICE:-cuda}" \
  --num-workers "${FIT_WORKERS:-14}" --init-from "$FIT_INIT" --out /tmp/gpu_run > "$OUT/fit.log" 2>&1
echo "fit exit $?"
tail -c 3000 "$OUT/fit.log" | tr '\r' '\n' | grep -v "it/s\]$\|batch/s" | tail -25
for f in mad_small.safetensors mad_small.json metrics.csv test_metrics.json; do
  [ -f "/tmp/gpu_run/$f" ] && cp "/tmp/gpu_run/$f" "$OUT/"
done
if [ ! -f "$OUT/mad_small.safetensors" ]; then  # stopped early: the best epoch so far
  cp /tmp/gpu_run/stages/mad_small_ce_best.safetensors /tmp/gpu_run/stages/mad_small_ce_best.json \
     /tmp/gpu_run/metrics.csv "$OUT/" 2>/dev/null
fi
step "done"; ls -la "$OUT"
