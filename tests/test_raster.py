"""The `raster` backend: geometry against independent projections, layers, backgrounds, lighting."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from dope_stream.assets import AssetLibrary, MeshAsset, build_asset_library, load_hdri, load_mesh, load_photo, simplify_mesh
from dope_stream.config import GenerateConfig
from dope_stream.errors import DopeError
from dope_stream.geometry import Intrinsics, Pose, project_points
from dope_stream.render import create_renderer
from dope_stream.render.conventions import environment_direction_to_uv, irradiance_sh9, tonemap_to_srgb8
from dope_stream.scene import Background, Instance, Lighting, Material, SceneSpec

ASSETS = Path(__file__).resolve().parents[1] / "dope_stream" / "assets"
LEVEL_CAMERA = np.diag([1.0, -1.0, -1.0])  # camera looking at the horizon along world -Z
BOX_EXTENT = np.array([0.10, 0.06, 0.04])
K = Intrinsics(fx=150.0, fy=160.0, cx=63.5, cy=61.2, width=128, height=128)


def mesh_asset(mesh: trimesh.Trimesh, key: str) -> MeshAsset:
    return MeshAsset(
        key=key,
        vertices=np.asarray(mesh.vertices, dtype=np.float32),
        normals=np.asarray(mesh.vertex_normals, dtype=np.float32),
        faces=np.asarray(mesh.faces, dtype=np.uint32),
    )


def smooth_environment(height: int = 64, width: int = 128) -> np.ndarray:
    """Low-frequency, asymmetric map: a wrong yaw sign or flipped axis shows up at once."""
    v, u = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")
    red = 0.6 + 0.5 * np.cos(2 * np.pi * u)
    green = 0.5 + 0.4 * np.sin(2 * np.pi * u + 1.0) * np.sin(np.pi * v)
    blue = 0.3 + 0.6 * v
    return np.stack([red, green, blue], axis=2).astype(np.float32)


def split_environment(height: int = 32, width: int = 64) -> np.ndarray:
    """Red where the direction has x > 0, blue where x < 0 (u in (0, 0.5) is +x: see the module)."""
    u = (np.arange(width) + 0.5) / width
    env = np.zeros((height, width, 3), np.float32)
    env[:, u < 0.5, 0] = 2.0
    env[:, u > 0.5, 2] = 2.0
    return env


@pytest.fixture(scope="module")
def library() -> AssetLibrary:
    cracker = load_mesh(ASSETS / "objects" / "003_cracker_box" / "model.obj", "cracker")
    box = trimesh.creation.box(extents=BOX_EXTENT)
    box.unmerge_vertices()  # flat faces
    cube = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
    cube.unmerge_vertices()
    gradient = np.zeros((100, 200, 3), np.uint8)
    gradient[..., 0] = np.linspace(0, 255, 200)[None, :]
    gradient[..., 1] = np.linspace(0, 255, 100)[:, None]
    gradient[..., 2] = 90
    return AssetLibrary(
        meshes={
            "box": mesh_asset(box, "box"),
            "cube": mesh_asset(cube, "cube"),
            "wall": mesh_asset(trimesh.creation.box(extents=(0.4, 0.4, 0.01)), "wall"),
            "sphere": mesh_asset(trimesh.creation.icosphere(subdivisions=4, radius=0.05), "sphere"),
            "cracker": cracker,
            "cracker_simplified": simplify_mesh(cracker, 0.003),
        },
        targets={"box": "box", "cracker": "cracker"},
        hdris={
            "smooth": smooth_environment(),
            "split": split_environment(),
            "uniform": np.ones((16, 32, 3), np.float32),
            "forest": load_hdri(ASSETS / "hdri" / "pmndrs_forest.hdr"),
        },
        backgrounds={"gradient": gradient, "brick": load_photo(ASSETS / "backgrounds" / "skimage_brick.jpg")},
    )


@pytest.fixture(scope="module")
def renderer(library):
    renderer = create_renderer("raster", library)
    yield renderer
    renderer.close()


def instance(mesh_key: str, pose: Pose, seg_id: int, target: bool = True, **kwargs) -> Instance:
    material = kwargs.pop("material", Material())
    return Instance(mesh_key, pose, material, seg_id, mesh_key if target else None, f"{mesh_key}_{seg_id}", **kwargs)


def scene(instances, background=Background("hdri"), spp=1, intrinsics=K, lighting=None) -> SceneSpec:
    lighting = lighting or Lighting("smooth", 0.0, 1.0, LEVEL_CAMERA)
    return SceneSpec(0, intrinsics, tuple(instances), lighting, background, spp)


def test_silhouette_matches_independent_projection(renderer):
    rotation = Rotation.from_euler("xyz", [25, -40, 70], degrees=True).as_matrix()
    pose = Pose(rotation, np.array([0.012, -0.008, 0.45]))
    scale = 1.3
    corners = np.array(trimesh.creation.box(extents=BOX_EXTENT).bounds)  # (2, 3) min, max
    corners = np.array([[x, y, z] for x in corners[:, 0] for y in corners[:, 1] for z in corners[:, 2]])
    uv = project_points(pose.apply(corners * scale), K)
    hull = cv2.convexHull(uv.astype(np.float32))
    # Signed distance of every pixel centre to the projected silhouette (a convex box: the hull).
    distance = np.array([[cv2.pointPolygonTest(hull, (float(u), float(v)), True) for u in range(128)] for v in range(128)])
    decided = np.abs(distance) > 0.02  # centres on the very edge may go either way
    for spp in (1, 4):
        layers = renderer.render(scene([instance("box", pose, 7, scale=scale)], spp=spp))
        mask = layers.instance_id == 7
        np.testing.assert_array_equal(mask[decided], distance[decided] > 0)
        rows, cols = np.nonzero(mask)
        assert np.abs([cols.min() - uv[:, 0].min(), cols.max() - uv[:, 0].max(),
                       rows.min() - uv[:, 1].min(), rows.max() - uv[:, 1].max()]).max() < 1.5
        assert set(np.unique(layers.instance_id)) == {0, 7}


def test_layers_types_and_depth_of_fronto_parallel_face(renderer):
    center = np.array([0.02, -0.015, 0.6])
    outside = instance("cube", Pose(np.eye(3), np.array([1.0, 0.0, 0.5])), 4)  # right of the view
    behind = instance("cube", Pose(np.eye(3), np.array([0.0, 0.0, -0.5])), 5)
    layers = renderer.render(scene([instance("cube", Pose(np.eye(3), center), 3), outside, behind]))
    assert layers.full_pixel_counts == {3: int((layers.instance_id == 3).sum()), 4: 0, 5: 0}
    assert layers.rgb.shape == (128, 128, 3) and layers.rgb.dtype == np.uint8
    assert layers.instance_id.shape == (128, 128) and layers.instance_id.dtype == np.uint16
    assert layers.depth.shape == (128, 128) and layers.depth.dtype == np.float32
    face_center = center - [0.0, 0.0, 0.05]
    u, v = np.round(project_points(face_center[None], K)[0]).astype(int)
    assert layers.instance_id[v, u] == 3
    assert abs(layers.depth[v, u] - 0.55) < 1e-3
    assert np.all(np.abs(layers.depth[layers.instance_id == 3] - 0.55) < 1e-3)  # the whole front face
    assert np.all(layers.depth[layers.instance_id == 0] == 0.0)


def test_nearer_object_wins_and_full_counts(renderer):
    near = instance("cube", Pose(np.eye(3), np.array([-0.03, 0.0, 0.5])), 1)
    far = instance("box", Pose(np.eye(3), np.array([0.02, 0.01, 0.7])), 2)
    layers = renderer.render(scene([far, near]))
    alone_near = renderer.render(scene([near])).instance_id == 1
    alone_far = renderer.render(scene([far])).instance_id == 2
    overlap = alone_near & alone_far
    assert overlap.sum() > 50
    assert np.all(layers.instance_id[overlap] == 1)
    visible = {k: int((layers.instance_id == k).sum()) for k in (1, 2)}
    assert layers.full_pixel_counts == {1: int(alone_near.sum()), 2: int(alone_far.sum())}
    assert layers.full_pixel_counts[1] == visible[1]  # unoccluded
    assert layers.full_pixel_counts[2] == visible[2] + overlap.sum()


def test_half_covered_target_has_half_visibility(renderer):
    target = instance("cube", Pose(np.eye(3), np.array([0.0, 0.0, 0.8])), 1)
    # A wide distractor whose right edge lies on the target's centre line (the camera's x = 0 plane).
    occluder = instance("wall", Pose(np.eye(3), np.array([-0.2, 0.0, 0.4])), 2, target=False)
    layers = renderer.render(scene([target, occluder]))
    assert list(layers.full_pixel_counts) == [1]  # targets only
    visibility = (layers.instance_id == 1).sum() / layers.full_pixel_counts[1]
    assert abs(visibility - 0.5) < 0.05


def test_msaa_keeps_ids_and_depth_exact(renderer, library):
    rng = np.random.default_rng(3)
    instances = [
        instance(key, Pose(Rotation.random(random_state=rng).as_matrix(), np.array([x, y, z])), k + 1, target=k < 2)
        for k, (key, x, y, z) in enumerate(
            [("cracker", -0.03, 0.0, 0.55), ("cracker", 0.05, 0.03, 0.7), ("sphere", 0.0, -0.03, 0.5), ("box", 0.04, -0.05, 0.6)]
        )
    ]
    lighting = Lighting("forest", 30.0, 1.0, LEVEL_CAMERA)
    single = renderer.render(scene(instances, spp=1, lighting=lighting))
    multi = renderer.render(scene(instances, spp=4, lighting=lighting))
    np.testing.assert_array_equal(single.instance_id, multi.instance_id)
    np.testing.assert_array_equal(single.depth, multi.depth)
    assert single.full_pixel_counts == multi.full_pixel_counts
    three = renderer.render(scene(instances, spp=3, lighting=lighting))  # no such MSAA mode: 2 samples
    np.testing.assert_array_equal(single.instance_id, three.instance_id)
    assert not np.array_equal(single.rgb, three.rgb)
    assert not np.array_equal(single.rgb, multi.rgb)  # edges are anti-aliased
    edges = cv2.Canny(single.instance_id.astype(np.uint8) * 40, 10, 20) > 0
    inside = ~cv2.dilate(edges.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    difference = np.abs(single.rgb.astype(int) - multi.rgb.astype(int)).max(axis=2)
    assert np.median(difference[inside]) <= 1  # only edges change


def test_msaa_edges_follow_pixel_coverage(renderer):
    """A cube seen face on (only its front face is visible) in a uniform environment: one flat
    colour over one flat colour. With 4 samples the colour of an edge pixel tells how much of it the
    face covers (the face's area fraction, computed here by supersampling its projection)."""
    spin = Rotation.from_euler("z", 23, degrees=True).as_matrix()
    cube = instance("cube", Pose(spin, np.array([0.0, 0.0, 0.5])), 1, material=Material(color=(0.3, 0.3, 0.3)))
    face = np.array([[x, y, -0.05] for x, y in ((-0.05, -0.05), (0.05, -0.05), (0.05, 0.05), (-0.05, 0.05))])
    polygon = project_points(Pose(spin, np.array([0.0, 0.0, 0.5])).apply(face), K)
    steps = (np.arange(8) + 0.5) / 8 - 0.5  # 8x8 points per pixel, around its centre
    v, u = np.mgrid[0:128, 0:128]
    points = np.stack(np.broadcast_arrays(u[..., None, None] + steps, v[..., None, None] + steps[:, None]), -1)
    edges = np.roll(polygon, -1, axis=0) - polygon  # inside a convex polygon: on one side of every edge
    cross = edges[:, 0] * (points[..., None, 1] - polygon[:, 1]) - edges[:, 1] * (points[..., None, 0] - polygon[:, 0])
    coverage = (np.all(cross > 0, axis=-1) | np.all(cross < 0, axis=-1)).mean(axis=(2, 3))
    errors = {}
    for spp in (1, 4):
        layers = renderer.render(scene([cube], spp=spp, lighting=Lighting("uniform", 0.0, 1.0, LEVEL_CAMERA)))
        rgb = layers.rgb[..., 0].astype(float)
        face_color, background_color = np.median(rgb[coverage == 1]), np.median(rgb[coverage == 0])
        alpha = (rgb - background_color) / (face_color - background_color)
        edge = (coverage > 0.1) & (coverage < 0.9)
        errors[spp] = np.abs(alpha[edge] - coverage[edge]).mean()
    assert errors[4] < 0.15 and errors[4] < errors[1] / 2, errors  # 4 samples: ~0.13, as real MSAA


def test_photo_background_covers_frame(renderer):
    layers = renderer.render(scene([], Background("photo", "gradient")))
    # 200x100 photo covering 128x128: scaled by 1.28, the central 100x100 photo pixels are shown.
    photo = renderer.assets.backgrounds["gradient"]
    expected = cv2.resize(photo[:, 50:150], (128, 128), interpolation=cv2.INTER_AREA)
    assert np.abs(layers.rgb.astype(int) - expected.astype(int)).mean() < 2.0
    assert not layers.instance_id.any() and not layers.depth.any()
    with_box = renderer.render(scene([instance("cube", Pose(np.eye(3), np.array([0, 0, 0.5])), 1)],
                                     Background("photo", "gradient")))
    background = with_box.instance_id == 0
    assert np.abs(with_box.rgb[background].astype(int) - expected[background].astype(int)).mean() < 2.0


def test_environment_background_follows_documented_mapping(renderer, library):
    tilt = LEVEL_CAMERA @ Rotation.from_euler("zx", [10, -35], degrees=True).as_matrix()
    lighting = Lighting("smooth", 75.0, 1.7, tilt)
    layers = renderer.render(scene([], lighting=lighting))
    v, u = np.mgrid[0:128, 0:128].astype(np.float64)
    directions = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], axis=2).reshape(-1, 3)
    uv = environment_direction_to_uv(directions, lighting)
    env = library.hdris["smooth"]
    map_x = (uv[:, 0] * env.shape[1] - 0.5).reshape(128, 128).astype(np.float32)
    map_y = (uv[:, 1] * env.shape[0] - 0.5).reshape(128, 128).astype(np.float32)
    wrapped = np.concatenate([env, env[:, :1]], axis=1)  # bilinear across the longitude seam
    radiance = cv2.remap(wrapped, np.mod(map_x, env.shape[1]), map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    expected = tonemap_to_srgb8(radiance * lighting.intensity)
    assert np.abs(layers.rgb.astype(int) - expected.astype(int)).max() <= 3


def test_lighting_rotates_with_environment_yaw(renderer):
    sphere = instance("sphere", Pose(np.eye(3), np.array([0.0, 0.0, 0.4])), 1,
                      material=Material(roughness=0.9, specular=0.2))
    center_u = project_points(np.array([[0.0, 0.0, 0.4]]), K)[0, 0]
    right_rim = np.zeros((128, 128), bool)
    right_rim[:, int(center_u + 0.6 * K.fx * 0.05 / 0.4):] = True  # normals facing world +x
    colors = {}
    for yaw in (0.0, 180.0):
        layers = renderer.render(scene([sphere], lighting=Lighting("split", yaw, 0.5, LEVEL_CAMERA)))
        on_right = (layers.instance_id == 1) & right_rim
        colors[yaw] = layers.rgb[on_right].astype(float).mean(axis=0)
    # Level camera: image right = world +x, where the map is red; rotating it by 180 deg makes it blue.
    assert colors[0.0][0] > colors[0.0][2] + 60
    assert colors[180.0][2] > colors[180.0][0] + 60
    # Yaw +90 deg turns the map's +x (red) half to world -z, behind the sphere as seen from the
    # camera (which looks along world -z): the face towards the camera turns blue; -90 deg: red.
    u, v = np.round(project_points(np.array([[0.0, 0.0, 0.35]]), K)[0]).astype(int)
    front = {yaw: renderer.render(scene([sphere], lighting=Lighting("split", yaw, 0.5, LEVEL_CAMERA))).rgb[v, u]
             for yaw in (90.0, -90.0)}
    assert int(front[90.0][2]) > int(front[90.0][0]) + 60
    assert int(front[-90.0][0]) > int(front[-90.0][2]) + 60


def test_white_diffuse_object_in_uniform_light(renderer):
    sphere = instance("sphere", Pose(np.eye(3), np.array([0.0, 0.0, 0.4])), 1,
                      material=Material(color=(0.5, 0.5, 0.5), roughness=1.0, specular=0.0))
    layers = renderer.render(scene([sphere], lighting=Lighting("uniform", 0.0, 1.0, LEVEL_CAMERA)))
    u, v = np.round(project_points(np.array([[0.0, 0.0, 0.35]]), K)[0]).astype(int)
    # Irradiance / pi of a uniform unit environment is 1: radiance = albedo (+ a little glossy bias).
    expected = tonemap_to_srgb8(np.array([0.5]))[0]
    assert np.all(np.abs(layers.rgb[v, u].astype(int) - int(expected)) <= 4)


def test_irradiance_sh9_matches_analytic_cosine_lobe():
    height, width = 64, 128
    theta = (np.arange(height) + 0.5) / height * np.pi
    sky = np.repeat(np.maximum(np.cos(theta), 0.0)[:, None, None], width, axis=1).repeat(3, axis=2)
    sh = irradiance_sh9(sky.astype(np.float32))
    # Radiance cos(theta) on the upper hemisphere: irradiance at +Y is 2 pi / 3, i.e. 2/3 after / pi;
    # The SH9 basis at n = +Y: Y00, the y-linear term and the two l = 2 terms that do not vanish.
    up = sh[0] * 0.282095 + sh[1] * 0.488603 + sh[6] * 0.315392 * -1.0 + sh[8] * 0.546274 * -1.0
    np.testing.assert_allclose(up, 2 / 3, atol=0.03)
    uniform = irradiance_sh9(np.ones((height, width, 3), np.float32))
    np.testing.assert_allclose(uniform[0] * 0.282095, 1.0, atol=1e-3)
    np.testing.assert_allclose(uniform[1:], 0.0, atol=1e-3)


def test_photo_texture_replaces_mesh_texture(renderer):
    pose = Pose(np.eye(3), np.array([0.0, 0.0, 0.35]))
    plain = renderer.render(scene([instance("cracker", pose, 1)]))
    bricked = renderer.render(scene([instance("cracker", pose, 1, material=Material(texture_key="brick"))]))
    np.testing.assert_array_equal(plain.instance_id, bricked.instance_id)
    mask = plain.instance_id == 1
    assert np.abs(plain.rgb[mask].astype(int) - bricked.rgb[mask].astype(int)).mean() > 20


def test_simplified_mesh_keeps_vertices_cuboid_silhouette_and_texture(renderer, library):
    full, simplified = library.meshes["cracker"], library.meshes["cracker_simplified"]
    assert len(simplified.faces) < len(full.faces) / 10
    assert simplified.vertices is full.vertices and simplified.uv is full.uv  # indices change, nothing else
    np.testing.assert_array_equal(simplified.cuboid.keypoints(), full.cuboid.keypoints())
    assert simplify_mesh(full, 0.0) is full
    # Closest sampled distance, a large image: the worst case for a coarser silhouette or a torn texture.
    close = Intrinsics(fx=450.0, fy=450.0, cx=159.5, cy=159.5, width=320, height=320)
    pose = Pose(Rotation.from_euler("xyz", [20, -35, 15], degrees=True).as_matrix(), np.array([0.0, 0.0, 0.4]))
    pose = Pose(pose.rotation, pose.translation - pose.rotation @ full.cuboid.center)  # box centre on the axis
    lighting = Lighting("forest", 30.0, 1.0, LEVEL_CAMERA)
    layers = {key: renderer.render(scene([instance(key, pose, 1)], intrinsics=close, lighting=lighting))
              for key in ("cracker", "cracker_simplified")}
    masks = {key: layer.instance_id == 1 for key, layer in layers.items()}
    both = masks["cracker"] & masks["cracker_simplified"]
    assert both.sum() > 10000
    assert both.sum() / (masks["cracker"] | masks["cracker_simplified"]).sum() > 0.98
    difference = np.abs(layers["cracker"].rgb.astype(int) - layers["cracker_simplified"].rgb.astype(int)).max(axis=2)
    # Printed artwork and highlights stay in place: only interpolated shading shifts a little.
    assert np.median(difference[both]) <= 5 and np.mean(difference[both] > 40) < 0.02


def test_asset_library_simplifies_meshes_by_mesh_error():
    def library_for(mesh_error: float) -> AssetLibrary:
        return build_asset_library(GenerateConfig(mesh_error=mesh_error, distractors=None, backgrounds=None))

    full, simplified = library_for(0.0), library_for(0.003)
    assert full.meshes.keys() == simplified.meshes.keys()
    target = full.targets["003_cracker_box"]
    assert len(simplified.meshes[target].faces) < len(full.meshes[target].faces) / 10
    np.testing.assert_array_equal(simplified.cuboid("003_cracker_box").keypoints(), full.cuboid("003_cracker_box").keypoints())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"spp": 0}, "spp"),
        ({"mesh": "missing"}, "unknown mesh 'missing'"),
        ({"background": Background("photo", "nowhere")}, "unknown background photo 'nowhere'"),
        ({"lighting": Lighting("nowhere", 0.0, 1.0)}, "unknown environment map 'nowhere'"),
        ({"texture": "nowhere"}, "unknown background photo 'nowhere'"),
        ({"duplicate": True}, "not unique"),
    ],
)
def test_bad_scene_raises_dope_error(renderer, change, message):
    material = Material(texture_key=change.get("texture"))
    cube = instance(change.get("mesh", "cube"), Pose(np.eye(3), np.array([0, 0, 0.5])), 1, material=material)
    spec = scene(
        [cube, cube] if change.get("duplicate") else [cube],
        background=change.get("background", Background("hdri")),
        spp=change.get("spp", 1),
        lighting=change.get("lighting"),
    )
    with pytest.raises(DopeError, match=message):
        renderer.render(spec)
