"""The synthetic default dataset: small driving-like scenes written in KITTI layout.

Each image is a road scene seen from a car-mounted camera (horizon, road with lane
marks, sidewalks, far buildings, clutter such as poles, trees, signs and bins) with
Car, Van, Pedestrian and Cyclist instances placed by a pin-hole ground-plane model:
farther objects are smaller and nearer the horizon. Objects are drawn far to near into
an instance-id buffer, so every label is measured from the rendering:

- the 2D box is the tight box of the object's silhouette, clipped to the image (as in
  KITTI); coordinates are pixel edges, so x2 <= width;
- truncation is the fraction of the unclipped box's area outside the image;
- occlusion is the fraction of the object's in-image silhouette pixels covered by nearer
  objects or clutter, mapped to KITTI levels by `OCCLUSION_LEVEL_BOUNDS`.

Instances differ in difficulty on purpose: heights from 10 px to over half the image,
a quarter of them drawn at low contrast against the background, occluded, truncated.
Objects hidden beyond `DONTCARE_HIDDEN_FRACTION`, and clusters of tiny far vehicles,
become DontCare regions.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from liafkd.config import ConfigError, DatasetConfig

GENERATOR_VERSION = 2
META_FILE = "synthetic_meta.json"
CLASS_NAMES = ("Car", "Van", "Pedestrian", "Cyclist")
# occlusion fraction upper bounds of KITTI levels 0 (fully visible) and 1 (partly
# occluded); anything above is level 2 (largely occluded). Level 3 (unknown) is unused.
OCCLUSION_LEVEL_BOUNDS = (0.10, 0.40)
# objects with more of their in-image silhouette hidden are written as DontCare
DONTCARE_HIDDEN_FRACTION = 0.85
MAX_TRUNCATION = 0.7
MIN_OBJECT_HEIGHT_PX = 10.0
CAMERA_HEIGHT_M = 1.65
FOCAL_PER_WIDTH = 0.58  # KITTI: focal 721 px for a 1242 px wide image
BACKGROUND_ID = -2
CLUTTER_ID = -1

CLASS_HEIGHT_M = {
    "Car": (1.5, 0.1),
    "Van": (2.1, 0.15),
    "Pedestrian": (1.72, 0.12),
    "Cyclist": (1.7, 0.08),
}
CLASS_WIDTH_M = {"Car": 1.65, "Van": 1.9, "Pedestrian": 0.6, "Cyclist": 0.6}
CLASS_LENGTH_M = {"Car": 4.0, "Van": 5.0, "Pedestrian": 0.8, "Cyclist": 1.8}
CLASS_WEIGHTS = {"Car": 0.52, "Van": 0.1, "Pedestrian": 0.24, "Cyclist": 0.14}
CAR_COLORS = [
    (235, 235, 235),
    (190, 192, 196),
    (40, 40, 45),
    (170, 30, 30),
    (30, 60, 150),
    (90, 95, 100),
    (20, 90, 60),
    (200, 170, 60),
    (120, 20, 30),
    (60, 110, 170),
]
DRAW_COLORS = {
    "Car": (0, 255, 0),
    "Van": (0, 220, 255),
    "Pedestrian": (255, 40, 40),
    "Cyclist": (255, 220, 0),
    "DontCare": (160, 160, 160),
}


@dataclass
class RoadLayout:
    """Ground-plane camera model of one scene: pixels per metre at a ground row."""

    height: int
    width: int
    horizon: float
    vanish_x: float
    road_half_m: float

    @property
    def focal(self) -> float:
        return FOCAL_PER_WIDTH * self.width

    def ground_row(self, px_per_m: float) -> float:
        return self.horizon + px_per_m * CAMERA_HEIGHT_M

    def px_per_m(self, ground_row: float) -> float:
        return (ground_row - self.horizon) / CAMERA_HEIGHT_M


@dataclass
class SceneObject:
    """One thing drawn into the scene: a labelled class or an unlabelled clutter kind.

    left/top/width/height: the sprite canvas in image pixels (may extend past the
    image); the silhouette inside it decides the exact box. depth_m orders drawing."""

    kind: str
    left: int
    top: int
    width: int
    height: int
    depth_m: float
    lateral_m: float = 0.0
    rot_y: float = -math.pi / 2
    dims_m: tuple[float, float, float] = (1.5, 1.6, 3.9)  # h, w, l
    contrast: float = 1.0  # 1 keeps the sprite's colours; lower blends toward the background
    seed: int = 0  # sprite colours and pose

    @property
    def labelled(self) -> bool:
        return self.kind in CLASS_NAMES


@dataclass
class ObjectLabel:
    """What the renderer measured for one labelled object."""

    obj: SceneObject
    box: tuple[float, float, float, float]  # clipped xyxy, pixel edges
    full_box: tuple[float, float, float, float]  # unclipped
    truncation: float
    occlusion: float  # fraction of in-image silhouette hidden by nearer things

    @property
    def occlusion_level(self) -> int:
        return occlusion_level(self.occlusion)


@dataclass
class SceneLabels:
    objects: list[ObjectLabel]
    dontcare: list[tuple[float, float, float, float]] = field(default_factory=list)


def occlusion_level(fraction: float) -> int:
    low, mid = OCCLUSION_LEVEL_BOUNDS
    return 0 if fraction < low else 1 if fraction < mid else 2


# ---------------------------------------------------------------- sprites


def _jitter(rng: np.random.Generator, color: Sequence[int], amount: float) -> tuple[int, ...]:
    """RGBA `color` with its brightness varied by `amount` and its hue only slightly."""
    values = np.asarray(color, np.float64) + rng.normal(0, amount) + rng.normal(0, amount / 4, 3)
    return tuple(int(v) for v in np.clip(values, 0, 255)) + (255,)


def _line_width(height: int, fraction: float) -> int:
    return max(1, round(height * fraction))


def _draw_car_side(d: ImageDraw.ImageDraw, w: int, h: int, body, glass, rng) -> None:
    facing_right = rng.random() < 0.5
    d.rounded_rectangle([0, 0.36 * h, w - 1, 0.86 * h], radius=max(1, 0.12 * h), fill=body)
    roof = [0.28 * w, 0.74 * w] if facing_right else [0.26 * w, 0.72 * w]
    base = [0.12 * w, 0.86 * w] if facing_right else [0.14 * w, 0.88 * w]
    d.polygon([(base[0], 0.4 * h), (roof[0], 0), (roof[1], 0), (base[1], 0.4 * h)], fill=body)
    inset = max(1.0, 0.08 * h)
    d.polygon(
        [
            (base[0] + 2 * inset, 0.38 * h),
            (roof[0] + inset, inset),
            (roof[1] - inset, inset),
            (base[1] - 2 * inset, 0.38 * h),
        ],
        fill=glass,
    )
    pillar = (roof[0] + roof[1]) / 2
    d.line([(pillar, 0), (pillar, 0.4 * h)], fill=body, width=_line_width(h, 0.05))
    radius = 0.16 * h
    for cx in (0.21 * w, 0.79 * w):
        d.ellipse([cx - radius, h - 1 - 2 * radius, cx + radius, h - 1], fill=(25, 25, 25, 255))
        hub = radius * 0.45
        cy = h - 1 - radius
        d.ellipse([cx - hub, cy - hub, cx + hub, cy + hub], fill=(150, 150, 150, 255))


def _draw_car_end(d: ImageDraw.ImageDraw, w: int, h: int, body, glass, rear: bool) -> None:
    wheel_w = 0.16 * w
    d.rectangle([0.04 * w, 0.75 * h, 0.04 * w + wheel_w, h - 1], fill=(25, 25, 25, 255))
    d.rectangle([0.96 * w - wheel_w, 0.75 * h, 0.96 * w, h - 1], fill=(25, 25, 25, 255))
    d.rounded_rectangle([0, 0.36 * h, w - 1, 0.88 * h], radius=max(1, 0.1 * h), fill=body)
    d.polygon([(0.06 * w, 0.4 * h), (0.18 * w, 0), (0.82 * w, 0), (0.94 * w, 0.4 * h)], fill=body)
    inset = max(1.0, 0.07 * h)
    d.polygon(
        [
            (0.14 * w, 0.38 * h),
            (0.2 * w + inset, inset),
            (0.8 * w - inset, inset),
            (0.86 * w, 0.38 * h),
        ],
        fill=glass,
    )
    lamp = (200, 20, 20, 255) if rear else (250, 245, 200, 255)
    d.rectangle([0.04 * w, 0.46 * h, 0.2 * w, 0.58 * h], fill=lamp)
    d.rectangle([0.8 * w, 0.46 * h, 0.96 * w, 0.58 * h], fill=lamp)
    d.rectangle([0.38 * w, 0.64 * h, 0.62 * w, 0.76 * h], fill=(230, 230, 220, 255))


def _draw_van_side(d: ImageDraw.ImageDraw, w: int, h: int, body, glass, rng) -> None:
    front_left = rng.random() < 0.5
    nose = 0.16 * w
    if front_left:
        outline = [(nose, 0), (w - 1, 0), (w - 1, 0.86 * h), (0, 0.86 * h), (0, 0.42 * h)]
    else:
        outline = [(0, 0), (w - 1 - nose, 0), (w - 1, 0.42 * h), (w - 1, 0.86 * h), (0, 0.86 * h)]
    d.polygon(outline, fill=body)
    inset = max(1.0, 0.07 * h)
    x0, x1 = (nose + inset, w - 1 - inset) if front_left else (inset, w - 1 - nose - inset)
    d.rectangle([x0, inset, x1, 0.36 * h], fill=glass)
    for k in range(1, 4):
        x = x0 + (x1 - x0) * k / 4
        d.line([(x, inset), (x, 0.36 * h)], fill=body, width=_line_width(h, 0.04))
    radius = 0.15 * h
    for cx in (0.18 * w, 0.82 * w):
        d.ellipse([cx - radius, h - 1 - 2 * radius, cx + radius, h - 1], fill=(25, 25, 25, 255))


def _draw_van_end(d: ImageDraw.ImageDraw, w: int, h: int, body, glass, rear: bool) -> None:
    wheel_w = 0.15 * w
    d.rectangle([0.05 * w, 0.78 * h, 0.05 * w + wheel_w, h - 1], fill=(25, 25, 25, 255))
    d.rectangle([0.95 * w - wheel_w, 0.78 * h, 0.95 * w, h - 1], fill=(25, 25, 25, 255))
    d.rounded_rectangle([0, 0, w - 1, 0.88 * h], radius=max(1, 0.06 * h), fill=body)
    d.rectangle([0.12 * w, 0.08 * h, 0.88 * w, 0.4 * h], fill=glass)
    if rear:
        d.line([(w / 2, 0.08 * h), (w / 2, 0.85 * h)], fill=(30, 30, 30, 255), width=1)
    lamp = (200, 20, 20, 255) if rear else (250, 245, 200, 255)
    d.rectangle([0.03 * w, 0.55 * h, 0.15 * w, 0.68 * h], fill=lamp)
    d.rectangle([0.85 * w, 0.55 * h, 0.97 * w, 0.68 * h], fill=lamp)


def _vehicle_colors(rng: np.random.Generator):
    body = _jitter(rng, CAR_COLORS[rng.integers(len(CAR_COLORS))], 12)
    glass = _jitter(rng, (45, 60, 75) if rng.random() < 0.7 else (140, 165, 185), 10)
    return body, glass


def _draw_vehicle(d, w, h, rot_y, rng, van: bool) -> None:
    body, glass = _vehicle_colors(rng)
    side_view = abs(math.cos(rot_y)) > 0.5
    rear = math.sin(rot_y) < 0  # moving away from the camera shows the rear
    if van:
        _draw_van_side(d, w, h, body, glass, rng) if side_view else _draw_van_end(
            d, w, h, body, glass, rear
        )
    else:
        _draw_car_side(d, w, h, body, glass, rng) if side_view else _draw_car_end(
            d, w, h, body, glass, rear
        )


def _clothing(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    shirt = _jitter(rng, rng.integers(20, 235, 3), 0)
    pants = _jitter(rng, rng.choice([(30, 35, 60), (40, 40, 40), (110, 90, 70), (70, 80, 110)]), 10)
    skin = _jitter(rng, rng.choice([(235, 200, 170), (190, 140, 100), (120, 80, 55)]), 8)
    return shirt, pants, skin


def _draw_pedestrian(d, w: int, h: int, rng) -> None:
    shirt, pants, skin = _clothing(rng)
    cx = w / 2
    head = 0.13 * h
    d.ellipse([cx - head * 0.42, 0, cx + head * 0.42, head], fill=skin)
    torso_w = 0.56 * w
    d.rounded_rectangle(
        [cx - torso_w / 2, 0.12 * h, cx + torso_w / 2, 0.56 * h],
        radius=max(1, 0.04 * h),
        fill=shirt,
    )
    arm = max(1, round(0.18 * w))
    swing = (rng.random() - 0.5) * 0.3 * w
    d.line(
        [(cx - torso_w / 2, 0.15 * h), (arm / 2 + max(0, swing), 0.52 * h)], fill=shirt, width=arm
    )
    d.line(
        [(cx + torso_w / 2, 0.15 * h), (w - 1 - arm / 2 + min(0, swing), 0.52 * h)],
        fill=shirt,
        width=arm,
    )
    leg = max(1, round(0.22 * w))
    stride = rng.uniform(0.0, 0.32) * w
    d.line([(cx - 0.12 * w, 0.54 * h), (cx - 0.12 * w - stride, h - 1)], fill=pants, width=leg)
    d.line([(cx + 0.12 * w, 0.54 * h), (cx + 0.12 * w + stride, h - 1)], fill=pants, width=leg)


def _draw_cyclist(d, w: int, h: int, rot_y: float, rng) -> None:
    shirt, pants, skin = _clothing(rng)
    frame = _jitter(rng, rng.integers(30, 230, 3), 0)
    tyre = (20, 20, 20, 255)
    ring = _line_width(h, 0.05)
    radius = 0.21 * h
    cy = h - 1 - radius
    if abs(math.cos(rot_y)) > 0.5:  # side view: two wheels, rider leaning forward
        forward = 1 if rng.random() < 0.5 else -1
        back_x, front_x = (radius, w - 1 - radius)[::forward]
        for cx in (back_x, front_x):
            d.ellipse(
                [cx - radius, cy - radius, cx + radius, cy + radius], outline=tyre, width=ring
            )
        seat = (w / 2 - forward * 0.1 * w, 0.5 * h)
        bar = (front_x - forward * 0.1 * w, 0.45 * h)
        d.line(
            [(back_x, cy), seat, (w / 2, cy), (front_x, cy), bar, (w / 2, cy)],
            fill=frame,
            width=ring,
        )
        shoulder = (w / 2 + forward * 0.08 * w, 0.17 * h)
        d.line([seat, shoulder], fill=shirt, width=_line_width(h, 0.13))
        d.line([shoulder, bar], fill=shirt, width=_line_width(h, 0.05))
        d.line(
            [seat, (w / 2 + forward * 0.05 * w, 0.62 * h), (w / 2, cy)],
            fill=pants,
            width=_line_width(h, 0.07),
        )
        head = 0.12 * h
        hx = shoulder[0] + forward * 0.03 * w
        d.ellipse([hx - head / 2, 0, hx + head / 2, head], fill=skin)
    else:  # front or rear view: a dark tyre under a rider holding a wide handlebar
        cx = w / 2
        d.ellipse([cx - 0.1 * w, 0.5 * h, cx + 0.1 * w, h - 1], fill=tyre)
        d.line([(0.02 * w, 0.4 * h), (0.98 * w, 0.4 * h)], fill=frame, width=ring)
        d.rounded_rectangle(
            [cx - 0.28 * w, 0.12 * h, cx + 0.28 * w, 0.5 * h], radius=max(1, 0.04 * h), fill=shirt
        )
        arm = _line_width(h, 0.05)
        d.line([(cx - 0.28 * w, 0.18 * h), (0.04 * w, 0.4 * h)], fill=shirt, width=arm)
        d.line([(cx + 0.28 * w, 0.18 * h), (0.96 * w, 0.4 * h)], fill=shirt, width=arm)
        leg = _line_width(h, 0.07)
        pedal = 0.72 * h + rng.uniform(-0.08, 0.08) * h
        d.line(
            [(cx - 0.15 * w, 0.5 * h), (cx - 0.3 * w, 0.62 * h), (cx - 0.18 * w, pedal)],
            fill=pants,
            width=leg,
        )
        d.line(
            [(cx + 0.15 * w, 0.5 * h), (cx + 0.3 * w, 0.62 * h), (cx + 0.18 * w, 1.44 * h - pedal)],
            fill=pants,
            width=leg,
        )
        head = 0.12 * h
        d.ellipse([cx - head * 0.42, 0, cx + head * 0.42, head], fill=skin)


def _draw_clutter(d, kind: str, w: int, h: int, rng) -> None:
    grey = _jitter(rng, (70, 72, 75), 15)
    if kind == "pole":
        d.rectangle([0, 0, w - 1, h - 1], fill=grey)
    elif kind == "lamp":
        pole_w = max(1, round(0.12 * w))
        d.rectangle([w - pole_w, 0, w - 1, h - 1], fill=grey)
        d.line([(w - 1, 0.02 * h), (0, 0.04 * h)], fill=grey, width=max(1, pole_w))
        d.rectangle([0, 0.03 * h, 0.25 * w, 0.06 * h], fill=(230, 230, 200, 255))
    elif kind == "tree":
        trunk = _jitter(rng, (80, 60, 40), 10)
        d.rectangle([0.44 * w, 0.5 * h, 0.56 * w, h - 1], fill=trunk)
        leaves = _jitter(rng, (40, 100, 40), 20)
        for _ in range(5):
            cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.2, 0.45) * h
            r = rng.uniform(0.25, 0.35) * w
            d.ellipse([cx - r, cy - r * 1.1, cx + r, cy + r * 1.1], fill=leaves)
    elif kind == "sign":
        d.rectangle([0.45 * w, 0.25 * h, 0.55 * w, h - 1], fill=grey)
        face = _jitter(rng, [(200, 30, 30), (30, 70, 170), (230, 190, 30)][rng.integers(3)], 10)
        if rng.random() < 0.5:
            d.ellipse([0, 0, w - 1, 0.3 * h], fill=face)
        else:
            d.polygon([(w / 2, 0), (w - 1, 0.3 * h), (0, 0.3 * h)], fill=face)
    elif kind == "bush":
        leaves = _jitter(rng, (50, 95, 45), 20)
        d.ellipse([0, 0, w - 1, h - 1], fill=leaves)
        d.ellipse([0.2 * w, 0.1 * h, 0.9 * w, 0.8 * h], fill=_jitter(rng, leaves[:3], 15))
    elif kind == "bin":
        color = _jitter(rng, [(30, 90, 40), (60, 60, 65), (170, 120, 30)][rng.integers(3)], 10)
        d.rectangle([0, 0.1 * h, w - 1, h - 1], fill=color)
        d.rectangle([0, 0, w - 1, 0.14 * h], fill=_jitter(rng, color[:3], 20))
    elif kind == "far_vehicle":
        body, glass = _vehicle_colors(rng)
        d.rectangle([0, 0.35 * h, w - 1, h - 1], fill=body)
        d.rectangle([0.2 * w, 0, 0.8 * w, 0.4 * h], fill=glass)
    else:
        raise ValueError(f"unknown clutter kind {kind!r}")


def draw_sprite(obj: SceneObject) -> np.ndarray:
    """The object's RGBA sprite [height, width, 4]; alpha > 0 is its silhouette."""
    rng = np.random.default_rng(obj.seed)
    sprite = Image.new("RGBA", (obj.width, obj.height), (0, 0, 0, 0))
    d = ImageDraw.Draw(sprite)
    w, h = obj.width, obj.height
    if obj.kind in ("Car", "Van"):
        _draw_vehicle(d, w, h, obj.rot_y, rng, van=obj.kind == "Van")
    elif obj.kind == "Pedestrian":
        _draw_pedestrian(d, w, h, rng)
    elif obj.kind == "Cyclist":
        _draw_cyclist(d, w, h, obj.rot_y, rng)
    else:
        _draw_clutter(d, obj.kind, w, h, rng)
    return np.asarray(sprite)


