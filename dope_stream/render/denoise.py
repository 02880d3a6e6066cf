"""Intel Open Image Denoise (OIDN) for path-traced frames, through the `mitsuba-oidn` package.

OIDN's "RT" filter takes the noisy HDR colour plus two guide images (albedo and shading normal,
both from Mitsuba's `aov` integrator) and keeps edges and textures that the guides show. It needs
uncorrelated per-pixel noise: render with the box pixel filter (a wider filter blurs the noise into
blobs that OIDN takes for detail).
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import DopeError

# "fast" is close to "high" at 4+ spp on 512 px images and about 3x quicker on a CPU.
DEFAULT_QUALITY = "fast"
QUALITIES = ("fast", "balanced", "high")


def denoise_hdr(
    color: np.ndarray,
    albedo: np.ndarray,
    normal: np.ndarray,
    quality: str = DEFAULT_QUALITY,
    threads: int | None = None,
) -> np.ndarray:
    """(H, W, 3) float32 linear HDR colour -> denoised colour of the same shape.

    albedo: (H, W, 3) in [0, 1]; normal: (H, W, 3) unit vectors (any fixed frame), zeros where no
    surface. threads: run on the CPU with this many threads (None: OIDN's fastest device and its
    shared thread pool, which takes every core).
    """
    oidn = _import_oidn()
    if quality not in QUALITIES:
        raise DopeError(f"denoise quality '{quality}' is unknown (choose one of: {', '.join(QUALITIES)})")
    return oidn.denoise(
        np.ascontiguousarray(color, dtype=np.float32),
        np.ascontiguousarray(albedo, dtype=np.float32),
        np.ascontiguousarray(normal, dtype=np.float32),
        hdr=True,
        quality=getattr(oidn.Quality, quality.capitalize()),
        device=None if threads is None else _cpu_device(threads),
    )


@functools.cache
def _cpu_device(threads: int):
    """One OIDN CPU device per thread count (creating one costs milliseconds and a thread pool)."""
    oidn = _import_oidn()
    device = oidn.Device(oidn.DeviceType.CPU)
    device.num_threads = threads
    device.commit()
    return device


def _import_oidn():
    try:
        import mitsuba_oidn
    except ImportError as err:
        raise DopeError(
            f"denoising needs Open Image Denoise ({err}): pip install 'dope-stream[pathtrace]' "
            "(mitsuba-oidn), or turn denoising off with --no-denoise"
        ) from None
    return mitsuba_oidn
