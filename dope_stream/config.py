"""Typed, validated configuration shared by the CLI and the library.

Every command has one pydantic model (`GenerateConfig` here; the trainer and inference stages define
theirs on the same `ConfigModel` base). The model is the single source of truth: its fields are the
YAML keys (the seed's knob names: `obj`, `nb_objects`, `nb_distractors`, `nb_frames`, `spp`), the CLI
options (`--nb_objects`, also spelled `--nb-objects`) and their help texts. Precedence: defaults <
`--config FILE` < command-line options. Models nest (`GenerateConfig.pathtrace`, `TrainConfig.stream`);
`dope_app.config.DopeConfig` holds every command's model as one section of one tree. An unknown key,
nested or not, is one DopeError with a "did you mean"; a renamed key (`deprecated_keys`) still works.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import math
import textwrap
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Iterable, Iterator, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator,
)
from pydantic.fields import FieldInfo

from .errors import DopeError
from .render import BACKENDS, DEFAULT_RENDERER, PathTraceOptions, RenderOptions, renderer_names
from .tabletop import CAMERA_PRESETS

log = logging.getLogger(__name__)

PACKAGE_ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_OBJECT = PACKAGE_ASSETS / "objects" / "003_cracker_box" / "model.obj"
# Per-backend samples per pixel when `spp` is not given (the registry's; why each: dope_stream.render).
DEFAULT_SPP = {name: entry.default_spp for name, entry in BACKENDS.items() if entry.default_spp is not None}
RendererName = Literal[renderer_names()]  # type: ignore[valid-type]  # the registry's names


def _parse_range(value: Any) -> tuple[int, int]:
    """'5' -> (5, 5); '2,6' or [2, 6] -> (2, 6). Counts are inclusive and non-negative."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"expected an integer or a range 'a,b', got {value!r}") from None
    elif isinstance(value, int):
        numbers = [value]
    elif isinstance(value, (list, tuple)):
        numbers = [int(v) for v in value]
    else:
        raise ValueError(f"expected an integer or a range 'a,b', got {value!r}")
    if len(numbers) == 1:
        numbers = numbers * 2
    if len(numbers) != 2:
        raise ValueError(f"expected an integer or a range 'a,b', got {value!r}")
    low, high = numbers
    if low < 0 or high < 0:
        raise ValueError("counts must be >= 0")
    if low > high:
        raise ValueError(f"range {value!r} has its minimum above its maximum")
    return low, high


def _parse_floats(count: int):
    def parse(value: Any) -> tuple[float, ...]:
        if isinstance(value, str):
            value = value.split(",")
        try:
            numbers = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"expected {count} comma-separated numbers, got {value!r}") from None
        if len(numbers) != count:
            raise ValueError(f"expected {count} comma-separated numbers, got {value!r}")
        return numbers

    return parse


