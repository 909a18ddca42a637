"""The one reader of image files: proves a NIfTI file is complete before SimpleITK reads it.

SimpleITK reads the first half of a ``.nii.gz`` (an interrupted copy or download) without complaint
and fills the missing voxels with zeros. :func:`read_image` therefore checks, before reading:

* ``.nii.gz``: the gzip stream decompresses to its end (end-of-stream marker, CRC and length);
* ``.nii`` and ``.nii.gz``: the NIfTI-1/2 header is readable and the data after ``vox_offset``
  holds at least the header's voxel count times its bytes per voxel;
* float32/float64 data hold no NaN or infinite voxel (SimpleITK reads them as 0);

and after reading, that the image has the header's voxel count. Every failure is an
:class:`ImageFileError` (a ``ValueError``) whose message starts with the file's path. Other formats
(``.mha``, ``.nrrd``, ...) are read by SimpleITK unchecked.

:func:`read_header` reads only the header (size, spacing, origin, direction) of a file proven
complete the same way.

Also here: :class:`Geometry` (spacing, origin, direction) and its :meth:`Geometry.mismatch`, the one
comparison of two grids, which :func:`geometry_mismatch` (two images: size first), the converter,
``evaluate`` and post-processing share. Tolerances where ACDC gives none: spacing may differ by 1e-4
relative, origin by 1e-3 mm plus 1e-4 of the spacing, direction cosines by 1e-4 (ITK's own geometry
check uses similar values).
"""

from __future__ import annotations

import gzip
import itertools
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SPACING_RTOL = 1e-4
ORIGIN_ATOL_MM = 1e-3
DIRECTION_ATOL = 1e-4
_CHUNK = 1 << 22


class ImageFileError(ValueError):
    """An image file that is missing nothing on disk but cannot be trusted: ``reason`` says why."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class _Layout:
    """Where a NIfTI file's voxels are: ``count`` voxels in ``data_bytes`` bytes from ``data_start``."""

    count: int
    data_start: int
    data_bytes: int
    float_dtype: np.dtype | None  # float32/float64 data are scanned for NaN and inf


