#!/usr/bin/env bash
# Entry point of the dope-stream images.
#   (no arguments), train, --key value ...   -> python -m dope_app.container (SageMaker starts a
#                                              training job as `docker run IMAGE train`)
#   serve                                    -> refused: these images train, they do not serve
#   anything else                            -> run as a command: `ray start ...`, `dope generate ...`, `bash`
set -euo pipefail
case "${1:-}" in
    "" | train | -*)
        exec python -m dope_app.container "$@"
        ;;
    serve)
        echo "dope-stream images do not serve models; run 'dope infer' with the trained model.pt" >&2
        exit 2
        ;;
    *)
        exec "$@"
        ;;
esac
