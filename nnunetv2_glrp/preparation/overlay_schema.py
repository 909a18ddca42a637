"""The schema of a plans overlay: what nnU-Net needs from a configuration, checked field by field.

Two checks, each raising :class:`OverlayError` (a ValueError) whose one-line message starts with the
overlay file and names the field (``configurations.paper_unet_cpu.architecture.arch_kwargs.strides[1]``):

* :func:`load_overlay` reads the file and checks what needs no plans file: the top level is an
  object with ``description`` (text) and a non-empty ``configurations`` object; every configuration
  has ``inherits_from`` and ``data_identifier`` (text), only keys nnU-Net knows, and values of the
  right type (``spacing``: positive numbers; ``patch_size``: positive integers; ``batch_size``: an
  integer >= 1; ``architecture.arch_kwargs``: an object whose per-stage lists hold positive integers,
  ``kernel_sizes``/``strides`` one list per stage, ...). ``prepare`` runs it before fingerprinting.
* :func:`check_resolved` checks a configuration merged over its parent: the per-stage lists have
  ``n_stages`` entries of the image's dimensionality, the network class and every ``_kw_requires_import``
  name can be imported, and conv and norm ops are of that dimensionality (no Conv3d in a 2D configuration).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

CONFIGURATION_KEYS = {
    "inherits_from", "data_identifier", "preprocessor_name", "batch_size", "patch_size",
    "median_image_size_in_voxels", "spacing", "normalization_schemes", "use_mask_for_norm", "resampling_fn_data",
    "resampling_fn_seg", "resampling_fn_data_kwargs", "resampling_fn_seg_kwargs", "resampling_fn_probabilities",
    "resampling_fn_probabilities_kwargs", "architecture", "batch_dice", "previous_stage", "next_stage",
}
ARCHITECTURE_KEYS = {"network_class_name", "arch_kwargs", "_kw_requires_import"}
PER_STAGE_INT_LISTS = ("features_per_stage", "n_conv_per_stage", "n_conv_per_stage_decoder")
PER_STAGE_AXIS_LISTS = ("kernel_sizes", "strides")
OPTIONAL_OBJECTS = ("norm_op_kwargs", "dropout_op_kwargs", "nonlin_kwargs")
OP_NAMES = ("conv_op", "norm_op", "dropout_op", "nonlin")


class OverlayError(ValueError):
    """A plans overlay that nnU-Net could not use; the message names the file and the field."""

    def __init__(self, source: Path, field: str, problem: str):
        super().__init__(f"{source}: {field}: {problem}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _positive_list(source: Path, field: str, value, kind: str = "int", length: int | None = None) -> None:
    check = _is_int if kind == "int" else _is_number
    if not isinstance(value, list) or not value:
        raise OverlayError(source, field, f"must be a non-empty list of positive {kind}s, got {json.dumps(value)}")
    for i, v in enumerate(value):
        if not check(v) or v <= 0:
            raise OverlayError(source, f"{field}[{i}]", f"must be a positive {kind}, got {json.dumps(v)}")
    if length is not None and len(value) != length:
        raise OverlayError(source, field, f"has {len(value)} entries, needs {length}")


def _text(source: Path, field: str, value, optional: bool = False) -> None:
    if not (isinstance(value, str) and value) and not (optional and value is None):
        raise OverlayError(source, field, f"must be a non-empty string{' or null' if optional else ''}, "
                                          f"got {json.dumps(value)}")


def _check_arch_kwargs(source: Path, field: str, kwargs) -> None:
    if not isinstance(kwargs, dict):
        raise OverlayError(source, field, f"must be an object, got {json.dumps(kwargs)}")
    if "n_stages" in kwargs and (not _is_int(kwargs["n_stages"]) or kwargs["n_stages"] < 1):
        raise OverlayError(source, f"{field}.n_stages", f"must be an integer >= 1, got {json.dumps(kwargs['n_stages'])}")
    for key in PER_STAGE_INT_LISTS:
        if key in kwargs:
            _positive_list(source, f"{field}.{key}", kwargs[key])
    for key in PER_STAGE_AXIS_LISTS:
        if key in kwargs:
            value = kwargs[key]
            if not isinstance(value, list) or not value or not all(isinstance(v, list) for v in value):
                raise OverlayError(source, f"{field}.{key}", "must be a list with one list of per-axis "
                                                             f"integers per stage, got {json.dumps(value)}")
            for i, stage in enumerate(value):
                _positive_list(source, f"{field}.{key}[{i}]", stage)
    for key in ("conv_op", "norm_op", "nonlin"):
        if key in kwargs:
            _text(source, f"{field}.{key}", kwargs[key])
    if "dropout_op" in kwargs:
        _text(source, f"{field}.dropout_op", kwargs["dropout_op"], optional=True)
    for key in OPTIONAL_OBJECTS:
        if key in kwargs and kwargs[key] is not None and not isinstance(kwargs[key], dict):
            raise OverlayError(source, f"{field}.{key}", f"must be an object or null, got {json.dumps(kwargs[key])}")
    if "conv_bias" in kwargs and not isinstance(kwargs["conv_bias"], bool):
        raise OverlayError(source, f"{field}.conv_bias", f"must be true or false, got {json.dumps(kwargs['conv_bias'])}")


def _check_configuration(source: Path, name: str, spec) -> None:
    field = f"configurations.{name}"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise OverlayError(source, field, "a configuration name may hold letters, digits, '_', '-' and '.' only")
    if not isinstance(spec, dict):
        raise OverlayError(source, field, f"must be an object, got {json.dumps(spec)}")
    unknown = sorted(set(spec) - CONFIGURATION_KEYS)
    if unknown:
        raise OverlayError(source, f"{field}.{unknown[0]}", f"not a key of an nnU-Net configuration "
                                                            f"(known: {', '.join(sorted(CONFIGURATION_KEYS))})")
    for key in ("inherits_from", "data_identifier"):
        if key not in spec:
            raise OverlayError(source, f"{field}.{key}", "missing (required)")
        _text(source, f"{field}.{key}", spec[key])
    try:
        spec["data_identifier"].format(plans_identifier="nnUNetPlans")
    except (KeyError, IndexError, ValueError) as exc:
        raise OverlayError(source, f"{field}.data_identifier", f"only {{plans_identifier}} may be substituted ({exc!r})")
    if "spacing" in spec:
        _positive_list(source, f"{field}.spacing", spec["spacing"], kind="number")
    for key in ("patch_size", "median_image_size_in_voxels"):
        if key in spec:
            _positive_list(source, f"{field}.{key}", spec[key], kind="int" if key == "patch_size" else "number")
    if "batch_size" in spec and (not _is_int(spec["batch_size"]) or spec["batch_size"] < 1):
        raise OverlayError(source, f"{field}.batch_size", f"must be an integer >= 1, got {json.dumps(spec['batch_size'])}")
    if "batch_dice" in spec and not isinstance(spec["batch_dice"], bool):
        raise OverlayError(source, f"{field}.batch_dice", f"must be true or false, got {json.dumps(spec['batch_dice'])}")
    if "architecture" in spec:
        arch = spec["architecture"]
        if not isinstance(arch, dict):
            raise OverlayError(source, f"{field}.architecture", f"must be an object, got {json.dumps(arch)}")
        unknown = sorted(set(arch) - ARCHITECTURE_KEYS)
        if unknown:
            raise OverlayError(source, f"{field}.architecture.{unknown[0]}",
                               f"unknown key (known: {', '.join(sorted(ARCHITECTURE_KEYS))})")
        if "network_class_name" in arch:
            _text(source, f"{field}.architecture.network_class_name", arch["network_class_name"])
        if "arch_kwargs" in arch:
            _check_arch_kwargs(source, f"{field}.architecture.arch_kwargs", arch["arch_kwargs"])
        imports = arch.get("_kw_requires_import", [])
        if not isinstance(imports, list) or not all(isinstance(k, str) for k in imports):
            raise OverlayError(source, f"{field}.architecture._kw_requires_import", "must be a list of key names")


def load_overlay(source: Path) -> dict:
    """The overlay file's content, checked against the schema (see the module docstring)."""
    try:
        overlay = json.loads(Path(source).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise OverlayError(source, "file", f"not valid JSON ({error})") from None
    if not isinstance(overlay, dict):
        raise OverlayError(source, "top level", f"must be an object with 'configurations', got a {type(overlay).__name__}")
    unknown = sorted(set(overlay) - {"description", "configurations"})
    if unknown:
        raise OverlayError(source, unknown[0], "unknown top-level key (known: configurations, description)")
    if "description" in overlay and not isinstance(overlay["description"], str):
        raise OverlayError(source, "description", "must be text")
    configurations = overlay.get("configurations")
    if not isinstance(configurations, dict) or not configurations:
        raise OverlayError(source, "configurations", "expected a non-empty object of configurations")
    for name, spec in configurations.items():
        _check_configuration(source, name, spec)
    return overlay


def _locate(name: str):
    """The class ``name`` names, the way nnU-Net finds it (pydoc.locate, then a network class by its bare name)."""
    import pydoc

    found = pydoc.locate(name)
    if found is None and "." not in name:
        import dynamic_network_architectures
        from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

        folder = Path(dynamic_network_architectures.__path__[0]) / "architectures"
        found = recursive_find_python_class(str(folder), name, "dynamic_network_architectures.architectures")
    return found


def check_resolved(source: Path, name: str, entry: dict, dims: int) -> None:
    """Check a configuration merged over its ``dims``-D parent (see the module docstring)."""
    field = f"configurations.{name}"
    for key in ("spacing", "patch_size"):
        if len(entry[key]) != dims:
            raise OverlayError(source, f"{field}.{key}", f"has {len(entry[key])} entries; {entry['inherits_from']!r} "
                                                         f"is {dims}D")
    arch_field = f"{field}.architecture.arch_kwargs"
    kwargs = entry["architecture"].get("arch_kwargs")
    _check_arch_kwargs(source, arch_field, kwargs)
    n = kwargs.get("n_stages")
    for key in ("n_stages", *PER_STAGE_AXIS_LISTS):
        if key not in kwargs:
            raise OverlayError(source, f"{arch_field}.{key}", "missing (required)")
    for key in (*PER_STAGE_INT_LISTS, *PER_STAGE_AXIS_LISTS):
        needed = n - 1 if key == "n_conv_per_stage_decoder" else n
        if key in kwargs and len(kwargs[key]) != needed:
            raise OverlayError(source, f"{arch_field}.{key}", f"has {len(kwargs[key])} entries; n_stages = {n} "
                                                              f"needs {needed}")
    for key in PER_STAGE_AXIS_LISTS:
        for i, stage in enumerate(kwargs[key]):
            if len(stage) != dims:
                raise OverlayError(source, f"{arch_field}.{key}[{i}]", f"has {len(stage)} axes; the configuration "
                                                                      f"is {dims}D")
    for axis, size in enumerate(entry["patch_size"]):
        factor = math.prod(stride[axis] for stride in kwargs["strides"])
        if size % factor:
            raise OverlayError(source, f"{field}.patch_size", f"{entry['patch_size']} is not divisible by the total "
                                                              f"stride {factor} along axis {axis}")
    class_name = entry["architecture"].get("network_class_name")
    if not isinstance(class_name, str) or _locate(class_name) is None:
        raise OverlayError(source, f"{field}.architecture.network_class_name",
                           f"{json.dumps(class_name)} is not a class nnU-Net can import")
    for key in entry["architecture"].get("_kw_requires_import", []):
        value = kwargs.get(key)
        if value is None:
            continue
        found = _locate(value) if isinstance(value, str) else None
        if found is None:
            raise OverlayError(source, f"{arch_field}.{key}", f"{json.dumps(value)} is not a class that can be imported")
        suffix = re.search(r"(\d)d$", found.__name__)
        if key in ("conv_op", "norm_op", "dropout_op") and suffix and int(suffix.group(1)) != dims:
            raise OverlayError(source, f"{arch_field}.{key}", f"{found.__name__} in a {dims}D configuration")