# ---------------------------------------------------------------- rendering


def _sprite_window(obj: SceneObject, height: int, width: int):
    """Slices of the image and of the sprite where they overlap (None when disjoint)."""
    y0, x0 = max(obj.top, 0), max(obj.left, 0)
    y1, x1 = min(obj.top + obj.height, height), min(obj.left + obj.width, width)
    if y0 >= y1 or x0 >= x1:
        return None
    image_sl = (slice(y0, y1), slice(x0, x1))
    sprite_sl = (slice(y0 - obj.top, y1 - obj.top), slice(x0 - obj.left, x1 - obj.left))
    return image_sl, sprite_sl


def _tight_box(mask: np.ndarray, left: int, top: int) -> tuple[float, float, float, float] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return (left + cols[0], top + rows[0], left + cols[-1] + 1.0, top + rows[-1] + 1.0)


def _box_area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _clip_box(box: Sequence[float], height: int, width: int) -> tuple[float, float, float, float]:
    return (
        float(min(max(box[0], 0), width)),
        float(min(max(box[1], 0), height)),
        float(min(max(box[2], 0), width)),
        float(min(max(box[3], 0), height)),
    )


def _composite(canvas, ids, obj, instance_id, sprite, window) -> None:
    image_sl, sprite_sl = window
    part = sprite[sprite_sl]
    mask = part[..., 3] > 0
    rgb = part[..., :3].astype(np.float32)
    background = canvas[image_sl]
    if obj.contrast < 1.0 and mask.any():
        local_mean = background[mask].mean(axis=0)
        rgb = local_mean + (rgb - local_mean) * obj.contrast
    shade = np.linspace(1.06, 0.86, part.shape[0], dtype=np.float32)[:, None, None]
    background[mask] = (rgb * shade)[mask]
    ids[image_sl][mask] = instance_id


