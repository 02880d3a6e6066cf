#!/usr/bin/env bash
# Runs a built image the two ways users do, offline (--network none), on a tiny job (8 frames of
# 64x64, 4 training steps):
#   1. one node: generate -> train -> model.pt in a mounted /data;
#   2. a simulated SageMaker job (a folder laid out like /opt/ml mounted there, `docker run IMAGE
#      train`), killed with `docker kill` once it has written a checkpoint, then started again: it
#      must resume and finish.
#   bash docker/check-image.sh [IMAGE] [WORK_DIR]     (default dope-stream:cpu, a temporary folder)
# Prints "check-image.sh: ok" at the end; any failure exits non-zero with the container's log.
set -euo pipefail
IMAGE=${1:-dope-stream:cpu}
WORK=${2:-$(mktemp -d /tmp/dope-check.XXXXXX)}
NAME="dope-check-$$"
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
mkdir -p "$WORK"

TINY=(generator=generate-then-train nb_frames=8 width=64 height=64 spp=1 nb_objects=1 nb_distractors=0,1
      frames_per_shard=2 epochs=1 batch_size=2 image_size=64 stages=1 pretrained=false loader_workers=0
      save_every=1 val_fraction=0 amp=false channels_last=false)

fail() { echo "check-image.sh: $1" >&2; [ -f "${2:-}" ] && tail -40 "$2" >&2; exit 1; }

echo "check-image.sh: 1. generate -> train -> model.pt"
options=()
for setting in "${TINY[@]}"; do options+=("--${setting%%=*}" "${setting#*=}"); done
docker run --rm --network none -v "$WORK/data:/data" "$IMAGE" "${options[@]}" >"$WORK/one-node.log" 2>&1 \
    || fail "the one-node run failed" "$WORK/one-node.log"
[ -f "$WORK/data/out/model/model.pt" ] || fail "no /data/out/model/model.pt" "$WORK/one-node.log"
docker run --rm --network none -v "$WORK/data:/data" "$IMAGE" python -c \
    "from trainer.checkpoint import load_model; print('model:', load_model('/data/out/model/model.pt')[1].network)" \
    || fail "model.pt does not load"

echo "check-image.sh: 2. SageMaker job, docker kill after the first checkpoint, restart"
ml="$WORK/opt_ml"
mkdir -p "$ml/input/config"
# 3 epochs (12 steps): the kill must come before the job ends
python3 -c 'import json, sys; print(json.dumps(dict(s.split("=", 1) for s in sys.argv[1:])))' "${TINY[@]}" epochs=3 \
    >"$ml/input/config/hyperparameters.json"
docker run -d --name "$NAME" --network none -v "$ml:/opt/ml" "$IMAGE" train >/dev/null
for _ in $(seq 600); do
    ls "$ml"/checkpoints/train/checkpoints/step-*.pt >/dev/null 2>&1 && break
    [ "$(docker inspect -f '{{.State.Running}}' "$NAME")" = true ] || break
    sleep 0.1
done
docker logs "$NAME" >"$WORK/sagemaker-1.log" 2>&1
ls "$ml"/checkpoints/train/checkpoints/step-*.pt >/dev/null 2>&1 || fail "no checkpoint before the kill" "$WORK/sagemaker-1.log"
docker kill "$NAME" >/dev/null 2>&1 || fail "the job had finished before docker kill" "$WORK/sagemaker-1.log"
docker rm "$NAME" >/dev/null
[ ! -f "$ml/model/model.pt" ] || fail "the job had finished before docker kill" "$WORK/sagemaker-1.log"
docker run --rm --network none -v "$ml:/opt/ml" "$IMAGE" train >"$WORK/sagemaker-2.log" 2>&1 \
    || fail "the restarted job failed" "$WORK/sagemaker-2.log"
grep -q "resumed from" "$WORK/sagemaker-2.log" || fail "the restarted job did not resume" "$WORK/sagemaker-2.log"
[ -f "$ml/model/model.pt" ] && [ ! -f "$ml/output/failure" ] || fail "no model.pt after the restart" "$WORK/sagemaker-2.log"
echo "check-image.sh: ok ($WORK)"
