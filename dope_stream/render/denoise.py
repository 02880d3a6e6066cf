"""Intel Open Image Denoise (OIDN) for path-traced frames, through the `mitsuba-oidn` package.

OIDN's "RT" filter takes the noisy HDR colour plus two guide images (albedo and shading normal,
both from Mitsuba's `aov` integrator) and keeps edges and textures that the guides show. It needs
uncorrelated per-pixel noise: render with the box pixel filter (a wider filter blurs the noise into
blobs that OIDN takes for detail).
"""

from __future__ import annotations

import numpy as np

from ..errors import DopeError

# "fast" is close to "high" at 4+ spp on 512 px images and about 3x quicker on a CPU.
DEFAULT_QUALITY = "fast"


def denoise_hdr(color: np.ndarray, albedo: np.ndarray, normal: np.ndarray, quality: str = DEFAULT_QUALITY) -> np.ndarray:
    """(H, W, 3) float32 linear HDR colour -> denoised colour of the same shape.

    albedo: (H, W, 3) in [0, 1]; normal: (H, W, 3) unit vectors (any fixed frame), zeros where no
    surface.
    """
    oidn = _import_oidn()
    qualities = {"fast": oidn.Quality.Fast, "balanced": oidn.Quality.Balanced, "high": oidn.Quality.High}
    if quality not in qualities:
        raise DopeError(f"denoise quality '{quality}' is unknown (choose one of: {', '.join(qualities)})")
    return oidn.denoise(
        np.ascontiguousarray(color, dtype=np.float32),
        np.ascontiguousarray(albedo, dtype=np.float32),
        np.ascontiguousarray(normal, dtype=np.float32),
        hdr=True,
        quality=qualities[quality],
    )


def _import_oidn():
    try:
        import mitsuba_oidn
    except ImportError as err:
        raise DopeError(
            f"denoising needs Open Image Denoise ({err}): pip install 'dope-stream[pathtrace]' "
            "(mitsuba-oidn), or turn denoising off with --no-denoise"
        ) from None
    return mitsuba_oidn
