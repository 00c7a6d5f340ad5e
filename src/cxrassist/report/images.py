"""The report's pictures: 8-bit PNGs at the ORIGINAL resolution, and small previews for the HTML page.

Every picture is rendered once, written (when PNGs were asked for), and downscaled for the self-contained HTML
(as a data URI), so a 2k radiograph never has to be held 13 times in memory.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cxrassist.explain.cam import HEATMAP_MEANING
from cxrassist.labels import FINDINGS
from cxrassist.pipeline import AnalysisResult
from cxrassist.postprocess import as_uint8, colormap, overlay_contour, overlay_heatmap

PREVIEW_SIDE = 768
#: Heatmap drawing, shared by the PNGs, the HTML legend and the viewer (study.js draws with the same numbers): the
#: colour's weight in the blend is HEATMAP_OPACITY x (heat - floor) / (1 - floor), nothing below the floor.
HEATMAP_OPACITY = 0.5
HEATMAP_FLOOR = 0.2
_SAVE_THREADS = max(1, min(4, os.cpu_count() or 1))
PNG_COMPRESS_LEVEL = 1  # fast zlib: full-resolution PNGs dominate report time otherwise


def to_image(arr: np.ndarray) -> Image.Image:
    """(H, W) grey or (H, W, 3) RGB, [0, 1] float or uint8 -> a Pillow image."""
    return Image.fromarray(as_uint8(arr), mode="RGB" if np.ndim(arr) == 3 else "L")


def save_png(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def data_uri(image: Image.Image, *, max_side: int = PREVIEW_SIDE, fmt: str = "PNG") -> str:
    """A downscaled copy of ``image`` as a ``data:`` URI for the self-contained HTML page."""
    preview = image.copy()
    preview.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    buf = io.BytesIO()
    if fmt == "JPEG":
        preview.convert("RGB").save(buf, format="JPEG", quality=85)
        mime = "image/jpeg"
    else:
        preview.save(buf, format="PNG", optimize=False)
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def heatmap_legend() -> dict[str, object]:
    """What the heatmap colours mean and how they are drawn (``report.json``'s ``heatmap_legend``)."""
    return {
        "meaning": HEATMAP_MEANING,
        "zero": "the lowest value of this finding's map in this film",
        "one": "the highest value of this finding's map in this film",
        "transparent_below": HEATMAP_FLOOR,
        "opacity": HEATMAP_OPACITY,
        "colors": ["#{:02x}{:02x}{:02x}".format(*c) for c in as_uint8(colormap(np.linspace(0, 1, 7)))],
    }


@dataclass
class RenderedImages:
    """Relative paths of the written PNGs (None when PNGs were not asked for) and data URIs of the previews."""

    files: dict[str, str | None] = field(default_factory=dict)
    previews: dict[str, str] = field(default_factory=dict)


# key -> relative path inside the report folder
def image_paths(result: AnalysisResult) -> dict[str, str]:
    paths = {
        "radiograph": "images/radiograph.png",
        "lung_mask": "lung/mask.png",
        "lung_segmented": "lung/lung_segmented.png",
        "lung_contour": "lung/contour.png",
        "bone_subtracted": "bone/bone_subtracted.png",
        "bone_suppressed": "bone/bone_suppressed.png",
    }
    if result.lateral is not None:
        paths["lateral"] = "images/lateral.png"
    for f in FINDINGS:
        paths[f"heatmap:{f.code}"] = f"heatmaps/{f.code}_overlay.png"
        paths[f"heatmap_map:{f.code}"] = f"heatmaps/{f.code}_map.png"
        if result.lateral_cams is not None:
            paths[f"heatmap_lateral:{f.code}"] = f"heatmaps/{f.code}_lateral_overlay.png"
    return paths


def _shrink(picture: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    """Downscale a uint8 picture so its long side is at most ``side`` (previews)."""
    h, w = picture.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return picture
    image = Image.fromarray(picture)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))


def _plain_pictures(result: AnalysisResult, gray8: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    yield "radiograph", gray8
    yield "lung_mask", result.lung_mask.astype(np.uint8) * np.uint8(255)
    yield "lung_segmented", gray8 * result.lung_mask
    yield "lung_contour", overlay_contour(gray8, result.lung_mask, thickness=max(2, max(gray8.shape) // 400))
    yield "bone_subtracted", as_uint8(result.bone)
    yield "bone_suppressed", as_uint8(result.bone_suppressed)
    if result.lateral is not None:
        yield "lateral", as_uint8(result.lateral.pixels)


_JPEG_PREVIEWS = ("heatmap", "radiograph", "lateral", "bone_", "lung_segmented")


def render_images(result: AnalysisResult, out_dir: Path, *, write_png: bool, previews: bool) -> RenderedImages:
    """Write the PNGs under ``out_dir`` (if ``write_png``) and make HTML previews (if ``previews``).

    Full-resolution pictures are rendered one at a time and PNG-encoded on a small thread pool (Pillow releases
    the GIL while compressing); heatmap previews are blended directly at preview size.
    """
    rendered = RenderedImages()
    paths = image_paths(result)
    rendered.files = {key: None for key in paths}
    if not write_png and not previews:
        return rendered
    pending: list[Future[None]] = []

    def emit(pool: ThreadPoolExecutor, key: str, picture: np.ndarray) -> None:
        pending.append(pool.submit(save_png, to_image(picture), out_dir / paths[key]))
        rendered.files[key] = paths[key]
        if len(pending) > 2 * _SAVE_THREADS:  # bound the memory held by queued pictures
            pending.pop(0).result()

    def preview(key: str, small: np.ndarray) -> None:
        rendered.previews[key] = data_uri(Image.fromarray(small), fmt="JPEG" if key.startswith(_JPEG_PREVIEWS)
                                          else "PNG")

    gray8 = as_uint8(result.frontal.pixels)
    lateral8 = as_uint8(result.lateral.pixels) if result.lateral is not None else None
    with ThreadPoolExecutor(max_workers=_SAVE_THREADS) as pool:
        for key, picture in _plain_pictures(result, gray8):
            if write_png:
                emit(pool, key, picture)
            if previews and key != "lung_mask":
                preview(key, _shrink(picture))
        gray_small = _shrink(gray8) if previews else None
        lat_small = _shrink(lateral8) if previews and lateral8 is not None else None
        for f in FINDINGS:
            views = [("frontal", gray8, gray_small, f"heatmap:{f.code}")]
            if lateral8 is not None and result.lateral_cams is not None:
                views.append(("lateral", lateral8, lat_small, f"heatmap_lateral:{f.code}"))
            for view, base, base_small, key in views:
                heat8 = result.heatmap_u8(f.code, view)
                if write_png:
                    if view == "frontal":
                        emit(pool, f"heatmap_map:{f.code}", heat8)
                    emit(pool, key, overlay_heatmap(base, heat8, alpha=HEATMAP_OPACITY, floor=HEATMAP_FLOOR))
                if previews and base_small is not None:
                    heat_small = np.asarray(Image.fromarray(heat8).resize(
                        (base_small.shape[1], base_small.shape[0]), Image.Resampling.BILINEAR, reducing_gap=2.0))
                    preview(key, overlay_heatmap(base_small, heat_small, alpha=HEATMAP_OPACITY,
                                                  floor=HEATMAP_FLOOR))
        for fut in pending:
            fut.result()
    return rendered