def _cast_shadow(canvas, ids, obj: SceneObject) -> None:
    """Darken the ground under a vehicle, only where nothing has been drawn yet."""
    height, width = ids.shape
    shadow = SceneObject(
        "shadow",
        obj.left,
        obj.top + obj.height - max(2, obj.height // 8),
        obj.width,
        max(2, obj.height // 6),
        obj.depth_m,
    )
    window = _sprite_window(shadow, height, width)
    if window is None:
        return
    image_sl, _ = window
    free = ids[image_sl] == BACKGROUND_ID
    canvas[image_sl][free] *= 0.55


def render_scene(canvas: np.ndarray, objects: Sequence[SceneObject]) -> SceneLabels:
    """Draw `objects` far to near onto `canvas` (float32 [H, W, 3], edited in place) and
    measure every labelled object's box, truncation and occlusion from the rendering.

    Labelled objects with any pixel inside the image come back in the order given."""
    height, width = canvas.shape[:2]
    ids = np.full((height, width), BACKGROUND_ID, np.int32)
    in_image_pixels = np.zeros(len(objects), np.int64)
    full_boxes: dict[int, tuple[float, float, float, float]] = {}
    for i in sorted(range(len(objects)), key=lambda k: -objects[k].depth_m):
        obj = objects[i]
        sprite = draw_sprite(obj)
        if obj.labelled:
            full = _tight_box(sprite[..., 3] > 0, obj.left, obj.top)
            if full is not None:
                full_boxes[i] = full
        window = _sprite_window(obj, height, width)
        if window is None:
            continue
        if obj.kind in ("Car", "Van"):
            _cast_shadow(canvas, ids, obj)
        in_image_pixels[i] = int((sprite[window[1]][..., 3] > 0).sum())
        _composite(canvas, ids, obj, i if obj.labelled else CLUTTER_ID, sprite, window)
    visible_pixels = np.bincount(ids[ids >= 0].ravel(), minlength=len(objects))
    return _measure(objects, full_boxes, in_image_pixels, visible_pixels, height, width)


def _measure(objects, full_boxes, in_image_pixels, visible_pixels, height, width) -> SceneLabels:
    labels = SceneLabels(objects=[])
    for i, full in sorted(full_boxes.items()):
        if in_image_pixels[i] == 0:
            continue
        box = _clip_box(full, height, width)
        truncation = 1.0 - _box_area(box) / _box_area(full)
        hidden = 1.0 - visible_pixels[i] / in_image_pixels[i]
        labels.objects.append(ObjectLabel(objects[i], box, full, float(truncation), float(hidden)))
    return labels


# ---------------------------------------------------------------- scene sampling


def _value_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: a coarse random grid resized bilinearly."""
    grid = rng.uniform(-1, 1, (max(2, cells * height // width), cells)).astype(np.float32)
    img = Image.fromarray(grid).resize((width, height), Image.BILINEAR)
    return np.asarray(img)


def _lerp(a, b, t: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a + (b - a) * t[..., None]


def _sky_and_ground(rng, layout: RoadLayout) -> np.ndarray:
    h, w, hz = layout.height, layout.width, int(layout.horizon)
    rows = np.arange(h, dtype=np.float32)
    sky_top = rng.choice([(95, 140, 210), (150, 160, 175), (120, 150, 200), (200, 160, 130)])
    sky_low = np.clip(np.asarray(sky_top) + rng.uniform(40, 80), 0, 255)
    ground_far = _jitter(rng, rng.choice([(110, 125, 80), (135, 120, 95), (95, 110, 70)]), 10)[:3]
    ground_near = np.clip(np.asarray(ground_far) * rng.uniform(0.7, 0.95), 0, 255)
    canvas = np.empty((h, w, 3), np.float32)
    canvas[:hz] = _lerp(sky_top, sky_low, rows[:hz] / max(hz, 1))[:, None, :]
    canvas[hz:] = _lerp(ground_far, ground_near, (rows[hz:] - hz) / max(h - hz, 1))[:, None, :]
    clouds = _value_noise(rng, h, w, 8) * rng.uniform(5, 20)
    canvas[:hz] += clouds[:hz, :, None]
    return canvas


def _road_polygon(layout: RoadLayout, half_m: float) -> list[tuple[float, float]]:
    bottom = layout.px_per_m(layout.height)
    return [
        (layout.vanish_x - 0.5, layout.horizon),
        (layout.vanish_x + 0.5, layout.horizon),
        (layout.vanish_x + half_m * bottom, layout.height),
        (layout.vanish_x - half_m * bottom, layout.height),
    ]


def _draw_road(img: Image.Image, rng, layout: RoadLayout) -> None:
    d = ImageDraw.Draw(img)
    walk = _jitter(rng, (165, 160, 150), 12)
    d.polygon(_road_polygon(layout, layout.road_half_m + 2.5), fill=walk)
    asphalt = _jitter(rng, (rng.uniform(70, 125),) * 3, 5)
    d.polygon(_road_polygon(layout, layout.road_half_m), fill=asphalt)
    paint = (235, 235, 225, 255)
    lanes = int(layout.road_half_m // 3.2)
    for k in range(-lanes, lanes + 1):
        if k == 0 and lanes > 0 and rng.random() < 0.5:
            continue
        _draw_dashes(d, layout, 3.2 * k if lanes else 0.0, paint, rng)
    for edge in (-layout.road_half_m + 0.2, layout.road_half_m - 0.2):
        _draw_dashes(d, layout, edge, paint, rng, solid=True)
    for _ in range(rng.integers(0, 4)):  # patches and puddles on the asphalt
        y = rng.uniform(layout.horizon + 5, layout.height)
        ppm = layout.px_per_m(y)
        x = layout.vanish_x + rng.uniform(-layout.road_half_m, layout.road_half_m) * ppm
        r = rng.uniform(0.5, 2.0) * ppm
        d.ellipse([x - r, y - r * 0.25, x + r, y + r * 0.25], fill=_jitter(rng, asphalt[:3], 18))


def _draw_dashes(d, layout: RoadLayout, lateral_m: float, paint, rng, solid: bool = False) -> None:
    phase = rng.uniform(0, 9)
    depths = np.arange(4.0 + phase, 120.0, 9.0)
    spans = [(4.0, 120.0)] if solid else [(z, z + 3.0) for z in depths]
    for near, far in spans:
        quad = []
        for z, side in ((near, -1), (far, -1), (far, 1), (near, 1)):
            ppm = layout.focal / z
            y = layout.horizon + ppm * CAMERA_HEIGHT_M
            quad.append((layout.vanish_x + (lateral_m + side * 0.08) * ppm, y))
        quad = [quad[0], quad[1], quad[2], quad[3]]
        d.polygon(quad, fill=paint)


def _draw_skyline(img: Image.Image, rng, layout: RoadLayout) -> None:
    d = ImageDraw.Draw(img)
    x = -rng.uniform(0, 20)
    base = layout.horizon + 1
    while x < layout.width:
        bw = rng.uniform(0.05, 0.2) * layout.width
        if rng.random() < 0.35:  # tree line
            color = _jitter(rng, (55, 90, 55), 15)
            top = base - rng.uniform(0.03, 0.09) * layout.height
            d.ellipse([x, top, x + bw, base + (base - top) * 0.5], fill=color)
        elif rng.random() < 0.8:
            color = _jitter(
                rng, rng.choice([(150, 140, 130), (120, 110, 105), (180, 175, 160)]), 15
            )
            top = base - rng.uniform(0.05, 0.2) * layout.height
            d.rectangle([x, top, x + bw, base], fill=color)
            _draw_windows(d, rng, x, top, bw, base - top)
        x += bw * rng.uniform(0.7, 1.1)


def _draw_windows(d, rng, x: float, top: float, bw: float, bh: float) -> None:
    pane = (max(1.0, bw / 10), max(1.0, bh / 8))
    color = _jitter(rng, (60, 70, 85), 10)
    for gy in np.arange(top + pane[1], top + bh - pane[1], pane[1] * 2):
        for gx in np.arange(x + pane[0], x + bw - pane[0], pane[0] * 2):
            d.rectangle([gx, gy, gx + pane[0] * 0.9, gy + pane[1] * 0.9], fill=color)


def make_background(rng: np.random.Generator, layout: RoadLayout) -> np.ndarray:
    """Sky, far buildings and trees, ground, road with lane marks: float32 [H, W, 3]."""
    canvas = _sky_and_ground(rng, layout)
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).convert("RGBA")
    _draw_skyline(img, rng, layout)
    _draw_road(img, rng, layout)
    canvas = np.asarray(img.convert("RGB")).astype(np.float32)
    h, w = canvas.shape[:2]
    texture = _value_noise(rng, h, w, 40) * rng.uniform(4, 10) + _value_noise(rng, h, w, 12) * 6
    canvas[int(layout.horizon) :] += texture[int(layout.horizon) :, :, None]
    return canvas


def sample_layout(rng: np.random.Generator, height: int, width: int) -> RoadLayout:
    return RoadLayout(
        height=height,
        width=width,
        horizon=height * rng.uniform(0.36, 0.48),
        vanish_x=width * rng.uniform(0.38, 0.62),
        road_half_m=rng.uniform(3.5, 7.5),
    )


def _lateral_position(rng, kind: str, road_half_m: float) -> float:
    side = 1 if rng.random() < 0.5 else -1
    u = rng.random()
    if kind in ("Car", "Van"):
        if u < 0.72:  # driving
            return rng.uniform(-road_half_m + 1.0, road_half_m - 1.0)
        return side * (road_half_m - rng.uniform(0.2, 1.2))  # parked at the kerb
    if kind == "Pedestrian":
        if u < 0.8:
            return side * (road_half_m + rng.uniform(0.4, 3.0))
        return rng.uniform(-road_half_m, road_half_m)  # crossing
    return side * (road_half_m - rng.uniform(0.3, 1.8))  # cyclist near the kerb


def _rotation(rng, kind: str) -> float:
    if kind in ("Car", "Van", "Cyclist") and rng.random() < 0.7:
        along = -math.pi / 2 if rng.random() < 0.65 else math.pi / 2
        return along + rng.normal(0, 0.2)
    return rng.uniform(-math.pi, math.pi)


def _width_px(rng, kind: str, dims: tuple[float, float, float], rot_y: float, ppm: float) -> float:
    """Vehicles and bicycles show their length side-on and their width end-on; a
    walking person's silhouette width follows stride and arms, not heading."""
    height_m, width_m, length_m = dims
    if kind == "Pedestrian":
        return max(3.0, height_m * ppm * rng.uniform(0.3, 0.42))
    return max(3.0, ppm * (length_m * abs(math.cos(rot_y)) + width_m * abs(math.sin(rot_y))))


def sample_object(rng: np.random.Generator, layout: RoadLayout, kind: str) -> SceneObject:
    """An instance of `kind` at a random ground position; its pixel height is drawn
    log-uniformly from 10 px to 60% of the image height."""
    mean_h, std_h = CLASS_HEIGHT_M[kind]
    dims = (
        float(np.clip(rng.normal(mean_h, std_h), mean_h - 2 * std_h, mean_h + 2 * std_h)),
        CLASS_WIDTH_M[kind] * rng.uniform(0.9, 1.1),
        CLASS_LENGTH_M[kind] * rng.uniform(0.9, 1.1),
    )
    height_px = math.exp(rng.uniform(math.log(MIN_OBJECT_HEIGHT_PX), math.log(0.6 * layout.height)))
    ppm = height_px / dims[0]
    ground = layout.ground_row(ppm)
    rot_y = _rotation(rng, kind)
    lateral = _lateral_position(rng, kind, layout.road_half_m)
    width_px = _width_px(rng, kind, dims, rot_y, ppm)
    centre = layout.vanish_x + lateral * ppm
    return SceneObject(
        kind=kind,
        left=round(centre - width_px / 2),
        top=round(ground - height_px),
        width=round(width_px),
        height=max(round(height_px), int(MIN_OBJECT_HEIGHT_PX)),
        depth_m=layout.focal / ppm,
        lateral_m=lateral,
        rot_y=rot_y,
        dims_m=dims,
        contrast=rng.uniform(0.15, 0.45) if rng.random() < 0.25 else 1.0,
        seed=int(rng.integers(2**31)),
    )


CLUTTER_SIZE_M = {  # height, width
    "pole": (6.0, 0.2),
    "lamp": (7.0, 1.6),
    "tree": (6.0, 3.0),
    "sign": (2.6, 0.7),
    "bush": (1.1, 1.8),
    "bin": (1.1, 0.7),
}


def sample_clutter(rng: np.random.Generator, layout: RoadLayout) -> SceneObject:
    """A distractor on the sidewalk or verge: drawn and occluding, never labelled."""
    kind = str(rng.choice(list(CLUTTER_SIZE_M)))
    height_m, width_m = CLUTTER_SIZE_M[kind]
    footprint_m = width_m if kind in ("bush", "bin") else 0.4
    scale = rng.uniform(0.8, 1.25)
    ppm = math.exp(rng.uniform(math.log(2.0), math.log(0.9 * layout.px_per_m(layout.height))))
    side = 1 if rng.random() < 0.5 else -1
    lateral = side * (layout.road_half_m + rng.uniform(0.3, 6.0))
    ground = layout.ground_row(ppm)
    width_px = max(1.0, width_m * scale * ppm)
    height_px = max(2.0, height_m * scale * ppm)
    centre = layout.vanish_x + lateral * ppm
    return SceneObject(
        kind=kind,
        left=round(centre - width_px / 2),
        top=round(ground - height_px),
        width=round(width_px),
        height=round(height_px),
        depth_m=layout.focal / ppm,
        lateral_m=lateral,
        rot_y=0.0,
        dims_m=(height_m, footprint_m, footprint_m),
        seed=int(rng.integers(2**31)),
    )


def sample_far_traffic(rng: np.random.Generator, layout: RoadLayout) -> list[SceneObject]:
    """A cluster of vehicles too small to label, near the horizon (a DontCare region)."""
    cluster = []
    for _ in range(rng.integers(2, 5)):
        height_px = rng.uniform(3.0, 7.0)
        ppm = height_px / 1.5
        centre = layout.vanish_x + rng.uniform(-layout.road_half_m, layout.road_half_m) * ppm
        ground = layout.ground_row(ppm)
        width_px = max(2.0, height_px * rng.uniform(1.1, 2.2))
        cluster.append(
            SceneObject(
                kind="far_vehicle",
                left=round(centre - width_px / 2),
                top=round(ground - height_px),
                width=round(width_px),
                height=round(height_px),
                depth_m=layout.focal / ppm,
                seed=int(rng.integers(2**31)),
            )
        )
    return cluster


def _object_fits(obj: SceneObject, layout: RoadLayout) -> bool:
    full = (obj.left, obj.top, obj.left + obj.width, obj.top + obj.height)
    box = _clip_box(full, layout.height, layout.width)
    if box[2] - box[0] < 3 or box[3] - box[1] < 3:
        return False
    return 1.0 - _box_area(box) / _box_area(full) <= MAX_TRUNCATION


def _footprint(obj: SceneObject) -> tuple[float, float, float, float]:
    """Ground rectangle (lateral min/max, depth min/max) in metres."""
    _, width_m, length_m = obj.dims_m
    c, s = abs(math.cos(obj.rot_y)), abs(math.sin(obj.rot_y))
    half_x, half_z = (length_m * c + width_m * s) / 2, (length_m * s + width_m * c) / 2
    return (
        obj.lateral_m - half_x,
        obj.lateral_m + half_x,
        obj.depth_m - half_z,
        obj.depth_m + half_z,
    )


def _collides(obj: SceneObject, others: Sequence[SceneObject]) -> bool:
    a = _footprint(obj)
    for other in others:
        b = _footprint(other)
        if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]:
            return True
    return False


def _sprite_box(obj: SceneObject) -> tuple[float, float, float, float]:
    return (obj.left, obj.top, obj.left + obj.width, obj.top + obj.height)


def _hides(obj: SceneObject, others: Sequence[SceneObject], limit: float = 0.75) -> bool:
    """Whether `obj` would cover, or be covered by, another instance almost entirely;
    such pairs only waste a label on a DontCare region."""
    a = _sprite_box(obj)
    for other in others:
        b = _sprite_box(other)
        if a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]:
            continue
        overlap = _box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
        farther = b if obj.depth_m < other.depth_m else a
        if overlap > limit * _box_area(farther):
            return True
    return False


