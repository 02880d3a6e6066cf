"""`raster` backend: OpenGL through EGL with moderngl (Mesa llvmpipe on a CPU, NVIDIA EGL on a GPU).

Conventions: `dope_stream.render.conventions` (the shaders implement its formulas).

Layers: one single-sampled pass shades colour and writes exact instance ids and depth (pixel
centres); the background follows, writing colour only (background ids and depths stay the cleared 0).
With `scene.spp` > 1 (rounded down to a power of two the driver offers), a multisampled pass
writes instance ids per sample and a resolve (`ANTIALIAS_FRAGMENT`) gives each sample the colour
shaded at the pixel centre of the surface it sees (this pixel's or a neighbour's): MSAA's edges at
the price of one shading pass. The full pixel count of a target whose screen box meets no other
instance's is its visible count; otherwise an occlusion query counts a lone draw of it at a
constant depth (so each covered pixel passes the depth test once).

Cost on llvmpipe (a CPU): triangles (meshes are simplified at load, `assets.simplify_mesh`; back
faces of closed meshes are culled; instances outside the view are skipped) and shaded fragments
(drawn nearest first, so the early depth test skips most hidden ones; llvmpipe has none with
multisampling, hence no shading there). `benchmarks/bench_raster.py` measures it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DopeError
from ..geometry import project_points
from .protocol import RenderLayers
from .conventions import (
    NEAR_M,
    environment_from_camera,
    fallback_uv,
    irradiance_sh9,
    photo_cover_transform,
    projection_matrix,
)
from .raster_shaders import (
    BACKGROUND_VERTEX,
    ENVIRONMENT_BACKGROUND_FRAGMENT,
    GEOMETRY_FRAGMENT,
    GEOMETRY_VERTEX,
    OBJECT_FRAGMENT,
    OBJECT_VERTEX,
    PHOTO_BACKGROUND_FRAGMENT,
    antialias_fragment,
)

if TYPE_CHECKING:
    import moderngl

    from ..assets import AssetLibrary, MeshAsset
    from ..geometry import Intrinsics
    from ..scene import Instance, SceneSpec

log = logging.getLogger(__name__)

GL_SRGB8 = 0x8C41  # colour textures are sRGB-encoded: the sampler decodes them to linear


# --- GPU resources -------------------------------------------------------------------------------


def _image_box(intrinsics: "Intrinsics") -> np.ndarray:
    """The image's area in pixel coordinates (pixel centres are integers)."""
    return np.array([-0.5, -0.5, intrinsics.width - 0.5, intrinsics.height - 0.5])


