"""Build a toy retrieval set in the revisited Oxford/Paris layout from scikit-image's colour photographs.

    python utils/make_toy_retrieval.py [--output-dir data/retrieval] [--name toy_retrieval] [--size 128] [--seed 0]

Writes ``OUT/<name>/jpg/<image>.jpg`` and ``OUT/<name>/gnd_<name>.pkl`` holding ``imlist`` (database names),
``qimlist`` (query names) and ``gnd``: per query ``easy``, ``hard``, ``junk`` (database indices) and ``bbx``
(the object box in query-image pixels, [x1, y1, x2, y2]). Each photograph is a scene: its query shows a square
"object" region (with a margin around it) and its database images are crops of the same photograph that cover
that region by different amounts: easy when a crop shows at least 70 % of the object, hard from 40 %, junk from
10 %; crops of other scenes are the negatives. ``cat`` and ``chelsea`` are the same picture in scikit-image, so
the second one becomes a mirrored view of the same scene.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from utils.atomic import atomic_write_bytes
from utils.cli import add_output_dir
from utils.seeding import numpy_generator

PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "hubble_deep_field",
               "cat", "colorwheel")
EASY_COVERAGE, HARD_COVERAGE, JUNK_COVERAGE = 0.7, 0.4, 0.1
# shifts of a database crop relative to the object box, in units of the box side: coverage (1-|dx|)(1-|dy|)
CROP_SHIFTS = ((0.0, 0.05), (0.1, -0.1), (-0.2, 0.1), (0.3, 0.2), (-0.45, -0.1), (0.5, 0.4), (-0.7, 0.3),
               (0.85, -0.6))
CROP_SCALES = (1.0, 1.3, 0.9, 1.0, 1.1, 1.0, 1.2, 1.0)
QUERY_MARGIN = 0.2
DEFAULT_OUT = Path("data/retrieval")
DEFAULT_NAME = "toy_retrieval"


@dataclass
class Box:
    """An axis-aligned box in pixel coordinates (x1, y1, x2, y2)."""

    x1: float
    y1: float
    x2: float
    y2: float

    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)

    def intersection(self, other: "Box") -> float:
        overlap = Box(max(self.x1, other.x1), max(self.y1, other.y1), min(self.x2, other.x2), min(self.y2, other.y2))
        return overlap.area()

    def clipped(self, width: int, height: int) -> "Box":
        return Box(max(0.0, self.x1), max(0.0, self.y1), min(float(width), self.x2), min(float(height), self.y2))


def load_photographs() -> dict[str, np.ndarray]:
    """The photographs as uint8 RGB arrays (identical pictures are detected, the later one is mirrored)."""
    from skimage import data

    photos: dict[str, np.ndarray] = {}
    for name in PHOTOGRAPHS:
        image = getattr(data, name)()
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"scikit-image sample {name!r} is not an RGB photograph")
        photos[name] = image.astype(np.uint8)
    return photos


def scenes_of(photos: dict[str, np.ndarray]) -> dict[str, str]:
    """photo name -> scene name (the first photo with the same pixels names the scene)."""
    first_of: dict[str, str] = {}
    scene = {}
    for name, image in photos.items():
        digest = hashlib.sha1(image.tobytes() + str(image.shape).encode()).hexdigest()
        scene[name] = first_of.setdefault(digest, name)
    return scene


def _crop(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    x1, y1, x2, y2 = (int(round(v)) for v in (box.x1, box.y1, box.x2, box.y2))
    patch = Image.fromarray(image[y1:y2, x1:x2])
    scale = size / max(patch.size)
    return np.asarray(patch.resize((max(1, round(patch.size[0] * scale)), max(1, round(patch.size[1] * scale))),
                                   Image.BICUBIC))


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def build_toy_retrieval(out: Path = DEFAULT_OUT, name: str = DEFAULT_NAME, size: int = 128, seed: int = 0) -> Path:
    """Write the set and return its folder ``OUT/<name>``."""
    if size < 16:
        raise ValueError(f"--size {size} is too small (at least 16 pixels)")
    photos = load_photographs()
    scene_of = scenes_of(photos)
    folder = Path(out) / name
    images: dict[str, np.ndarray] = {}
    object_boxes: dict[str, Box] = {}
    crops: list[tuple[str, str, Box]] = []  # (image name, scene, box in the scene's photograph)
    for photo, image in photos.items():
        scene = scene_of[photo]
        if scene != photo:  # a duplicate picture: a mirrored view of its scene, object box mirrored too
            image = image[:, ::-1].copy()
        height, width = image.shape[:2]
        side = 0.45 * min(height, width)
        if scene == photo:
            rng = numpy_generator("toy-retrieval", seed, photo)
            cx = rng.uniform(side / 2 + QUERY_MARGIN * side, width - side / 2 - QUERY_MARGIN * side)
            cy = rng.uniform(side / 2 + QUERY_MARGIN * side, height - side / 2 - QUERY_MARGIN * side)
            object_boxes[scene] = Box(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
            margin = QUERY_MARGIN * side
            obj = object_boxes[scene]
            query_box = Box(obj.x1 - margin, obj.y1 - margin, obj.x2 + margin, obj.y2 + margin)
            images[f"q_{scene}"] = _crop(image, query_box, size)
            photo_boxes = [(dx, dy, s) for (dx, dy), s in zip(CROP_SHIFTS, CROP_SCALES)]
            obj_here = obj
        else:
            obj = object_boxes[scene]
            obj_here = Box(width - obj.x2, obj.y1, width - obj.x1, obj.y2)
            photo_boxes = [(dx, dy, s) for (dx, dy), s in zip(CROP_SHIFTS[::3], CROP_SCALES[::3])]
        for j, (dx, dy, scale) in enumerate(photo_boxes):
            cx = (obj_here.x1 + obj_here.x2) / 2 + dx * side
            cy = (obj_here.y1 + obj_here.y2) / 2 + dy * side
            half = scale * side / 2
            box = Box(cx - half, cy - half, cx + half, cy + half).clipped(width, height)
            if box.area() < 0.05 * side * side:
                continue
            crop_name = f"db_{photo}_{j}"
            images[crop_name] = _crop(image, box, size)
            crops.append((crop_name, scene, Box(box.x1 - obj_here.x1, box.y1 - obj_here.y1,
                                                box.x2 - obj_here.x1, box.y2 - obj_here.y1)))
    imlist = [crop_name for crop_name, _, _ in crops]
    qimlist = [f"q_{scene}" for scene in object_boxes]
    gnd = []
    for scene, obj in object_boxes.items():
        unit = Box(0.0, 0.0, obj.x2 - obj.x1, obj.y2 - obj.y1)
        entry: dict[str, list[int]] = {"easy": [], "hard": [], "junk": []}
        for index, (_, crop_scene, box) in enumerate(crops):
            if crop_scene != scene:
                continue
            coverage = unit.intersection(box) / unit.area()
            if coverage >= EASY_COVERAGE:
                entry["easy"].append(index)
            elif coverage >= HARD_COVERAGE:
                entry["hard"].append(index)
            elif coverage >= JUNK_COVERAGE:
                entry["junk"].append(index)
        query_side = (1 + 2 * QUERY_MARGIN) * (obj.x2 - obj.x1)
        pixel = size / query_side
        margin = QUERY_MARGIN * (obj.x2 - obj.x1) * pixel
        bbx = [margin, margin, size - margin, size - margin]
        gnd.append({**{k: np.asarray(v, dtype=np.int64) for k, v in entry.items()}, "bbx": bbx})
    for image_name, array in images.items():
        atomic_write_bytes(folder / "jpg" / f"{image_name}.jpg", _jpeg(array))
    payload = {"imlist": imlist, "qimlist": qimlist, "gnd": gnd}
    atomic_write_bytes(folder / f"gnd_{name}.pkl", pickle.dumps(payload))
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_dir(parser, "data root (default: %(default)s)", "--out", required=False, default=DEFAULT_OUT)
    parser.add_argument("--name", default=DEFAULT_NAME, help="dataset name (default: %(default)s)")
    parser.add_argument("--size", type=int, default=128, help="longer side of every image in pixels")
    parser.add_argument("--seed", type=int, default=0, help="places the object region in each photograph")
    args = parser.parse_args(argv)
    folder = build_toy_retrieval(args.output_dir, args.name, args.size, args.seed)
    with open(folder / f"gnd_{args.name}.pkl", "rb") as handle:
        payload = pickle.load(handle)
    print(f"{folder}: {len(payload['imlist'])} database images, {len(payload['qimlist'])} queries")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