def check_focal_lengths(intrinsics: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """fx, fy > 0 and every value finite (a zero or negative focal length projects nothing sensible)."""
    fx, fy, cx, cy = intrinsics
    if not (fx > 0 and fy > 0) or not all(math.isfinite(v) for v in intrinsics):
        raise ValueError(f"focal lengths fx, fy must be positive and all of fx,fy,cx,cy finite, got {fx:g},{fy:g},{cx:g},{cy:g}")
    return intrinsics


def _parse_list(value: Any) -> list:
    """"a,b" or ["a", "b"] or ["a,b"] (the CLI's nargs="+" with commas) -> ["a", "b"]."""
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    if isinstance(value, list):
        return [part for item in value for part in (_parse_list(item) if isinstance(item, str) else [item])]
    return value


IntRange = Annotated[tuple[int, int], BeforeValidator(_parse_range)]
FloatPair = Annotated[tuple[float, float], BeforeValidator(_parse_floats(2))]
FloatQuad = Annotated[tuple[float, float, float, float], BeforeValidator(_parse_floats(4))]
CameraIntrinsics = Annotated[FloatQuad, AfterValidator(check_focal_lengths)]
PathList = Annotated[list[Path], BeforeValidator(_parse_list)]
StrList = Annotated[list[str], BeforeValidator(_parse_list)]


class ConfigModel(BaseModel):
    """Base of every stage's configuration: unknown keys are errors, with suggestions.

    `section`: the model's key in the configuration tree (`dope_app.config.DopeConfig`); a YAML
    file holding the whole tree gives each command its own section. `deprecated_keys`: old key ->
    the key it became; the old one still works, with a warning.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    section: ClassVar[str | None] = None
    deprecated_keys: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, values: Any) -> Any:
        return cls.renamed_keys(values) if isinstance(values, dict) else values

    def model_copy(self, *, update: dict | None = None, deep: bool = False):
        """As pydantic's, with old key names in `update` taken as the new ones (with a warning)."""
        return super().model_copy(update=type(self).renamed_keys(update) if update else update, deep=deep)

    @classmethod
    def renamed_keys(cls, values: dict) -> dict:
        """`values` with deprecated keys under their new names, each with a warning."""
        if not cls.deprecated_keys.keys() & values.keys():
            return values
        values = dict(values)
        for old, new in cls.deprecated_keys.items():
            if old in values:
                if new in values:
                    raise DopeError(f"options '{old}' and '{new}' are the same setting ('{old}' is its old name): give one")
                log.warning("option '%s' is deprecated: it is now '%s' (%s)", old, new, cls.model_fields[new].description)
                values[new] = values.pop(old)
        return values

    @classmethod
    def load(cls: type[T], config_file: Path | str | None = None, overrides: dict | None = None) -> T:
        """Defaults < YAML file < overrides; raises DopeError naming the bad key or value."""
        values: dict = {}
        if config_file is not None:
            values = cls.section_of(read_yaml(Path(config_file)))
        values = merged(values, overrides or {})
        return cls.validated(values, source=str(config_file) if config_file else "options")

    @classmethod
    def section_of(cls, values: dict) -> dict:
        """This model's values in a YAML mapping: its section of a whole tree, else the mapping itself."""
        section = values.get(cls.section) if cls.section and cls.section not in cls.model_fields else None
        return section if isinstance(section, dict) else values

    @classmethod
    def validated(cls: type[T], values: dict, source: str = "options") -> T:
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            raise DopeError(f"{source}: {describe_validation_error(err, cls)}") from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def default_yaml(cls) -> str:
        """The defaults as commented YAML; a required key is a commented line to fill in."""
        defaults = {name: f.get_default(call_default_factory=True) for name, f in cls.model_fields.items() if not f.is_required()}
        values = cls.model_construct(**defaults).model_dump(mode="json", include=set(defaults))
        return "\n".join(commented_yaml_lines(cls, values)) + "\n"

    def to_commented_yaml(self) -> str:
        """YAML of these values with each key's description above it (the habit of Ultralytics' default.yaml)."""
        return "\n".join(commented_yaml_lines(type(self), self.model_dump(mode="json"))) + "\n"


T = TypeVar("T", bound=ConfigModel)


def merged(base: dict, overrides: dict) -> dict:
    """`base` updated by `overrides`, mappings merged key by key (a nested section keeps what it does not override)."""
    result = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            value = merged(result[key], value)
        result[key] = value
    return result


def did_you_mean(key: str, candidates: Iterable[str], list_when_none: bool = True) -> str:
    """' (did you mean 'x'?)' for the candidate closest to an unknown `key` (else the valid keys or '')."""
    candidates = list(candidates)
    close = difflib.get_close_matches(key, candidates, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (valid keys: {', '.join(candidates)})" if list_when_none else ""


def describe_validation_error(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The first problem, unknown keys first, naming the option by its dotted path in the tree."""
    errors = err.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    if first["type"] == "extra_forbidden":
        where = ".".join(str(p) for p in first["loc"]) or "config"
        parent = sub_model(model, first["loc"][:-1]) if model is not None else None
        hint = did_you_mean(str(first["loc"][-1]), parent.model_fields) if parent is not None else ""
        return f"unknown key '{where}'{hint}"
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:  # a check across options: its message names them (the input is every option)
        return message
    where = ".".join(str(p) for p in first["loc"])
    return f"option '{where}': {message} (got {first.get('input')!r})"


def sub_model(model: type[BaseModel], path: Iterable[Any]) -> type[BaseModel] | None:
    """The model a location path inside `model` leads to (list indices skipped), if any."""
    for key in path:
        if isinstance(key, int):
            continue
        field = model.model_fields.get(key)
        model = model_of(field.annotation) if field is not None else None
        if model is None:
            return None
    return model


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (directly, optionally or in a list), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = model_of(argument)
        if found is not None:
            return found
    return None


def commented_yaml_lines(model: type[BaseModel], values: dict, indent: str = "") -> list[str]:
    lines: list[str] = []
    for name, field in model.model_fields.items():
        lines += [f"{indent}# {line}" for line in textwrap.wrap(field.description or "", 96 - len(indent))]
        nested = model_of(field.annotation)
        if name not in values:  # a required value: shown, commented out
            lines.append(f"{indent}# {name}:   (required)")
        elif nested is not None and isinstance(values[name], dict):
            lines.append(f"{indent}{name}:")
            lines += commented_yaml_lines(nested, values[name], indent + "  ")
        else:
            lines.append(f"{indent}{name}: {_flow_yaml(values[name])}")
    return lines


def _flow_yaml(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def field_like(model: type[BaseModel], name: str, default: Any, description: str | None = None) -> Any:
    """`model`'s field `name` (its constraints, its description unless another is given) with another
    default: a stage's knob offered by another command (`dope demo`) without declaring it twice."""
    source = model.model_fields[name]
    return FieldInfo.merge_field_infos(source, default=default, description=description or source.description)


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise DopeError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise DopeError(f"config file {path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DopeError(f"config file {path} must hold a mapping of keys to values")
    return data


class GenerateConfig(ConfigModel):
    """`dope generate`: synthetic frames of target meshes among distractors."""

    section: ClassVar[str] = "generate"
    deprecated_keys: ClassVar[dict[str, str]] = {"workers": "render_workers"}

    obj: PathList = Field(
        default_factory=lambda: [DEFAULT_OBJECT],
        description="target meshes (OBJ/PLY/GLB); the class is the file's stem, or its folder's name "
        "for model.obj/textured.obj files",
    )
    class_names: StrList | None = Field(None, description="class name per `obj` (default: from the file names)")
    scale: float = Field(1.0, gt=0, description="multiply target vertices by this (0.01 for cm, 0.001 for mm)")
    nb_objects: IntRange = Field((1, 3), description="target instances per frame: N or a range a,b")
    nb_distractors: IntRange = Field((4, 12), description="distractor meshes per frame: N or a range a,b")
    nb_frames: int = Field(1000, ge=1, description="frames to generate")
    width: int = Field(512, ge=16, le=8192, description="image width in pixels")
    height: int = Field(512, ge=16, le=8192, description="image height in pixels")
    fov: float = Field(60.0, gt=1, lt=170, description="horizontal field of view in degrees")
    intrinsics: CameraIntrinsics | None = Field(None, description="fx,fy,cx,cy in pixels (overrides fov)")
    spp: int | None = Field(
        None, ge=1, le=4096,
        description=f"samples per pixel; none: each backend's default ({', '.join(f'{k}: {v}' for k, v in DEFAULT_SPP.items())}). raster: MSAA "
        "anti-aliasing samples (on a CPU any spp > 1 costs about 15 ms more per 512x512 frame; 1 gives ~1.4x "
        "the images/s); pathtrace: path samples, denoised",
    )
    mesh_error: float = Field(
        0.003, ge=0, lt=1,
        description="geometric error allowed when simplifying meshes for rendering, relative to each mesh's size "
        "(0.003: under a millimetre on a 25 cm box, sub-pixel at the sampled distances; distractors use at least "
        "0.01); 0 keeps meshes as they are. Cuboids always come from the full mesh",
    )
    depth_range: FloatPair = Field((0.35, 1.2), description="near,far distance of target centres from the camera (m)")
    max_rotation: float = Field(
        180.0, gt=0, le=180,
        description="targets: largest angle (degrees) away from upright with the model's +x face toward the camera "
        "(z-up models, as YCB's); 180: all orientations, uniformly. Smaller suits constrained set-ups and short training",
    )
    scene: Literal["flying", "tabletop"] = Field(
        "tabletop",
        description="tabletop: targets and distractors dropped with physics onto a textured table (stable poses, any "
        "yaw, touching and hiding each other), seen from a camera on a sphere cap above it (elevation, camera_distance, "
        "camera_roll); the default, for its better real-photo result (README 'Real photos'). flying: objects float "
        "in free space at any pose (depth_range, max_rotation)",
    )
    elevation: FloatPair = Field(
        (5.0, 65.0), description="tabletop: camera elevation above the table plane, min,max degrees (0..90)"
    )
    camera_distance: FloatPair = Field(
        (0.4, 1.5), description="tabletop: distance from the camera to its look-at point near a target, min,max (m)"
    )
    camera_roll: float = Field(10.0, ge=0, le=180, description="tabletop: largest camera roll about its axis (degrees)")
    other_faces: float = Field(
        0.15, ge=0, le=1,
        description="tabletop: probability that a target is dropped on one of its other five box faces instead of "
        "upright (model +z up); physics then finds the stable pose",
    )
    views_per_scene: int = Field(
        4, ge=1,
        description="tabletop: frames that view one settled table layout from different cameras (frames "
        "k*N..k*N+N-1 share layout k, as real captures show one scene from many views); physics runs once per layout",
    )
    cameras: StrList | None = Field(
        None,
        description="camera presets drawn per frame, scaled to width (overrides fov and intrinsics): "
        "ycbv, primesense, realsense_d435; none: fov or intrinsics",
    )
    hdri: Path = Field(PACKAGE_ASSETS / "hdri", description="folder of equirectangular .hdr/.exr maps")
    backgrounds: Path | None = Field(PACKAGE_ASSETS / "backgrounds", description="folder of background photos; none: HDR backgrounds only")
    distractors: Path | None = Field(
        PACKAGE_ASSETS / "distractors",
        description="folder of distractor meshes; none: procedural shapes only",
    )
    procedural_distractors: float = Field(
        0.3, ge=0, le=1, description="share of distractors that are procedural boxes/cylinders/spheres/tori"
    )
    photo_background: float = Field(
        0.5, ge=0, le=1, description="probability of a background photo instead of the HDR environment"
    )
    seed: int = Field(0, ge=0, description="random seed; frame i depends only on (seed, i)")
    render_workers: int = Field(1, ge=1, le=256, description="parallel rendering processes")
    out: Path = Field(Path("out/dataset"), description="output folder")
    renderer: RendererName = Field(DEFAULT_RENDERER, description=f"rendering backend: {', '.join(renderer_names())}")
    mix_fraction: float = Field(0.5, ge=0, le=1, description="renderer=mix: share of path-traced frames")
    denoise: bool = Field(True, description="pathtrace: denoise with Open Image Denoise")
    pathtrace: PathTraceOptions = Field(default_factory=PathTraceOptions, description="pathtrace backend options")
    image_format: Literal["png", "jpg"] | None = Field(
        None, description="image encoding (png: lossless, compression level 1); none: jpg for shards, png for the "
        "folder and bop layouts (the reference DOPE trainer reads only .png)",
    )
    jpg_quality: int = Field(95, ge=1, le=100, description="JPEG quality")
    layout: Literal["shards", "folder", "bop"] = Field(
        "shards", description="WebDataset shards, the classic DOPE folder, or a BOP dataset (millimetres, train_pbr scenes)"
    )
    frames_per_shard: int = Field(250, ge=1, description="frames per WebDataset shard")
    ray: str | None = Field(
        None, description="render with Ray actors: 'local' starts Ray here, host:port joins a cluster; none: local processes"
    )
    actor_gpus: float = Field(
        1.0, ge=0, description="Ray: GPUs per renderer actor when the cluster has GPUs (0: `render_workers` CPU actors)"
    )
    stream_buffer: int = Field(
        32, ge=1, description="Ray: most frames rendered ahead of each consumer (renderers pause when it is full)"
    )
    shuffle_buffer: int = Field(0, ge=0, description="Ray stream dataset: frames mixed before yielding (0: arrival order)")

    @property
    def workers(self) -> int:
        """Deprecated name of `render_workers`."""
        return self.render_workers

    def render_options(self) -> RenderOptions:
        """What the renderer factories take (`dope_stream.render.create_renderer`)."""
        return RenderOptions(pathtrace=self.pathtrace, mix_fraction=self.mix_fraction)

    def spp_for(self, renderer: str) -> int:
        """Samples per pixel for a frame drawn by `renderer` (with renderer=mix, each frame's own)."""
        return self.spp if self.spp is not None else DEFAULT_SPP[renderer]

    @model_validator(mode="before")
    @classmethod
    def _layout_image_format(cls, values: Any) -> Any:
        """Folders get PNG unless asked otherwise: the reference `train.py` lists only `*.png` files."""
        if isinstance(values, dict) and values.get("image_format") is None:
            layout = values.get("layout", cls.model_fields["layout"].default)
            values = {**values, "image_format": "jpg" if layout == "shards" else "png"}
        return values

    @model_validator(mode="after")
    def _check_classes(self) -> "GenerateConfig":
        if self.class_names is not None and len(self.class_names) != len(self.obj):
            raise ValueError(f"option 'class_names': {len(self.class_names)} names for {len(self.obj)} obj meshes (one name per mesh)")
        return self

    @field_validator("elevation")
    @classmethod
    def _check_elevation(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= value[0] <= value[1] <= 90.0:
            raise ValueError("elevation must be min,max degrees with 0 <= min <= max <= 90")
        return value

    @field_validator("camera_distance", "depth_range")
    @classmethod
    def _check_distances(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 < value[0] <= value[1]:
            raise ValueError("expected min,max distances in metres with 0 < min <= max")
        return value

    @field_validator("cameras")
    @classmethod
    def _check_cameras(cls, value: list[str] | None) -> list[str] | None:
        unknown = [name for name in value or [] if name not in CAMERA_PRESETS]
        if unknown or value == []:
            raise ValueError(f"unknown camera preset {unknown[0] if unknown else '(empty list)'!r} (valid: {', '.join(CAMERA_PRESETS)})")
        return value


# --- CLI generation -------------------------------------------------------------------------------


def add_config_arguments(parser: argparse.ArgumentParser, model: type[ConfigModel]) -> None:
    """One `--key` option per config field (also `--key-with-dashes`), plus `--config FILE`.

    The fields of a nested options model are `--section.key` (`--pathtrace.threads`); a model that
    may be absent (`train`'s `stream`) is one option taking a YAML file. Deprecated keys keep their
    options. Options not given on the command line are absent from the parsed namespace, so the
    YAML file and the defaults apply underneath them.
    """
    parser.add_argument("--config", type=Path, default=None, help="YAML file with any of the options below")
    for name, field in cli_fields(model):
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        help_text = f"{field.description} ({_default_text(field)})".replace("%", "%%")  # argparse formats help with %
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        annotation = field.annotation
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif _is_list(annotation):
            kwargs["nargs"] = "+"
        parser.add_argument(*flags, **kwargs)
    for old, new in model.deprecated_keys.items():
        parser.add_argument(f"--{old}", dest=old, default=argparse.SUPPRESS, help=f"deprecated: --{new}")


def cli_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted option name, field) of every option of `model`, nested options models expanded."""
    for name, field in model.model_fields.items():
        nested = model_of(field.annotation)
        if nested is not None and not _is_optional(field):
            yield from cli_fields(nested, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def config_from_args(model: type[T], args: argparse.Namespace) -> T:
    """The model from defaults < `--config` file < the options given."""
    return model.load(getattr(args, "config", None), overrides_from_args(model, args))


def overrides_from_args(model: type[ConfigModel], args: argparse.Namespace) -> dict:
    """The options given on the command line as a nested mapping ('none' -> None where allowed)."""
    overrides: dict = {}
    options = [*cli_fields(model), *((old, None) for old in model.deprecated_keys)]
    for name, field in options:
        if not hasattr(args, name):
            continue
        value = getattr(args, name)
        if isinstance(value, list) and len(value) == 1 and _is_none_word(value[0]):  # `--cameras none`
            value = value[0]
        if _is_none_word(value) and field is not None and _is_optional(field):
            value = None
        *parents, leaf = name.split(".")
        target = overrides
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return overrides


def _is_none_word(value: Any) -> bool:
    return isinstance(value, str) and value.lower() in ("none", "null")


def _default_value(field: Any) -> str:
    return "required" if field.is_required() else _show_default(field.get_default(call_default_factory=True))


def _default_text(field: Any) -> str:
    return "required" if field.is_required() else f"default: {_default_value(field)}"


def options_markdown(model: type[ConfigModel]) -> str:
    """The option table of a command, as the README shows it (tests keep the README in step)."""
    rows = ["| option | default | meaning |", "| --- | --- | --- |"]
    for name, field in cli_fields(model):
        rows.append(f"| `--{name}` | `{_default_value(field)}` | {field.description} |")
    return "\n".join(rows)


def _show_default(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_show_default(v) for v in value)
    if isinstance(value, Path):
        try:
            return str(value.relative_to(Path(__file__).resolve().parent))
        except ValueError:
            return str(value)
    return str(value)


def _is_list(annotation: Any) -> bool:
    for candidate in (annotation, *typing.get_args(annotation)):
        origin = typing.get_origin(candidate)
        if origin is list:
            return True
        if origin is Annotated and typing.get_origin(typing.get_args(candidate)[0]) is list:
            return True
    return False


def _is_optional(field: Any) -> bool:
    return type(None) in typing.get_args(field.annotation)