def _overlapping(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(N, M) whether screen boxes (u_min, v_min, u_max, v_max; infinite bounds: unbounded) meet."""
    return np.all((boxes[:, None, :2] <= others[None, :, 2:]) & (others[None, :, :2] <= boxes[:, None, 2:]), axis=2)


def _screen_boxes(corners: np.ndarray, intrinsics: "Intrinsics") -> np.ndarray:
    """(N, 4) boxes (u_min, v_min, u_max, v_max) around N projected AABBs ((N, 8, 3) camera-frame
    corners); unbounded where an AABB reaches behind the near plane (its projection is)."""
    boxes = np.tile([-np.inf, -np.inf, np.inf, np.inf], (len(corners), 1))
    bounded = corners[:, :, 2].min(axis=1) > NEAR_M
    if bounded.any():
        uv = project_points(corners[bounded].reshape(-1, 3), intrinsics).reshape(-1, 8, 2)
        boxes[bounded] = np.concatenate([uv.min(axis=1), uv.max(axis=1)], axis=1)
    return boxes


def _gl_matrix(matrix: np.ndarray) -> bytes:
    """Row-major numpy matrix -> the column-major float32 bytes GLSL expects."""
    return np.ascontiguousarray(np.asarray(matrix, dtype=np.float32).T).tobytes()




def _is_closed(mesh: "MeshAsset") -> bool:
    """Watertight with outward, consistent winding (after merging vertices split at UV seams)."""
    import trimesh

    merged = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)
    return bool(merged.is_watertight and merged.is_winding_consistent and merged.volume > 0)


@dataclass
class _GpuMesh:
    shaded: "moderngl.VertexArray"  # all attributes, for the colour pass
    geometry: "moderngl.VertexArray"  # positions only: sample ids and pixel counts
    texture: "moderngl.Texture"
    closed: bool  # watertight, consistently wound outwards: back faces may be culled
    corners: np.ndarray  # (8, 3) AABB corners in the model frame, for screen boxes


@dataclass
class _GpuEnvironment:
    texture: "moderngl.Texture"  # RGB32F equirect with its mip chain (glossy prefiltering)
    irradiance_sh: bytes  # 9 vec3 for the shader
    width: int


@dataclass
class _Framebuffers:
    """Render targets for one (width, height, samples); made once and reused for every frame."""

    exact: "moderngl.Framebuffer"  # [colour, id, depth] single-sampled
    exact_background: "moderngl.Framebuffer"  # [colour] with exact's depth: the background's pass
    colors: "moderngl.Texture"  # exact's colour attachment
    ids: "moderngl.Texture"  # exact's id attachment
    counting: "moderngl.Framebuffer"  # depth only: lone-target pixel counts
    multisampled: "moderngl.Framebuffer | None"  # [id per sample] when samples > 1
    sample_ids: "moderngl.Texture | None"  # multisampled's attachment
    antialiased: "moderngl.Framebuffer | None"  # [colour]: the anti-aliased image when samples > 1


class RasterRenderer:
    """Renders `SceneSpec`s with OpenGL; create once per worker, then call `render` per frame."""

    def __init__(self, assets: "AssetLibrary"):
        import moderngl

        try:
            self.ctx = moderngl.create_standalone_context(backend="egl", require=330)
        except Exception as err:  # moderngl raises plain Exceptions for EGL/driver failures
            raise DopeError(
                f"renderer 'raster': cannot create an OpenGL 3.3 context through EGL ({err}); "
                "install the EGL/Mesa libraries (apt-get install libegl1 libgl1-mesa-dri) or use a GPU driver"
            ) from None
        self.assets = assets
        self.shade_program = self.ctx.program(vertex_shader=OBJECT_VERTEX, fragment_shader=OBJECT_FRAGMENT)
        self.geometry_program = self.ctx.program(vertex_shader=GEOMETRY_VERTEX, fragment_shader=GEOMETRY_FRAGMENT)
        self.background_programs = {
            "hdri": self.ctx.program(vertex_shader=BACKGROUND_VERTEX, fragment_shader=ENVIRONMENT_BACKGROUND_FRAGMENT),
            "photo": self.ctx.program(vertex_shader=BACKGROUND_VERTEX, fragment_shader=PHOTO_BACKGROUND_FRAGMENT),
        }
        self.backgrounds = {mode: self.ctx.vertex_array(program, []) for mode, program in self.background_programs.items()}
        self.antialias_passes: dict[int, moderngl.VertexArray] = {}  # by sample count, made on first use
        for program in (self.shade_program, self.background_programs["hdri"]):
            program["environment"].value = 1
        self.shade_program["albedo_map"].value = 0
        self.background_programs["photo"]["photo"].value = 2
        self.white = self._color_texture(np.full((1, 1, 3), 255, np.uint8))
        self.meshes = {key: self._upload_mesh(mesh) for key, mesh in assets.meshes.items()}
        self.environments = {key: self._upload_environment(hdri) for key, hdri in assets.hdris.items()}
        self.photos: dict[str, moderngl.Texture] = {}  # uploaded on first use
        self.framebuffers: dict[tuple[int, int, int], _Framebuffers] = {}
        self.queries: list[moderngl.Query] = []
        self.max_samples = max(1, self.ctx.max_samples)
        # Image rows grow with window y (see projection_matrix), a mirror of OpenGL's usual view:
        # outward faces that are counter-clockwise on screen in a y-up view arrive clockwise here.
        self.ctx.front_face = "cw"
        self.warned_samples = False

    # --- uploads (once per asset) ---

    def _color_texture(self, image: np.ndarray) -> "moderngl.Texture":
        height, width = image.shape[:2]
        texture = self.ctx.texture((width, height), 3, np.ascontiguousarray(image).tobytes(), internal_format=GL_SRGB8)
        texture.build_mipmaps()
        # Bilinear within the nearest mip level: blending two levels costs llvmpipe ~5 % of a frame
        # for a difference no one sees in a minified texture.
        texture.filter = (self.ctx.LINEAR_MIPMAP_NEAREST, self.ctx.LINEAR)
        return texture

    def _upload_mesh(self, mesh: "MeshAsset") -> _GpuMesh:
        count = len(mesh.vertices)
        uv = mesh.uv if mesh.uv is not None else fallback_uv(mesh.vertices)
        uv = np.column_stack([uv[:, 0], 1.0 - uv[:, 1]])  # OBJ UVs start at the image's bottom row
        colors = mesh.vertex_colors / 255.0 if mesh.vertex_colors is not None else np.ones((count, 3))
        interleaved = np.hstack([mesh.vertices, mesh.normals, uv, colors]).astype(np.float32)
        vbo = self.ctx.buffer(interleaved.tobytes())
        ibo = self.ctx.buffer(np.ascontiguousarray(mesh.faces, dtype=np.uint32).tobytes())
        layout = (vbo, "3f 3f 2f 3f", "in_position", "in_normal", "in_uv", "in_color")
        shaded = self.ctx.vertex_array(self.shade_program, [layout], index_buffer=ibo, index_element_size=4)
        positions_only = (vbo, "3f 32x", "in_position")  # skip normal, uv, colour (8 floats)
        geometry = self.ctx.vertex_array(self.geometry_program, [positions_only], index_buffer=ibo, index_element_size=4)
        texture = self._color_texture(mesh.texture) if mesh.texture is not None else self.white
        return _GpuMesh(shaded, geometry, texture, _is_closed(mesh), mesh.cuboid.keypoints()[:8])

    def _upload_environment(self, hdri: np.ndarray) -> _GpuEnvironment:
        height, width = hdri.shape[:2]
        # RGBA half floats: llvmpipe samples them faster than RGB32F (~4 % of a frame). Their 11-bit
        # mantissas are far finer than a display level; radiance above 65504 (a direct sun) is clipped.
        rgba = np.concatenate([np.minimum(hdri, 65504.0), np.ones((height, width, 1))], axis=2).astype(np.float16)
        texture = self.ctx.texture((width, height), 4, rgba.tobytes(), dtype="f2")
        texture.build_mipmaps()
        # Glossy lookups use one mip level per material (its roughness): blending two float levels
        # would cost llvmpipe ~10 % of a frame. The background samples level 0 only.
        texture.filter = (self.ctx.LINEAR_MIPMAP_NEAREST, self.ctx.LINEAR)
        texture.repeat_x, texture.repeat_y = True, False  # longitude wraps, latitude does not
        return _GpuEnvironment(texture, irradiance_sh9(hdri).astype(np.float32).tobytes(), width)

    def _photo(self, key: str, what: str) -> "moderngl.Texture":
        if key not in self.photos:
            if key not in self.assets.backgrounds:
                raise DopeError(f"{what}: unknown background photo '{key}' (not in the asset library)")
            self.photos[key] = self._color_texture(self.assets.backgrounds[key])
        return self.photos[key]

    def _framebuffers(self, width: int, height: int, samples: int) -> _Framebuffers:
        key = (width, height, samples)
        if key not in self.framebuffers:
            size = (width, height)
            color = self.ctx.texture(size, 4)
            ids = self.ctx.texture(size, 1, dtype="u2")
            depth = self.ctx.texture(size, 1, dtype="f4")
            depth_buffer = self.ctx.depth_renderbuffer(size)
            multisampled = sample_ids = antialiased = None
            if samples > 1:
                sample_ids = self.ctx.texture(size, 1, dtype="u2", samples=samples)
                multisampled = self.ctx.framebuffer([sample_ids], self.ctx.depth_renderbuffer(size, samples=samples))
                antialiased = self.ctx.framebuffer([self.ctx.texture(size, 4)])
            self.framebuffers[key] = _Framebuffers(
                exact=self.ctx.framebuffer([color, ids, depth], depth_buffer),
                exact_background=self.ctx.framebuffer([color], depth_buffer),
                colors=color,
                ids=ids,
                counting=self.ctx.framebuffer(depth_attachment=depth_buffer),
                multisampled=multisampled,
                sample_ids=sample_ids,
                antialiased=antialiased,
            )
        return self.framebuffers[key]

    # --- per frame ---

    def render(self, scene: "SceneSpec") -> RenderLayers:
        self._check(scene)
        intrinsics = scene.intrinsics
        width, height = intrinsics.width, intrinsics.height
        samples = self._samples(scene.spp)
        fbos = self._framebuffers(width, height, samples)
        environment = self.environments[scene.lighting.hdri_key]
        self._set_frame_uniforms(scene, environment)
        boxes = self._instance_boxes(scene.instances, intrinsics)
        in_view = _overlapping(boxes, _image_box(intrinsics)[None])[:, 0]
        # Nearest first: llvmpipe's early depth test then skips most hidden fragments.
        order = np.array(sorted(np.flatnonzero(in_view), key=lambda k: float(scene.instances[k].pose.translation[2])), int)
        instances = [scene.instances[k] for k in order]
        self.ctx.enable(self.ctx.DEPTH_TEST)
        self._draw_color(fbos.exact, fbos.exact_background, instances, scene)
        color_fbo = fbos.exact if fbos.multisampled is None else self._antialias(fbos, instances, samples)
        rgb = np.frombuffer(color_fbo.read(components=3, attachment=0), np.uint8).reshape(height, width, 3)
        instance_id = np.frombuffer(fbos.exact.read(components=1, attachment=1, dtype="u2"), np.uint16)
        depth = np.frombuffer(fbos.exact.read(components=1, attachment=2, dtype="f4"), np.float32)
        instance_id = instance_id.reshape(height, width).copy()
        full_counts = self._full_pixel_counts(fbos.counting, scene.targets, instances, boxes[order], instance_id)
        return RenderLayers(
            rgb=rgb.copy(),
            instance_id=instance_id,
            depth=depth.reshape(height, width).copy(),
            full_pixel_counts=full_counts,
        )

    def _check(self, scene: "SceneSpec") -> None:
        if scene.intrinsics.width <= 0 or scene.intrinsics.height <= 0:
            raise DopeError(f"image size {scene.intrinsics.width}x{scene.intrinsics.height}: both must be positive")
        if scene.spp < 1:
            raise DopeError(f"spp: {scene.spp} anti-aliasing samples per pixel; it must be at least 1")
        if scene.lighting.hdri_key not in self.environments:
            raise DopeError(f"hdri: unknown environment map '{scene.lighting.hdri_key}' (not in the asset library)")
        seg_ids = [instance.segmentation_id for instance in scene.instances]
        if len(set(seg_ids)) != len(seg_ids):
            raise DopeError(f"scene {scene.index}: segmentation ids {sorted(seg_ids)} are not unique")
        for instance in scene.instances:
            if instance.mesh_key not in self.meshes:
                raise DopeError(f"instance '{instance.name}': unknown mesh '{instance.mesh_key}'")
            if not instance.scale > 0:
                raise DopeError(f"instance '{instance.name}': scale {instance.scale} must be positive")
            if not 0 < instance.segmentation_id < 65536:
                raise DopeError(f"instance '{instance.name}': segmentation id {instance.segmentation_id} not in 1..65535")
        if self._samples(scene.spp) != scene.spp and not self.warned_samples:
            log.warning("spp %d: this OpenGL driver offers MSAA with up to %d samples, in powers of two; using %d",
                        scene.spp, self.max_samples, self._samples(scene.spp))
            self.warned_samples = True

    def _samples(self, spp: int) -> int:
        """MSAA samples for `spp`: the largest power of two within both (multisampled textures
        take no other counts)."""
        return 1 << (min(spp, self.max_samples).bit_length() - 1)

    def _set_frame_uniforms(self, scene: "SceneSpec", environment: _GpuEnvironment) -> None:
        intrinsics, lighting = scene.intrinsics, scene.lighting
        projection = _gl_matrix(projection_matrix(intrinsics))
        env_from_cam = _gl_matrix(environment_from_camera(lighting))
        for program in (self.shade_program, self.geometry_program):
            program["projection"].write(projection)
        for program in (self.shade_program, self.background_programs["hdri"]):
            program["env_from_camera"].write(env_from_cam)
            program["intensity"].value = float(lighting.intensity)
        self.shade_program["irradiance_sh"].write(environment.irradiance_sh)
        self.shade_program["environment_width"].value = float(environment.width)
        if scene.background.mode == "photo":
            photo = self._photo(scene.background.photo_key or "", "background")
            offset, scale = photo_cover_transform(photo.size, (intrinsics.width, intrinsics.height))
            self.background_programs["photo"]["photo_offset"].value = tuple(offset)
            self.background_programs["photo"]["photo_scale"].value = tuple(scale)
            photo.use(2)
        else:
            self.background_programs["hdri"]["inverse_intrinsics"].value = (
                1.0 / intrinsics.fx, 1.0 / intrinsics.fy, intrinsics.cx, intrinsics.cy)
        environment.texture.use(1)

    def _draw_color(
        self,
        fbo: "moderngl.Framebuffer",
        background_fbo: "moderngl.Framebuffer",
        instances: list["Instance"],
        scene: "SceneSpec",
    ) -> None:
        """Objects into `fbo`, then the background into `background_fbo` (`fbo`'s colour and depth:
        the background writes no id or depth, so background pixels keep the cleared 0)."""
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.ctx.depth_func = "<"
        program = self.shade_program
        for instance in instances:
            mesh = self.meshes[instance.mesh_key]
            material = instance.material
            self._set_transform(program, instance)
            program["normal_matrix"].write(_gl_matrix(instance.pose.rotation))
            program["base_color"].value = tuple(float(c) for c in material.color)
            program["roughness"].value = float(np.clip(material.roughness, 0.0, 1.0))
            program["metallic"].value = float(np.clip(material.metallic, 0.0, 1.0))
            program["specular"].value = float(np.clip(material.specular, 0.0, 1.0))
            program["instance_id"].value = instance.segmentation_id
            texture = self._photo(material.texture_key, f"instance '{instance.name}' texture") if material.texture_key else mesh.texture
            texture.use(0)
            self._draw(mesh, mesh.shaded)
        background_fbo.use()
        self.ctx.depth_func = "<="  # the background sits exactly on the far plane
        self.ctx.disable(self.ctx.CULL_FACE)
        self.backgrounds[scene.background.mode].render(vertices=3)

    def _antialias(self, fbos: _Framebuffers, instances: list["Instance"], samples: int) -> "moderngl.Framebuffer":
        """Instance ids per sample, then the resolve of ANTIALIAS_FRAGMENT from the single-sampled
        colours; returns the framebuffer holding the anti-aliased image (ids and depth stay exact)."""
        fbos.multisampled.use()
        fbos.multisampled.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)  # id 0: background
        self.ctx.depth_func = "<"
        for instance in instances:
            self._set_transform(self.geometry_program, instance)
            self.geometry_program["instance_id"].value = instance.segmentation_id
            mesh = self.meshes[instance.mesh_key]
            self._draw(mesh, mesh.geometry)
        fbos.antialiased.use()
        self.ctx.disable(self.ctx.DEPTH_TEST)
        self.ctx.disable(self.ctx.CULL_FACE)
        fbos.colors.use(3)
        fbos.ids.use(4)
        fbos.sample_ids.use(5)
        self._antialias_pass(samples).render(vertices=3)
        self.ctx.enable(self.ctx.DEPTH_TEST)
        return fbos.antialiased

    def _antialias_pass(self, samples: int) -> "moderngl.VertexArray":
        if samples not in self.antialias_passes:
            program = self.ctx.program(vertex_shader=BACKGROUND_VERTEX, fragment_shader=antialias_fragment(samples))
            for name, unit in (("shaded_colors", 3), ("shaded_ids", 4), ("sample_ids", 5)):
                program[name].value = unit
            self.antialias_passes[samples] = self.ctx.vertex_array(program, [])
        return self.antialias_passes[samples]

    def _set_transform(self, program: "moderngl.Program", instance: "Instance") -> None:
        model_view = instance.pose.matrix.copy()
        model_view[:3, :3] *= instance.scale
        program["model_view"].write(_gl_matrix(model_view))

    def _instance_boxes(self, instances: tuple["Instance", ...], intrinsics: "Intrinsics") -> np.ndarray:
        corners = [inst.pose.apply(self.meshes[inst.mesh_key].corners * inst.scale) for inst in instances]
        return _screen_boxes(np.stack(corners) if corners else np.zeros((0, 8, 3)), intrinsics)

    def _full_pixel_counts(
        self,
        fbo: "moderngl.Framebuffer",
        targets: tuple["Instance", ...],
        drawn: list["Instance"],
        boxes: np.ndarray,
        instance_id: np.ndarray,
    ) -> dict[int, int]:
        """Pixels each target covers alone (`drawn`: the instances drawn; `boxes`: their screen boxes).
        A target whose screen box meets no other drawn instance's is unoccluded: its visible pixels
        are all of them. The others are counted by an occlusion query around one flat-depth draw of
        the target alone."""
        row = {inst.segmentation_id: k for k, inst in enumerate(drawn)}
        meets_another = _overlapping(boxes, boxes).sum(axis=1) > 1  # every box meets itself
        counts = {target.segmentation_id: 0 for target in targets}  # off-screen targets stay at 0
        on_screen = [target for target in targets if target.segmentation_id in row]
        queried = [target for target in on_screen if meets_another[row[target.segmentation_id]]]
        alone = [target.segmentation_id for target in on_screen if not meets_another[row[target.segmentation_id]]]
        if alone:
            visible = np.bincount(instance_id.ravel(), minlength=max(alone) + 1)
            counts.update({sid: int(visible[sid]) for sid in alone})
        while len(self.queries) < len(queried):
            self.queries.append(self.ctx.query(samples=True))
        fbo.use()
        fbo.clear(depth=1.0)
        self.ctx.depth_func = "<"
        self.geometry_program["flat_depth"].value = True
        for rank, (target, query) in enumerate(zip(queried, self.queries)):
            # Each target flat and nearer than the ones before: it passes wherever it covers, once.
            self.geometry_program["flat_z"].value = 1.0 - 2.0 * (rank + 1) / (len(queried) + 1)
            self._set_transform(self.geometry_program, target)
            with query:
                self._draw(self.meshes[target.mesh_key], self.meshes[target.mesh_key].geometry)
        self.geometry_program["flat_depth"].value = False
        # Read after issuing every draw, so the driver is not stalled once per target.
        counts.update({target.segmentation_id: int(query.samples) for target, query in zip(queried, self.queries)})
        return counts

    def _draw(self, mesh: _GpuMesh, vertex_array: "moderngl.VertexArray") -> None:
        """Back faces of closed meshes are culled: hidden anyway, and half the rasterizer's work."""
        if mesh.closed:
            self.ctx.enable(self.ctx.CULL_FACE)
        else:
            self.ctx.disable(self.ctx.CULL_FACE)
        vertex_array.render()

    def close(self) -> None:
        self.ctx.release()
