"""GLSL sources of the `raster` backend (see `dope_stream.render.raster` for the conventions).

All programs draw in the OpenCV camera frame: `projection` maps it straight to clip space with image
row v at window y = v + 0.5, so the framebuffer's first row is the image's top row.
"""

# Shared by every object program: model (scaled) -> OpenCV camera -> clip.
OBJECT_VERTEX = """
#version 330
uniform mat4 projection;
uniform mat4 model_view;
uniform mat3 normal_matrix;
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
in vec3 in_color;
out vec3 v_position;
out vec3 v_normal;
out vec2 v_uv;
out vec3 v_color;
void main() {
    vec4 position = model_view * vec4(in_position, 1.0);
    v_position = position.xyz;
    v_normal = normal_matrix * in_normal;
    v_uv = in_uv;
    v_color = in_color;
    gl_Position = projection * position;
}
"""

# Ids and depth only (exact per pixel centre). With `flat_depth` every fragment lands at the same
# window depth `flat_z` (NDC), so under depth test "<" only the first fragment of each pixel passes:
# an occlusion query then counts covered pixels exactly once in a single draw (front and back layers
# alike), and a later draw at a smaller `flat_z` passes everywhere again, with no clear in between.
GEOMETRY_VERTEX = """
#version 330
uniform mat4 projection;
uniform mat4 model_view;
uniform bool flat_depth;
uniform float flat_z;
in vec3 in_position;
out float v_depth;
void main() {
    vec4 position = model_view * vec4(in_position, 1.0);
    v_depth = position.z;
    gl_Position = projection * position;
    if (flat_depth) gl_Position.z = flat_z * gl_Position.w;
}
"""

GEOMETRY_FRAGMENT = """
#version 330
uniform uint instance_id;
in float v_depth;
layout(location = 0) out uint out_id;
layout(location = 1) out float out_depth;
void main() {
    out_id = instance_id;
    out_depth = v_depth;
}
"""

# Functions shared by the object and background shaders: environment lookup and display transform.
_COMMON = """
const float PI = 3.14159265358979;
uniform sampler2D environment;
uniform mat3 env_from_camera;
uniform float intensity;

// Direction in the environment frame (+Y up) -> equirect texture coordinate; see
// conventions.environment_direction_to_uv.
vec2 equirect_uv(vec3 d) {
    d = normalize(d);
    return vec2(fract(atan(d.x, -d.z) / (2.0 * PI)), acos(clamp(d.y, -1.0, 1.0)) / PI);
}

vec3 environment_radiance(vec3 direction_cam, float lod) {
    return textureLod(environment, equirect_uv(env_from_camera * direction_cam), lod).rgb * intensity;
}

// Narkowicz's fit of the ACES filmic curve, then the sRGB transfer function (conventions.tonemap_to_srgb8).
vec3 filmic(vec3 x) {
    return clamp((x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14), 0.0, 1.0);
}
vec3 srgb_encode(vec3 linear) {
    return mix(12.92 * linear, 1.055 * pow(linear, vec3(1.0 / 2.4)) - 0.055, step(0.0031308, linear));
}
"""

OBJECT_FRAGMENT = (
    """
#version 330
"""
    + _COMMON
    + """
uniform sampler2D albedo_map;
uniform vec3 irradiance_sh[9];  // SH9 of irradiance / pi in the environment frame
uniform float environment_width;
uniform vec3 base_color;
uniform float roughness;
uniform float metallic;
uniform float specular;
uniform uint instance_id;
in vec3 v_position;
in vec3 v_normal;
in vec2 v_uv;
in vec3 v_color;
layout(location = 0) out vec4 out_color;
layout(location = 1) out uint out_id;
layout(location = 2) out float out_depth;

vec3 diffuse_irradiance(vec3 n) {  // n: unit normal in the environment frame
    return max(irradiance_sh[0] * 0.282095
        + irradiance_sh[1] * 0.488603 * n.y + irradiance_sh[2] * 0.488603 * n.z
        + irradiance_sh[3] * 0.488603 * n.x
        + irradiance_sh[4] * 1.092548 * n.x * n.y + irradiance_sh[5] * 1.092548 * n.y * n.z
        + irradiance_sh[6] * 0.315392 * (3.0 * n.z * n.z - 1.0)
        + irradiance_sh[7] * 1.092548 * n.x * n.z
        + irradiance_sh[8] * 0.546274 * (n.x * n.x - n.y * n.y), 0.0);
}

// Karis' analytic fit of the split-sum environment BRDF: F0 scale and bias for GGX.
vec2 environment_brdf(float n_dot_v, float rough) {
    vec4 r = rough * vec4(-1.0, -0.0275, -0.572, 0.022) + vec4(1.0, 0.0425, 1.04, -0.04);
    float a004 = min(r.x * r.x, exp2(-9.28 * n_dot_v)) * r.x + r.y;
    return vec2(-1.04, 1.04) * a004 + r.zw;
}

void main() {
    vec3 view = -normalize(v_position);
    vec3 n = normalize(v_normal);
    n = dot(n, view) < 0.0 ? -n : n;  // two-sided: open meshes and inconsistent windings
    vec3 albedo = texture(albedo_map, v_uv).rgb * v_color * base_color;
    float n_dot_v = max(dot(n, view), 1e-4);
    vec3 f0 = mix(vec3(0.08 * specular), albedo, metallic);
    vec2 brdf = environment_brdf(n_dot_v, roughness);
    // Glossy lobe width ~ alpha = roughness^2 radians: pick the mip whose texels span that angle.
    float lod = log2(max(roughness * roughness * environment_width / (2.0 * PI), 1.0));
    vec3 glossy = environment_radiance(reflect(-view, n), lod) * (f0 * brdf.x + brdf.y);
    vec3 diffuse = albedo * (1.0 - metallic) * diffuse_irradiance(normalize(env_from_camera * n)) * intensity;
    out_color = vec4(srgb_encode(filmic(diffuse + glossy)), 1.0);
    out_id = instance_id;
    out_depth = v_position.z;
}
"""
)