def sample_scene(rng: np.random.Generator, layout: RoadLayout) -> list[SceneObject]:
    """2-12 labelled instances and 2-8 distractors that do not overlap on the ground,
    sometimes with a cluster of far traffic."""
    kinds, weights = list(CLASS_WEIGHTS), np.asarray(list(CLASS_WEIGHTS.values()))
    objects: list[SceneObject] = []
    wanted = int(rng.integers(2, 13))
    for _ in range(wanted * 4):
        if len(objects) == wanted:
            break
        obj = sample_object(rng, layout, str(rng.choice(kinds, p=weights / weights.sum())))
        if _object_fits(obj, layout) and not _collides(obj, objects) and not _hides(obj, objects):
            objects.append(obj)
    for _ in range(rng.integers(2, 9)):
        clutter = sample_clutter(rng, layout)
        if not _collides(clutter, objects):
            objects.append(clutter)
    if rng.random() < 0.3:
        objects += sample_far_traffic(rng, layout)
    return objects


def _far_traffic_box(objects: Sequence[SceneObject], height: int, width: int):
    far = [o for o in objects if o.kind == "far_vehicle"]
    if not far:
        return None
    box = (
        min(o.left for o in far) - 1,
        min(o.top for o in far) - 1,
        max(o.left + o.width for o in far) + 1,
        max(o.top + o.height for o in far) + 1,
    )
    box = _clip_box(box, height, width)
    return box if _box_area(box) > 0 else None


