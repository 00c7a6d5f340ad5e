"""The report's pictures: 8-bit PNGs (the radiograph, lung and bone images at the ORIGINAL resolution; heatmaps at
most OVERLAY_SIDE / MAP_SIDE px), and small previews for the HTML page.

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
from cxrassist.postprocess import (
    SOFT_TISSUE_WINDOW,
    DisplayWindow,
    as_uint8,
    bone_display_window,
    colormap,
    heatmap_to_original_u8,
    overlay_contour,
    overlay_heatmap,
)
from cxrassist.preprocess import SpatialRecord

PREVIEW_SIDE = 768
#: Heatmap PNGs: the overlay at most this long side, the grey map at most MAP_SIDE. A CAM holds no detail finer than
#: its cells (~1/7-1/16 of the film), and 26 full-resolution copies took 3-4 s of a 5-s ``cxr analyze``; viewers scale
#: the map onto the radiograph (the web viewer does).
OVERLAY_SIDE = 1024
MAP_SIDE = 512
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


def heatmap_legend(meaning: str | None = None) -> dict[str, object]:
    """What the heatmap colours mean and how they are drawn (``report.json``'s ``heatmap_legend``).

    ``meaning``: the classifier's own sentence (``explain.cam.heatmap_meaning``), default the generic one."""
    return {
        "meaning": meaning or HEATMAP_MEANING,
        "zero": "the lowest value of this finding's map in this film",
        "one": "the highest value of this finding's map in this film",
        "transparent_below": HEATMAP_FLOOR,
        "opacity": HEATMAP_OPACITY,
        "colors": ["#{:02x}{:02x}{:02x}".format(*c) for c in as_uint8(colormap(np.linspace(0, 1, 7)))],
    }


def _legend_bar(width: int, height: int) -> np.ndarray:
    """The legend's colour bar as RGB uint8: colour of heat v at column v, dark grey below the floor."""
    levels = np.linspace(0.0, 1.0, width, dtype=np.float32)
    row = as_uint8(colormap(levels))
    row[levels < HEATMAP_FLOOR] = (40, 40, 40)
    return np.repeat(row[None], height, axis=0)


def burn_legend(rgb: np.ndarray) -> np.ndarray:
    """The heatmap legend drawn into the bottom-right corner (0 ... 1 colour bar, labelled), so a heatmap picture
    read alone (a PNG, a DICOM Secondary Capture in PACS) still says what its colours mean. Returns a new array."""
    from PIL import ImageDraw, ImageFont

    h, w = rgb.shape[:2]
    bar_w, bar_h = max(40, w // 4), max(6, h // 60)
    font_px = max(10, int(bar_h * 1.6))
    pad = max(4, bar_h // 2)
    box_w, box_h = bar_w + 2 * pad + 2 * font_px, bar_h + 3 * pad + font_px
    if box_w >= w or box_h >= h:
        return np.array(rgb, copy=True)
    image = Image.fromarray(np.array(rgb, copy=True))
    draw = ImageDraw.Draw(image)
    x0, y0 = w - box_w - pad, h - box_h - pad
    draw.rectangle((x0, y0, x0 + box_w, y0 + box_h), fill=(0, 0, 0))
    bx, by = x0 + pad + font_px, y0 + pad
    image.paste(Image.fromarray(_legend_bar(bar_w, bar_h)), (bx, by))
    font = ImageFont.load_default(size=font_px)
    draw.text((x0 + pad, by + bar_h // 2), "0", fill=(255, 255, 255), font=font, anchor="lm")
    draw.text((bx + bar_w + pad, by + bar_h // 2), "1", fill=(255, 255, 255), font=font, anchor="lm")
    draw.text(
        (bx, by + bar_h + pad),
        "evidence: where, not how likely",
        fill=(220, 220, 220),
        font=ImageFont.load_default(size=max(9, font_px * 3 // 4)),
        anchor="lt",
    )
    return np.asarray(image)


def heatmap_picture(gray: np.ndarray, heat: np.ndarray, *, legend: bool = True) -> np.ndarray:
    """THE heatmap rendering (report PNGs, HTML previews, DICOM Secondary Capture; the viewer blends the grey map
    with the same colours, floor and opacity): ``overlay_heatmap`` at HEATMAP_OPACITY / HEATMAP_FLOOR, plus the
    burnt-in legend."""
    rgb = overlay_heatmap(gray, heat, alpha=HEATMAP_OPACITY, floor=HEATMAP_FLOOR)
    return burn_legend(rgb) if legend else rgb


def heatmap_overlay(base8: np.ndarray, cam: np.ndarray, record: SpatialRecord) -> np.ndarray:
    """A finding's heatmap drawn over ``base8`` (the radiograph as uint8, already shrunk to ``overlay_base``): the
    picture of the report's heatmap PNGs and of the DICOM Secondary Captures, the same pixels in both."""
    heat = heatmap_to_original_u8(cam, record, size=(base8.shape[1], base8.shape[0]))
    return heatmap_picture(base8, heat)


def overlay_base(gray8: np.ndarray) -> np.ndarray:
    """The radiograph under the heatmap overlays, its long side at most OVERLAY_SIDE: a CAM holds no detail finer
    than its cells, and a 2k RGB overlay is 11 MB to write and to send to a PACS where 1k is 2.6 MB (the original
    film, at full resolution, sits beside it in the same study)."""
    return _shrink(gray8, OVERLAY_SIDE)


def bone_windows(result: AnalysisResult) -> dict[str, DisplayWindow]:
    """The display windows of the two bone pictures (PNGs, previews, DICOM SC, viewer; stated in report.json):
    the bone image stretched between robust percentiles of the thorax, the soft tissue in the radiograph's range."""
    return {"subtracted": bone_display_window(result.bone, result.lung_mask), "suppressed": SOFT_TISSUE_WINDOW}


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
    windows = bone_windows(result)
    yield "bone_subtracted", as_uint8(windows["subtracted"].apply(result.bone))
    yield "bone_suppressed", as_uint8(windows["suppressed"].apply(result.bone_suppressed))
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
    rendered.files = dict.fromkeys(paths)
    if not write_png and not previews:
        return rendered
    pending: list[Future[None]] = []

    def emit(pool: ThreadPoolExecutor, key: str, picture: np.ndarray) -> None:
        pending.append(pool.submit(save_png, to_image(picture), out_dir / paths[key]))
        rendered.files[key] = paths[key]
        if len(pending) > 2 * _SAVE_THREADS:  # bound the memory held by queued pictures
            pending.pop(0).result()

    def preview(key: str, small: np.ndarray) -> None:
        rendered.previews[key] = data_uri(
            Image.fromarray(small), fmt="JPEG" if key.startswith(_JPEG_PREVIEWS) else "PNG"
        )

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
        ov_base = {"frontal": overlay_base(gray8)}
        cams = {"frontal": (result.cams, result.cam_record)}
        if lateral8 is not None and result.lateral_cams is not None and result.lateral_record is not None:
            ov_base["lateral"] = overlay_base(lateral8)
            cams["lateral"] = (result.lateral_cams, result.lateral_record)
        small = {"frontal": gray_small, "lateral": lat_small}
        for i, f in enumerate(FINDINGS):
            for view, (maps, record) in cams.items():
                key = f"heatmap:{f.code}" if view == "frontal" else f"heatmap_lateral:{f.code}"
                base = ov_base[view]
                heat = heatmap_to_original_u8(maps[i], record, size=(base.shape[1], base.shape[0]))
                if write_png:
                    if view == "frontal":
                        emit(pool, f"heatmap_map:{f.code}", _shrink(heat, MAP_SIDE))
                    emit(pool, key, heatmap_picture(base, heat))
                base_small = small[view]
                if previews and base_small is not None:
                    heat_small = np.asarray(
                        Image.fromarray(heat).resize(
                            (base_small.shape[1], base_small.shape[0]), Image.Resampling.BILINEAR, reducing_gap=2.0
                        )
                    )
                    preview(key, heatmap_picture(base_small, heat_small))
        for fut in pending:
            fut.result()
    return rendered
