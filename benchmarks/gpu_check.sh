#!/usr/bin/env bash
# GPU check (issue 15, item 4): the GPU paths measured on a machine with NVIDIA GPUs, in at most
# 8 minutes after the install (each step has a time limit; the limits add up to 480 s). Safe on a
# fresh machine holding only this repository: it runs `bash install.sh` first when the packages are
# missing (PyPI and Debian's packages only), writes only into a temporary folder, and prints the
# figures of each step:
#   1. the GPUs (nvidia-smi) and torch's CUDA;
#   2. one raster renderer actor per GPU on NVIDIA EGL: the OpenGL renderer each actor got (llvmpipe
#      means the NVIDIA EGL driver is missing; in a container NVIDIA_DRIVER_CAPABILITIES must include
#      graphics), then benchmarks/bench_stream.py --gpu (frames/s of the actors, Ray's overhead);
#   3. the path tracer's CUDA variant: `dope generate --renderer pathtrace --pathtrace.variant
#      cuda_ad_rgb`, steady images/s from a short and a long run;
#   4. benchmarks/bench_train.py --device cuda: training steps of `light` and `dope`, images/s;
#   5. a short `dope train --stream` (benchmarks/bench_train.py --stream runs the trainer's loop on a
#      live stream, one renderer actor per GPU): training images/s and the trainer's wait share.
#
#     bash benchmarks/gpu_check.sh [--dry-run]
#
# --dry-run prints the steps and checks what a CPU can (the benchmark scripts compile, the stream
# config loads) without running them. Without an NVIDIA GPU the check stops at once: one line on
# stderr, exit status 2. A failing step is reported with its exit status; the others still run.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
case "${1:-}" in
    "") ;;
    --dry-run) DRY_RUN=1 ;;
    *) echo "gpu_check.sh: unknown option '$1' (usage: bash benchmarks/gpu_check.sh [--dry-run])" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}

if [ "$DRY_RUN" = 0 ]; then
    if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q "^GPU "; then
        echo "gpu_check.sh: no NVIDIA GPU here (nvidia-smi lists none); run it on a GPU machine (--dry-run shows the steps)" >&2
        exit 2
    fi
    if ! "$PYTHON" -c "import torch, cv2, moderngl, mitsuba, ray, dope_stream" 2>/dev/null; then
        echo "== install: bash install.sh"
        bash install.sh
    fi
fi

WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

step() {  # step NAME LIMIT_S COMMAND...: run COMMAND, killed after LIMIT_S, and report how it ended
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most $limit s): $*"
    if [ "$DRY_RUN" = 1 ]; then
        return 0
    fi
    local start=$SECONDS status=0
    timeout "$limit" "$@" || status=$?
    echo "== $name: exit status $status after $((SECONDS - start)) s"
}

# The stream of the last step: 512x512 with the generation benchmark's 10 targets + 20 distractors.
cat > "$WORK/stream.yaml" <<EOF
out: $WORK/stream
nb_frames: 4000
width: 512
height: 512
nb_objects: 10
nb_distractors: 20
ray: local
scene: flying
actor_gpus: 1.0
EOF
"$PYTHON" -c "import sys; from dope_stream.config import GenerateConfig; GenerateConfig.load(sys.argv[1])" "$WORK/stream.yaml"
"$PYTHON" -m py_compile benchmarks/bench_stream.py benchmarks/bench_train.py

step "GPUs" 10 nvidia-smi -L
step "torch CUDA" 30 "$PYTHON" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, \
[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])"

step "EGL renderer per actor" 50 "$PYTHON" - <<'EOF'
import moderngl
import ray

ray.init(include_dashboard=False, log_to_driver=False)


@ray.remote(num_gpus=1)
def gl_renderer() -> str:
    context = moderngl.create_standalone_context(backend="egl", require=330)
    return f"{context.info['GL_VENDOR']} / {context.info['GL_RENDERER']}"


renderers = ray.get([gl_renderer.remote() for _ in range(int(ray.cluster_resources().get("GPU", 0)))])
for gpu, renderer in enumerate(renderers):
    print(f"actor {gpu}: {renderer}")
if any("llvmpipe" in renderer.lower() for renderer in renderers):
    raise SystemExit("EGL fell back to llvmpipe: the NVIDIA EGL driver is missing (containers: NVIDIA_DRIVER_CAPABILITIES=all)")
EOF
step "raster actors, one per GPU" 90 "$PYTHON" benchmarks/bench_stream.py --gpu --frames 96 --repeats 1

# Steady rate from a short and a long run: both pay process start-up, asset loading and Dr.Jit's
# kernel compilation.
step "path tracer (cuda_ad_rgb)" 100 "$PYTHON" - "$WORK" <<'EOF'
import subprocess
import sys
import time


def generate_s(frames: int) -> float:
    command = [sys.executable, "-m", "dope_app.cli", "generate", "--renderer", "pathtrace", "--pathtrace.variant",
               "cuda_ad_rgb", "--scene", "flying", "--spp", "16", "--nb_objects", "10", "--nb_distractors", "20", "--nb_frames", str(frames),
               "--out", f"{sys.argv[1]}/pathtrace{frames}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


short, long = generate_s(8), generate_s(40)
print(f"cuda_ad_rgb 512x512 spp 16 denoised: {32 / (long - short):.1f} images/s steady "
      f"(8 frames {short:.1f} s, 40 frames {long:.1f} s)")
EOF

step "training steps on CUDA" 80 "$PYTHON" benchmarks/bench_train.py --device cuda --size 400 --batch 32 --rounds 4 --light-per-round 4
# No loader workers: each would be a consumer wanting renderer actors (GPUs) of its own.
step "dope train --stream" 120 "$PYTHON" benchmarks/bench_train.py --stream "$WORK/stream.yaml" --stream-steps 100 --batch 32 --size 400