# Full-screen triangle at the far plane: drawn after the objects with depth test <=.
BACKGROUND_VERTEX = """
#version 330
void main() {
    vec2 corner = vec2(float((gl_VertexID & 1) << 2) - 1.0, float((gl_VertexID & 2) << 1) - 1.0);
    gl_Position = vec4(corner, 1.0, 1.0);
}
"""

# Backgrounds write colour only: ids and depth of background pixels are the clear values (0). One
# program per mode, because llvmpipe runs both sides of a branch on a uniform.
ENVIRONMENT_BACKGROUND_FRAGMENT = (
    """
#version 330
"""
    + _COMMON
    + """
uniform vec4 inverse_intrinsics;  // 1/fx, 1/fy, cx, cy
layout(location = 0) out vec4 out_color;
void main() {
    vec2 pixel = gl_FragCoord.xy - 0.5;  // OpenCV pixel coordinate (u, v) of this pixel's centre
    vec3 direction = vec3((pixel - inverse_intrinsics.zw) * inverse_intrinsics.xy, 1.0);
    out_color = vec4(srgb_encode(filmic(environment_radiance(direction, 0.0))), 1.0);
}
"""
)

PHOTO_BACKGROUND_FRAGMENT = (
    """
#version 330
"""
    + _COMMON
    + """
uniform sampler2D photo;
uniform vec2 photo_offset;  // texture coordinate of the image's top-left corner
uniform vec2 photo_scale;   // texture units per output pixel
layout(location = 0) out vec4 out_color;
void main() {
    out_color = vec4(srgb_encode(texture(photo, photo_offset + gl_FragCoord.xy * photo_scale).rgb), 1.0);
}
"""
)

# Anti-aliasing resolve (full screen, after a multisampled pass that wrote instance ids per sample):
# each sample takes the colour shaded at the pixel centre of the surface it sees, this pixel's or the
# next one's (+x, -x, +y, -y) where that surface is the one seen; the pixel is their mean. MSAA
# also shades once per pixel centre; shading here stays in the single-sampled pass, where llvmpipe
# has an early depth test (it has none with multisampling, and shades partly covered pixels per
# sample: a shaded 4x pass cost 2.5x the single one). A sample of a sub-pixel sliver seen at none of
# those centres takes this pixel's colour (the surface around it).
ANTIALIAS_FRAGMENT = """
uniform usampler2DMS sample_ids;  // instance id per sample (0: background)
uniform usampler2D shaded_ids;  // single-sampled pass: instance id per pixel centre
uniform sampler2D shaded_colors;  // single-sampled pass: display colour per pixel centre
layout(location = 0) out vec4 out_color;

void main() {
    ivec2 pixel = ivec2(gl_FragCoord.xy);
    uint center_id = texelFetch(shaded_ids, pixel, 0).r;
    vec4 center_color = texelFetch(shaded_colors, pixel, 0);
    uint ids[SAMPLES];
    bool one_surface = true;
    for (int s = 0; s < SAMPLES; ++s) {
        ids[s] = texelFetch(sample_ids, pixel, s).r;
        one_surface = one_surface && ids[s] == center_id;
    }
    if (one_surface) {  // most pixels: no edge inside
        out_color = center_color;
        return;
    }
    ivec2 last = textureSize(shaded_ids, 0) - 1;
    ivec2 offsets[4] = ivec2[4](ivec2(1, 0), ivec2(-1, 0), ivec2(0, 1), ivec2(0, -1));
    uint neighbour_ids[4];
    vec4 neighbour_colors[4];
    for (int k = 0; k < 4; ++k) {
        ivec2 neighbour = clamp(pixel + offsets[k], ivec2(0), last);
        neighbour_ids[k] = texelFetch(shaded_ids, neighbour, 0).r;
        neighbour_colors[k] = texelFetch(shaded_colors, neighbour, 0);
    }
    vec4 sum = vec4(0.0);
    for (int s = 0; s < SAMPLES; ++s) {
        vec4 color = center_color;  // also for a sliver seen at none of the centres
        for (int k = 3; k >= 0; --k) {  // the first match in the order +x, -x, +y, -y wins
            if (neighbour_ids[k] == ids[s]) color = neighbour_colors[k];
        }
        sum += ids[s] == center_id ? center_color : color;
    }
    out_color = sum / float(SAMPLES);
}
"""


def antialias_fragment(samples: int) -> str:
    """ANTIALIAS_FRAGMENT for a sample count (a constant, so the loops unroll)."""
    return f"#version 330\n#define SAMPLES {samples}\n" + ANTIALIAS_FRAGMENT