def _header_layout(header: bytes, path: Path) -> _Layout:
    """The voxel layout a NIfTI-1/2 header announces; ImageFileError when it is no usable header."""
    if len(header) < 4:
        raise ImageFileError(path, f"only {len(header)} bytes, not a NIfTI file")
    for order in ("<", ">"):
        size = struct.unpack(order + "i", header[:4])[0]
        if size in (348, 540):
            break
    else:
        raise ImageFileError(path, "not a NIfTI-1/2 file (header size field is neither 348 nor 540)")
    if len(header) < size:
        raise ImageFileError(path, f"file ends inside the {size}-byte NIfTI header; the file is incomplete")
    if size == 348:
        dim = struct.unpack(order + "8h", header[40:56])
        datatype, bitpix = struct.unpack(order + "2h", header[70:74])
        vox_offset = int(struct.unpack(order + "f", header[108:112])[0])
    else:
        datatype, bitpix = struct.unpack(order + "2h", header[12:16])
        dim = struct.unpack(order + "8q", header[16:80])
        vox_offset = struct.unpack(order + "q", header[168:176])[0]
    if not 1 <= dim[0] <= 7:
        raise ImageFileError(path, f"NIfTI header has {dim[0]} dimensions (1..7 allowed)")
    shape = dim[1: dim[0] + 1]
    if any(d < 1 for d in shape) or bitpix < 1 or bitpix % 8:
        raise ImageFileError(path, f"NIfTI header is invalid (dim {list(shape)}, bitpix {bitpix})")
    count = int(np.prod(shape, dtype=np.int64))
    floats = {16: "f4", 64: "f8"}
    dtype = np.dtype(order + floats[datatype]) if datatype in floats else None
    return _Layout(count, max(vox_offset, size), count * bitpix // 8, dtype)


def _content_chunks(path: Path):
    """The file's content (decompressed for ``.nii.gz``, read to the end of the gzip stream) in chunks."""
    if path.name.lower().endswith(".gz"):
        with open(path, "rb") as stream:
            if stream.read(2) != b"\x1f\x8b":
                raise ImageFileError(path, "not a gzip-compressed NIfTI (the file does not start with the gzip "
                                           "signature; is it a renamed text or .nii file?)")
        try:
            with gzip.open(path, "rb") as stream:
                while chunk := stream.read(_CHUNK):
                    yield chunk
        except (EOFError, OSError, zlib.error) as exc:
            raise ImageFileError(path, f"truncated or corrupt gzip stream ({exc}); the file is incomplete") from None
    else:
        with open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                yield chunk


def _scan(path: Path) -> tuple[_Layout, int, int]:
    """(layout, content length, NaN/inf voxel count) of a NIfTI file, in one pass over its content."""
    layout, head, total, non_finite, pending = None, b"", 0, 0, b""
    # the empty chunk at the end gets the header of a file shorter than 540 bytes parsed too
    for chunk in itertools.chain(_content_chunks(path), [b""]):
        if layout is None:
            head += chunk
            if chunk and len(head) < 540:
                continue
            layout, chunk = _header_layout(head, path), head
        if layout.float_dtype is not None:  # the chunk's bytes inside the voxel data, whole voxels only
            lo = max(layout.data_start - total, 0)
            hi = max(min(layout.data_start + layout.data_bytes - total, len(chunk)), 0)
            data = pending + chunk[lo:hi]
            whole = len(data) - len(data) % layout.float_dtype.itemsize
            values = np.frombuffer(data[:whole], dtype=layout.float_dtype)
            non_finite += int(values.size - np.count_nonzero(np.isfinite(values)))
            pending = data[whole:]
        total += len(chunk)
    return layout, total, non_finite


def check_complete(path: str | os.PathLike) -> int | None:
    """Raise :class:`ImageFileError` unless a ``.nii``/``.nii.gz`` file holds all its voxels, all finite.

    Returns the header's voxel count (None for formats that are not checked)."""
    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return None
    layout, total, non_finite = _scan(path)
    needed = layout.data_start + layout.data_bytes
    if total < needed:
        raise ImageFileError(path, f"holds {total} bytes of NIfTI data, its header needs {needed} "
                                   f"({layout.count} voxels); the file is incomplete")
    if non_finite:
        # SimpleITK would read them as 0
        raise ImageFileError(path, f"has {non_finite} NaN or infinite voxels")
    return layout.count


def _proven_complete(path: str | os.PathLike) -> tuple[Path, int | None]:
    """(path, header voxel count) of an existing file that :func:`check_complete` accepts."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found" + (" (it is a folder)" if path.is_dir() else ""))
    return path, check_complete(path)


def _unreadable(path: Path, exc: RuntimeError) -> ImageFileError:
    lines = str(exc).strip().splitlines()
    return ImageFileError(path, f"cannot be read ({lines[-1] if lines else 'SimpleITK error'})")


def _check_count(path: Path, size, components: int, count: int | None) -> None:
    read = int(np.prod(size, dtype=np.int64)) * components
    if count is not None and read != count:
        raise ImageFileError(path, f"SimpleITK read {read} voxels, the header says {count}")


def read_image(path: str | os.PathLike) -> sitk.Image:
    """Read an image file that is proven complete (see the module docstring).

    FileNotFoundError when the path is not a file; :class:`ImageFileError` (a ValueError) otherwise."""
    path, count = _proven_complete(path)
    try:
        image = sitk.ReadImage(os.fspath(path))
    except RuntimeError as exc:
        raise _unreadable(path, exc) from None
    _check_count(path, image.GetSize(), image.GetNumberOfComponentsPerPixel(), count)
    return image


def read_header(path: str | os.PathLike) -> sitk.ImageFileReader:
    """The header (``GetSize``, ``GetSpacing``, ...) of an image file proven complete, voxels not kept.

    Errors as :func:`read_image`."""
    path, count = _proven_complete(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(os.fspath(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise _unreadable(path, exc) from None
    _check_count(path, reader.GetSize(), reader.GetNumberOfComponents(), count)
    return reader


@dataclass(frozen=True)
class Geometry:
    """A grid as SimpleITK gives it: spacing, origin in (x, y, z) order; direction row-major."""

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image | sitk.ImageFileReader) -> "Geometry":
        return cls(tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection()))

    @property
    def array_spacing(self) -> tuple[float, ...]:
        """Spacing in the numpy array's axis order (z, y, x)."""
        return tuple(reversed(self.spacing))

    def mismatch(self, other: "Geometry") -> str | None:
        """Describe the first difference from ``other`` beyond the tolerances, or None if they match."""
        if len(self.spacing) != len(other.spacing):
            return f"dimension {len(self.spacing)} vs {len(other.spacing)}"
        sa, sb = np.array(self.spacing), np.array(other.spacing)
        if not np.allclose(sa, sb, rtol=SPACING_RTOL, atol=0.0):
            return f"spacing {tuple(sa)} vs {tuple(sb)}"
        oa, ob = np.array(self.origin), np.array(other.origin)
        if not np.allclose(oa, ob, rtol=0.0, atol=ORIGIN_ATOL_MM + 1e-4 * float(sa.max())):
            return f"origin {tuple(oa)} vs {tuple(ob)}"
        da, db = np.array(self.direction), np.array(other.direction)
        if da.shape != db.shape or not np.allclose(da, db, rtol=0.0, atol=DIRECTION_ATOL):
            return f"direction {tuple(da)} vs {tuple(db)}"
        return None


def geometry_mismatch(a: sitk.Image | sitk.ImageFileReader, b: sitk.Image | sitk.ImageFileReader) -> str | None:
    """Describe the first geometric difference (size, then :meth:`Geometry.mismatch`) of two images, or None."""
    if a.GetSize() != b.GetSize():
        return f"size {a.GetSize()} vs {b.GetSize()}"
    return Geometry.of(a).mismatch(Geometry.of(b))
