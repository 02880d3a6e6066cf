"""Inference stages, each a small module: `decode` (maps -> grouped 2D keypoints), `pnp` (keypoints
-> pose), `detector` (image -> detections, torch or onnxruntime), `evaluate` (ADD/ADD-S), `export`
(ONNX), `overlay`, `inference` (`dope infer`), `demo` (`dope demo`)."""
