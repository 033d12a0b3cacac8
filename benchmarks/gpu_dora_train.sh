#!/usr/bin/env bash
# The GPU run of a DoRA-ICM task set (issue 26), as run on the lent H200 (device tool):
# the carried folder .devdata holds the task's training split (CamVid train re-saved as
# JPEG q95 to fit the 64 MiB transfer, labels as they are) and the backbone's ImageNet
# weights file; .whl holds compressai and constriction wheels for the machine's Python.
# Writes $OUT/run/{train_config.json,log.csv,slim.pt} (slim.pt: the model without the
# optimiser state, to fit the 16 MiB return limit) and $OUT/train.log.
set -euo pipefail
TASK=${TASK:-semseg}
MINUTES=${MINUTES:-6.5}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
nvidia-smi -L
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, torch.cuda.get_device_name())"
if [ -n "${RESUME:-}" ]; then  # continue a run that came back (its folder carried in .devdata/run)
    cp -r .devdata/run "$OUT/run"
    python3 -m icmcodec.methods.dora_icm.train --run "$OUT/run" --resume --steps "$RESUME" --time-budget "$MINUTES" \
        --threads 12 --backbone-weights .devdata/efficientnet-lite0-57934424.pth --device cuda --save-every 1000 \
        2>&1 | tee "$OUT/train.log"
else
python3 -m icmcodec.methods.dora_icm.train --task "$TASK" --data .devdata/camvid --run "$OUT/run" \
    --steps 40000 --batch 24 --crop 384 --threads 12 --time-budget "$MINUTES" --save-every 1000 \
    --backbone-weights .devdata/efficientnet-lite0-57934424.pth --device cuda \
    --config '{"levels": 6, "lambdas": [0.2, 0.5, 1.2, 3, 8, 20]}' 2>&1 | tee "$OUT/train.log"
fi
python3 - <<'PY'
import os, torch
run = os.path.join(os.environ["OUT"], "run")
ck = torch.load(os.path.join(run, "last.pt"), map_location="cpu", weights_only=False)
torch.save({k: ck[k] for k in ("step", "method", "config", "model")}, os.path.join(run, "slim.pt"))
os.remove(os.path.join(run, "last.pt"))
print("slim.pt at step", ck["step"])
PY