SOFTEN = ImageFilter.Kernel((3, 3), [1, 2, 1, 2, 12, 2, 1, 2, 1])


def _finish(canvas: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Camera effects: exposure, slight blur, sensor noise."""
    canvas *= rng.uniform(0.75, 1.15)
    canvas += rng.uniform(-15, 15) + rng.standard_normal(
        canvas.shape, dtype=np.float32
    ) * rng.uniform(1.5, 4)
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    return img.filter(SOFTEN)


def generate_image(seed: int, index: int, size: tuple[int, int]) -> tuple[Image.Image, SceneLabels]:
    """Image `index` of the set with `seed`; independent of the set's length."""
    rng = np.random.default_rng([seed, index])
    layout = sample_layout(rng, *size)
    canvas = make_background(rng, layout)
    objects = sample_scene(rng, layout)
    labels = render_scene(canvas, objects)
    far_box = _far_traffic_box(objects, *size)
    if far_box is not None:
        labels.dontcare.append(far_box)
    return _finish(canvas, rng), labels


# ---------------------------------------------------------------- KITTI writing


def _wrap_angle(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def kitti_line(label: ObjectLabel) -> str:
    """KITTI label_2 line; the 3D location is the box's ground contact point."""
    obj = label.obj
    location = (obj.lateral_m, CAMERA_HEIGHT_M, obj.depth_m)
    alpha = _wrap_angle(obj.rot_y - math.atan2(location[0], location[2]))
    numbers = (alpha, *label.box, *obj.dims_m, *location, _wrap_angle(obj.rot_y))
    return f"{obj.kind} {label.truncation:.2f} {label.occlusion_level} " + " ".join(
        f"{v:.2f}" for v in numbers
    )


def dontcare_line(box: Sequence[float]) -> str:
    x1, y1, x2, y2 = box
    return f"DontCare -1 -1 -10 {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} -1 -1 -1 -1000 -1000 -1000 -10"


def _labelled(labels: SceneLabels) -> list[ObjectLabel]:
    return [o for o in labels.objects if o.occlusion <= DONTCARE_HIDDEN_FRACTION]


def label_lines(labels: SceneLabels) -> list[str]:
    """KITTI lines; objects hidden beyond `DONTCARE_HIDDEN_FRACTION` become DontCare."""
    hidden = [o.box for o in labels.objects if o.occlusion > DONTCARE_HIDDEN_FRACTION]
    return [kitti_line(o) for o in _labelled(labels)] + [
        dontcare_line(b) for b in hidden + labels.dontcare
    ]


def difficulty_record(labels: SceneLabels) -> list[dict[str, float]]:
    """Per labelled line (same order as label_2): the exact measures behind the KITTI
    fields, and the contrast the object was drawn with (1 = own colours)."""
    return [
        {
            "contrast": round(o.obj.contrast, 4),
            "occlusion": round(o.occlusion, 4),
            "truncation": round(o.truncation, 4),
            "height_px": o.box[3] - o.box[1],
        }
        for o in _labelled(labels)
    ]


def _split_ids(num_images: int, seed: int, val_fraction: float) -> tuple[list[int], list[int]]:
    order = np.random.default_rng([seed, 2**31 - 1]).permutation(num_images)
    num_val = int(round(num_images * val_fraction))
    val = sorted(int(i) for i in order[:num_val])
    train = sorted(int(i) for i in order[num_val:])
    return train, val


def _meta(num_images: int, seed: int, size: tuple[int, int], val_fraction: float) -> dict:
    return {
        "generator": "liafkd.data.synthetic",
        "version": GENERATOR_VERSION,
        "num_images": num_images,
        "seed": seed,
        "size": list(size),
        "val_fraction": val_fraction,
        "classes": list(CLASS_NAMES),
        "occlusion_level_bounds": list(OCCLUSION_LEVEL_BOUNDS),
        "dontcare_hidden_fraction": DONTCARE_HIDDEN_FRACTION,
    }


README_TEXT = """\
Synthetic driving-like scenes written by liafkd.data.synthetic (KITTI object layout).
training/image_2/NNNNNN.png, training/label_2/NNNNNN.txt (KITTI label_2, 15 fields),
ImageSets/{train,val,trainval}.txt. Classes: Car, Van, Pedestrian, Cyclist, DontCare.
Boxes are tight silhouette boxes clipped to the image, in pixel-edge coordinates.
truncated: fraction of the unclipped box area outside the image.
occluded: 0 below 10% of the in-image silhouette hidden by nearer things, 1 below 40%,
2 above; objects hidden beyond 85% are DontCare. 3D fields follow a ground-plane camera
(height 1.65 m, focal 0.58 x width) and are approximate.
training/difficulty/NNNNNN.json: per non-DontCare label line, in order, the exact
occlusion and truncation fractions, the box height and the drawing contrast (1 = own
colours; about a quarter of the objects are drawn at 0.15-0.45, blended toward the
background, as hard low-contrast instances).
Regenerate: liafkd data synth --out DIR --images N --seed S (see synthetic_meta.json).
"""


def _scene_dirs(out_root: Path) -> tuple[Path, Path, Path]:
    training = out_root / "training"
    return training / "image_2", training / "label_2", training / "difficulty"


def _write_scene(out_root: Path, seed: int, index: int, size: tuple[int, int]) -> None:
    image_dir, label_dir, info_dir = _scene_dirs(out_root)
    image, labels = generate_image(seed, index, size)
    image.save(image_dir / f"{index:06d}.png", compress_level=1)
    (label_dir / f"{index:06d}.txt").write_text("".join(f"{s}\n" for s in label_lines(labels)))
    (info_dir / f"{index:06d}.json").write_text(json.dumps(difficulty_record(labels)))


def generate_synthetic(
    out_root: Path,
    num_images: int,
    seed: int,
    size: tuple[int, int] = (192, 320),
    val_fraction: float = 0.25,
    workers: int = 1,
) -> None:
    """Write `num_images` scenes of `size` (height, width) under `out_root` in KITTI
    layout. The same seed gives byte-identical images and labels, whatever `workers`
    (processes drawing scenes in parallel)."""
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    out_root = Path(out_root)
    sets_dir = out_root / "ImageSets"
    for folder in (*_scene_dirs(out_root), sets_dir):
        folder.mkdir(parents=True, exist_ok=True)
    jobs = [(out_root, seed, index, tuple(size)) for index in range(num_images)]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.starmap(_write_scene, jobs, chunksize=8)
    else:
        for job in jobs:
            _write_scene(*job)
    train, val = _split_ids(num_images, seed, val_fraction)
    for name, ids in (("train", train), ("val", val), ("trainval", sorted(train + val))):
        (sets_dir / f"{name}.txt").write_text("".join(f"{i:06d}\n" for i in ids))
    (out_root / "README.txt").write_text(README_TEXT)
    meta = _meta(num_images, seed, tuple(size), val_fraction)
    meta["files"] = _written_files(num_images)  # what liafkd may delete when regenerating
    (out_root / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _written_files(num_images: int) -> list[str]:
    """Every file generate_synthetic writes, relative to the root (the marker included)."""
    image_dir, label_dir, info_dir = (p.relative_to("r") for p in _scene_dirs(Path("r")))
    scenes = [
        (folder / f"{index:06d}{suffix}").as_posix()
        for index in range(num_images)
        for folder, suffix in ((image_dir, ".png"), (label_dir, ".txt"), (info_dir, ".json"))
    ]
    sets = [f"ImageSets/{name}.txt" for name in ("train", "val", "trainval")]
    return [*scenes, *sets, "README.txt", META_FILE]


# a set written before META_FILE listed its files: its own files by name
LEGACY_OWN_FILE = re.compile(
    r"training/(image_2/\d{6}\.png|label_2/\d{6}\.txt|difficulty/\d{6}\.json)"
    r"|ImageSets/(train|val|trainval)\.txt|README\.txt|" + re.escape(META_FILE)
)


def own_files(root: Path, meta: dict) -> list[Path]:
    """The files under `root` that liafkd wrote: those its marker lists or, for a set
    written before the marker listed them, those named as the generator names them."""
    listed = meta.get("files")
    if isinstance(listed, list):
        return [root / name for name in listed if (root / name).is_file()]
    found = (p for p in root.rglob("*") if p.is_file())
    return sorted(p for p in found if LEGACY_OWN_FILE.fullmatch(p.relative_to(root).as_posix()))


OWN_DIRS = ("training", "training/image_2", "training/label_2", "training/difficulty", "ImageSets")


def foreign_files(root: Path, meta: dict) -> list[str]:
    """What under `root` liafkd did not write (relative names; folders end in /)."""
    own = set(own_files(root, meta))
    found = []
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_dir() and name not in OWN_DIRS and not any(path.iterdir()):
            found.append(f"{name}/")  # an empty folder of the user's
        elif not path.is_dir() and path not in own:
            found.append(name)
    return found


def _read_meta(root: Path) -> dict | None:
    try:
        return json.loads((root / META_FILE).read_text())
    except (OSError, ValueError):
        return None


def _matches(meta: dict | None, cfg: DatasetConfig) -> bool:
    if meta is None:
        return False
    wanted = _meta(cfg.synth_images, cfg.synth_seed, tuple(cfg.synth_size), 0.25)
    keys = ("generator", "version", "num_images", "seed", "size")
    return all(meta.get(k) == wanted[k] for k in keys)


def _describe(meta: dict) -> str:
    size = meta.get("size") or ["?", "?"]
    return (
        f"{meta.get('num_images')} images, seed {meta.get('seed')}, {size[0]}x{size[1]}, "
        f"generator version {meta.get('version')}"
    )


def synth_command(root: Path, cfg: DatasetConfig) -> str:
    height, width = cfg.synth_size
    return (
        f"liafkd data synth --out {root} --images {cfg.synth_images} --seed {cfg.synth_seed} "
        f"--height {height} --width {width}"
    )


def ensure_synthetic(cfg: DatasetConfig, workers: int = 1, generate: bool = True) -> Path:
    """The KITTI root of the synthetic set `cfg` asks for, generated on first use.

    A folder holding a set liafkd wrote with other parameters, and nothing else, is
    regenerated; a folder holding any file liafkd did not write is refused, so user
    files are never deleted. With `generate` False (a read-only command) a missing or
    different set is an error saying what to run."""
    root = Path(cfg.root)
    meta = _read_meta(root)
    if _matches(meta, cfg):
        return root
    if not generate:
        wanted = _describe(_meta(cfg.synth_images, cfg.synth_seed, tuple(cfg.synth_size), 0.25))
        found = "is not there" if meta is None else f"is not there ({root} holds {_describe(meta)})"
        raise ConfigError(
            f"{root}: the synthetic set the config asks for ({wanted}) {found}, and this "
            f"command only reads. Generate it with `{synth_command(root, cfg)}` (or let "
            "`liafkd train`/`distill` generate it on first use)"
        )
    size = (cfg.synth_size[0], cfg.synth_size[1])
    write_synthetic(
        root, cfg.synth_images, cfg.synth_seed, size, workers, lambda m: _matches(m, cfg)
    )
    return root


def check_owned(root: Path) -> dict | None:
    """The marker of the synthetic set in `root` (None: no folder, or an empty one), when
    liafkd may replace it; ConfigError naming the files when the folder holds anything
    liafkd did not write."""
    if not root.exists():
        return None
    if not root.is_dir():
        raise ConfigError(f"{root}: is a file; a synthetic dataset needs a folder")
    meta = _read_meta(root)
    if meta is None:
        if any(root.iterdir()):
            raise ConfigError(
                f"{root}: holds files and no {META_FILE}, so it is not a synthetic set "
                "liafkd wrote, and liafkd never generates over other files; point "
                "data.*.root (or --out) at an empty or new folder"
            )
        return None
    foreign = foreign_files(root, meta)
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" (+{len(foreign) - 5} more)" if len(foreign) > 5 else ""
        )
        raise ConfigError(
            f"{root}: holds a synthetic set ({_describe(meta)}) that would be replaced, and "
            f"files liafkd did not write: {shown}. liafkd regenerates only a folder holding "
            "nothing else: move those files out, or point data.*.root (or --out) at a new folder"
        )
    return meta


def write_synthetic(
    root: Path,
    num_images: int,
    seed: int,
    size: tuple[int, int],
    workers: int = 1,
    done: Callable[[dict | None], bool] | None = None,
) -> None:
    """Generate a set into `root` (a new or empty folder, or one holding only a set
    liafkd wrote, whose files are removed first: no stale image stays). Written in a
    staging folder and moved in, so an interrupted run leaves the old set or the new
    one; `done(meta)` tells a set a concurrent writer finished meanwhile (kept)."""
    check_owned(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        generate_synthetic(staging, num_images, seed, size, workers=workers)
        _swap_in(staging, root, done or (lambda meta: False))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_own_set(root: Path) -> None:
    """Delete the files of the set in `root` that liafkd wrote, then its emptied folders."""
    meta = check_owned(root)  # again: a file may have appeared while generating
    for path in own_files(root, meta or {}):
        path.unlink()
    for name in reversed(OWN_DIRS):
        if (root / name).is_dir() and not any((root / name).iterdir()):
            (root / name).rmdir()
    root.rmdir()  # empty now: check_owned found nothing else


def _swap_in(staging: Path, root: Path, done: Callable[[dict | None], bool]) -> None:
    """Move the finished set to `root`; a concurrent writer of the same set wins ties."""
    if root.exists():
        if done(_read_meta(root)):
            return
        _remove_own_set(root)
    try:
        os.replace(staging, root)
    except OSError:
        if not done(_read_meta(root)):
            raise


# ---------------------------------------------------------------- preview grid and CLI


def _read_label_boxes(path: Path) -> list[tuple[str, int, tuple[float, ...]]]:
    rows = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 8:
            rows.append((fields[0], int(float(fields[2])), tuple(float(v) for v in fields[4:8])))
    return rows


def write_grid(root: Path, out_png: Path, count: int = 16, columns: int = 4) -> Path:
    """A preview of the first `count` images with their boxes, coloured by class and
    tagged with the class initial and KITTI occlusion level."""
    label_dir = Path(root) / "training" / "label_2"
    names = sorted(label_dir.glob("*.txt"))[:count]
    if not names:
        raise FileNotFoundError(f"{label_dir}: no label files to preview")
    tiles = [_annotated_tile(Path(root), name) for name in names]
    tile_w, tile_h = tiles[0].size
    rows = math.ceil(len(tiles) / columns)
    grid = Image.new("RGB", (columns * tile_w, rows * tile_h), (0, 0, 0))
    for k, tile in enumerate(tiles):
        grid.paste(tile, ((k % columns) * tile_w, (k // columns) * tile_h))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out_png)
    return out_png


def _annotated_tile(root: Path, label_file: Path) -> Image.Image:
    image = Image.open(root / "training" / "image_2" / f"{label_file.stem}.png").convert("RGB")
    d = ImageDraw.Draw(image)
    for kind, occluded, box in _read_label_boxes(label_file):
        color = DRAW_COLORS.get(kind, (255, 255, 255))
        d.rectangle([box[0], box[1], box[2] - 1, box[3] - 1], outline=color)
        if kind != "DontCare":
            d.text((box[0] + 1, box[1] - 9), f"{kind[0]}{occluded}", fill=color, font_size=9)
    return image


def run_synth(args: argparse.Namespace) -> int:
    """`liafkd data synth`: into a new or empty folder, or over a set liafkd wrote there
    (its files only: nothing stale stays); a folder holding other files is refused."""
    from liafkd.outputs import Output, check_outputs

    if args.images < 1 or args.height < 32 or args.width < 32:
        print("error: --images must be >= 1 and --height/--width >= 32")
        return 2
    out = Path(args.out)
    outputs = [Output(out, "--out", folder=True)]
    if args.grid is not None:
        outputs.append(Output(Path(args.grid), "--grid"))
    check_outputs(outputs, [])
    wanted = _meta(args.images, args.seed, (args.height, args.width), 0.25)
    keys = ("generator", "version", "num_images", "seed", "size")

    def same_set(meta: dict | None) -> bool:
        return meta is not None and all(meta.get(k) == wanted[k] for k in keys)

    if same_set(_read_meta(out)):  # generation is deterministic: the same bytes
        print(f"{out} already holds this set ({_describe(wanted)}): nothing generated")
    else:
        write_synthetic(out, args.images, args.seed, (args.height, args.width), done=same_set)
        print(f"wrote {args.images} images to {out}")
    if args.grid is not None:
        grid = write_grid(out, args.grid)
        _list_in_marker(out, grid)
        print(f"wrote preview grid {grid}")
    return 0


def _list_in_marker(root: Path, path: Path) -> None:
    """A file liafkd wrote inside the set (the preview grid) joins the marker's list."""
    real_root, real = Path(os.path.realpath(root)), Path(os.path.realpath(path))
    meta = _read_meta(root)
    if meta is None or real_root not in real.parents or not isinstance(meta.get("files"), list):
        return
    name = real.relative_to(real_root).as_posix()
    if name not in meta["files"]:
        meta["files"].append(name)
        (root / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
