"""Per-frame annotation in the NVISII-style JSON of the DOPE reference.

One entry per target instance, in segmentation-id order, with the pose of the mesh's own frame
(metres, quaternion xyzw, model -> camera) and the projected cuboid built around the class's AABB
centre (`AssetLibrary.cuboid`), 8 corners in DOPE order then the centre.

Targets hidden behind other objects or outside the image are kept with `visibility` 0 (and
`bounding_box_minx_maxx_miny_maxy` = [-1, -1, -1, -1], as in BOP): the trainer filters on
visibility, and keeping them makes every frame list exactly the targets that were placed.

Rounding: positions to 1e-7 m, quaternions to 1e-9, pixels to 1e-5 px, so the JSON stays compact while
the stored projected cuboid matches a projection of the stored pose to well under 0.01 px.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .geometry import projected_cuboid

if TYPE_CHECKING:
    from .assets import AssetLibrary
    from .render import RenderLayers
    from .scene import Instance, SceneSpec

LOCATION_DECIMALS = 7
QUATERNION_DECIMALS = 9
PIXEL_DECIMALS = 5
NOT_VISIBLE_BOX = [-1, -1, -1, -1]


def annotate(scene: "SceneSpec", layers: "RenderLayers", assets: "AssetLibrary") -> dict:
    """The JSON-ready annotation of one rendered frame (see the module docstring)."""
    counts = np.bincount(layers.instance_id.ravel(), minlength=max(i.segmentation_id for i in scene.instances) + 1)
    camera = scene.intrinsics.to_json()
    camera["intrinsics"] = {k: _round(v, PIXEL_DECIMALS) for k, v in camera["intrinsics"].items()}
    objects = [_annotate_target(t, scene, layers, assets, int(counts[t.segmentation_id])) for t in scene.targets]
    return {"camera_data": camera, "objects": objects}


def _annotate_target(
    target: "Instance", scene: "SceneSpec", layers: "RenderLayers", assets: "AssetLibrary", visible: int
) -> dict:
    cuboid = assets.cuboid(target.class_name)
    full = int(layers.full_pixel_counts.get(target.segmentation_id, 0))
    # A few pixels may differ between the visible and the alone pass at silhouette edges; keep <= 1.
    visibility = min(1.0, visible / full) if full > 0 else 0.0
    box = _visible_box(layers.instance_id, target.segmentation_id) if visible else NOT_VISIBLE_BOX
    return {
        "class": target.class_name,
        "name": target.name,
        "segmentation_id": target.segmentation_id,
        "location": _round(target.pose.translation, LOCATION_DECIMALS),
        "quaternion_xyzw": _round(_canonical_quaternion(target.pose.quaternion_xyzw), QUATERNION_DECIMALS),
        "projected_cuboid": _round(projected_cuboid(cuboid, target.pose, scene.intrinsics), PIXEL_DECIMALS),
        "visibility": round(visibility, 6),
        "px_count_visib": visible,
        "px_count_all": full,
        "bounding_box_minx_maxx_miny_maxy": box,
    }


def _visible_box(instance_id: np.ndarray, segmentation_id: int) -> list[int]:
    """[min x, max x, min y, max y] (inclusive pixel indices) of the instance's visible pixels."""
    mask = instance_id == segmentation_id
    columns, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return [int(columns[0]), int(columns[-1]), int(rows[0]), int(rows[-1])]


def _canonical_quaternion(quaternion_xyzw: np.ndarray) -> np.ndarray:
    """q and -q are the same rotation; store the one with w >= 0 so equal poses give equal JSON."""
    return -quaternion_xyzw if quaternion_xyzw[3] < 0 else quaternion_xyzw


def _round(values, decimals: int):
    """Floats (or nested arrays of them) as plain Python lists rounded to `decimals`."""
    return np.round(np.asarray(values, dtype=np.float64), decimals).tolist()
