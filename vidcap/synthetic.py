"""Synthetic scenes: the embedded domain vidcap trains its demo model on and renders test videos with.

A scene is a textured background with 1-3 coloured shapes standing in three columns (left, middle, right).
`render_scene` draws it at any size; `describe_scene` writes several varied reference captions for it
(synonyms, word orders, spatial relations, counts). Everything is deterministic given a numpy Generator.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import pairwise

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (245, 220, 30),
    "orange": (250, 140, 20),
    "purple": (140, 40, 180),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}

# shape -> (words people use for it, their plurals)
SHAPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "circle": (("circle", "disc"), ("circles", "discs")),
    "square": (("square", "block"), ("squares", "blocks")),
    "triangle": (("triangle",), ("triangles",)),
    "star": (("star",), ("stars",)),
    "diamond": (("diamond",), ("diamonds",)),
    "cross": (("cross",), ("crosses",)),
}

SIZES: dict[str, tuple[float, tuple[str, ...]]] = {  # radius as a fraction of the short side, words
    "small": (0.085, ("small", "little")),
    "large": (0.15, ("large", "big")),
}

# background -> (phrases saying where the shapes are, colours too close to it to be used on it)
BACKGROUNDS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "grass": (("on grass", "on a grassy field", "on the lawn"), frozenset({"green"})),
    "sand": (("on sand", "in the desert", "on a sandy beach"), frozenset({"yellow", "orange"})),
    "snow": (("on snow", "on a snowy field", "in the snow"), frozenset({"white"})),
    "water": (("on water", "on the sea", "floating on water"), frozenset({"blue"})),
    "sky": (("in the sky", "against a blue sky", "in a clear sky"), frozenset({"blue", "white"})),
    "night": (("at night", "on a dark background", "in the dark"), frozenset({"black", "purple", "blue"})),
    "bricks": (("on a brick wall", "against bricks", "in front of a brick wall"), frozenset({"red", "orange"})),
    "paper": (("on paper", "on a white background", "on a blank page"), frozenset({"white", "yellow"})),
}

COLUMN_NAMES = ("left", "middle", "right")
COLUMN_PHRASES = (("on the left",), ("in the middle", "in the centre"), ("on the right",))
NUMBER_WORDS = {2: "two", 3: "three"}
# Words this grammar says of every picture, beyond English's function words: what it describes is in the colours,
# shapes, sizes and backgrounds. A model trained on these scenes carries them (its checkpoint's `filler_words`),
# so that the novelty scorer does not read a change of phrasing as a change of content.
FILLER_WORDS = ("picture", "image", "photo", "shapes", "shape", "left", "right", "middle", "centre", "center", "front",
                "floating", "sits", "sitting", "standing", "top", "bottom", "side")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    column: int  # 0 left, 1 middle, 2 right
    x: float  # centre, as a fraction of the width
    y: float  # centre, as a fraction of the height


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[SceneObject, ...]  # sorted left to right
    texture_seed: int = 0


def random_scene(rng: np.random.Generator, max_objects: int = 3) -> Scene:
    background = str(rng.choice(list(BACKGROUNDS)))
    allowed = [c for c in COLOURS if c not in BACKGROUNDS[background][1]]
    count = int(rng.integers(1, max_objects + 1))
    columns = sorted(rng.choice(3, size=count, replace=False).tolist())
    objects = [
        random_object(rng, column, allowed)
        for column in columns
    ]
    if count > 1 and rng.random() < 0.3:  # sometimes repeat one kind of object, so counts get said
        objects = [replace(o, shape=objects[0].shape, colour=objects[0].colour) for o in objects]
    return Scene(background, tuple(objects), int(rng.integers(2**31)))


def random_object(rng: np.random.Generator, column: int, colours: list[str]) -> SceneObject:
    return SceneObject(
        shape=str(rng.choice(list(SHAPES))),
        colour=str(rng.choice(colours)),
        size=str(rng.choice(list(SIZES))),
        column=column,
        x=(column + 0.5) / 3 + float(rng.uniform(-0.05, 0.05)),
        y=float(rng.uniform(0.32, 0.68)),
    )


# ---- rendering ---------------------------------------------------------------------------------------------


def render_scene(scene: Scene, width: int, height: int) -> np.ndarray:
    """-> (height, width, 3) uint8 RGB."""
    img = Image.fromarray(_background(scene.background, width, height, scene.texture_seed))
    draw = ImageDraw.Draw(img)
    short = min(width, height)
    for obj in scene.objects:
        radius = SIZES[obj.size][0] * short
        points = _shape_polygon(obj.shape, obj.x * width, obj.y * height, radius)
        draw.polygon(points, fill=COLOURS[obj.colour])
    return np.asarray(img)


def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    def ring(n: int, radius: float, phase: float) -> list[tuple[float, float]]:
        return [(cx + radius * math.cos(phase + 2 * math.pi * i / n), cy + radius * math.sin(phase + 2 * math.pi * i / n)) for i in range(n)]

    if shape == "circle":
        return ring(48, r, 0.0)
    if shape == "square":
        return ring(4, r * 1.15, math.pi / 4)
    if shape == "triangle":
        return ring(3, r * 1.2, -math.pi / 2)
    if shape == "diamond":
        return [(cx, cy - r * 1.2), (cx + r * 0.75, cy), (cx, cy + r * 1.2), (cx - r * 0.75, cy)]
    if shape == "star":
        outer, inner = ring(5, r * 1.2, -math.pi / 2), ring(5, r * 0.5, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if shape == "cross":
        a, b = r * 0.35, r * 1.1
        offsets = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]
        return [(cx + dx, cy + dy) for dx, dy in offsets]
    raise ValueError(f"unknown shape {shape!r}")


@lru_cache(maxsize=64)
def _cached_background(name: str, width: int, height: int, variant: int) -> np.ndarray:
    rng = np.random.default_rng([zlib.crc32(name.encode()), variant])  # str hash() is salted per process
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy /= max(height - 1, 1)
    xx /= max(width - 1, 1)
    noise = rng.normal(0.0, 1.0, (height, width)).astype(np.float32)

    def mix(base: tuple[int, int, int], amount: np.ndarray) -> np.ndarray:
        return np.clip(np.array(base, np.float32)[None, None, :] + amount[..., None], 0, 255)

    if name == "grass":
        blades = np.sin(xx * width * 0.9 + rng.uniform(0, 6)) * 12
        img = mix((60, 140, 50), blades + noise * 14)
    elif name == "sand":
        ripples = np.sin((yy * 25 + xx * 4) * math.pi) * 10
        img = mix((215, 190, 140), ripples + noise * 8)
    elif name == "snow":
        img = mix((232, 238, 245), noise * 5 - yy * 10)
    elif name == "water":
        waves = np.sin((yy * 30 + np.sin(xx * 12) * 0.8) * math.pi) * 14
        img = mix((40, 110, 160), waves + noise * 6)
    elif name == "sky":
        img = mix((120, 180, 240), -yy * 50 + noise * 3)
    elif name == "night":
        img = mix((15, 20, 50), noise * 3)
        stars = rng.random((height, width)) > 0.995
        img[stars] = 230
    elif name == "bricks":
        rows = (yy * 8).astype(int)
        shifted = xx * 6 + (rows % 2) * 0.5
        mortar = (np.abs(yy * 8 - np.round(yy * 8)) < 0.06) | (np.abs(shifted - np.round(shifted)) < 0.03)
        img = mix((160, 70, 50), noise * 8)
        img[mortar] = (200, 195, 185)
    elif name == "paper":
        lines = (np.abs(yy * 14 - np.round(yy * 14)) < 0.04) * -25.0
        img = mix((245, 242, 230), lines + noise * 2)
    else:
        raise ValueError(f"unknown background {name!r}")
    return img.astype(np.uint8)


def _background(name: str, width: int, height: int, texture_seed: int) -> np.ndarray:
    # A few texture variants per background and size keep rendering fast (cached) but not identical.
    return _cached_background(name, width, height, texture_seed % 4).copy()


# ---- captions ----------------------------------------------------------------------------------------------


def describe_scene(scene: Scene, rng: np.random.Generator, n: int = 5) -> list[str]:
    """n different reference captions (fewer only if the grammar cannot make n different ones)."""
    captions: list[str] = []
    for _ in range(n * 20):
        caption = _one_caption(scene, rng)
        if caption not in captions:
            captions.append(caption)
        if len(captions) == n:
            break
    return captions


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _noun_phrase(obj: SceneObject, rng: np.random.Generator, with_size: bool | None = None) -> str:
    if with_size is None:
        with_size = rng.random() < 0.5
    words = [_pick(rng, SIZES[obj.size][1])] if with_size else []
    words += [obj.colour, _pick(rng, SHAPES[obj.shape][0])]
    return ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)


def _where(scene: Scene, rng: np.random.Generator) -> str:
    return _pick(rng, BACKGROUNDS[scene.background][0])


def _one_caption(scene: Scene, rng: np.random.Generator) -> str:
    objs = scene.objects
    where = _where(scene, rng)
    if len(objs) == 1:
        o = objs[0]
        side = _pick(rng, COLUMN_PHRASES[o.column])
        templates = [
            lambda: f"{_noun_phrase(o, rng, True)} {where}",
            lambda: f"{_noun_phrase(o, rng)} {side} {where}",
            lambda: f"there is {_noun_phrase(o, rng)} {side}",
            lambda: f"{where} there is {_noun_phrase(o, rng)}",
            lambda: f"a picture of {_noun_phrase(o, rng)} {where}",
        ]
    else:
        phrases = [_noun_phrase(o, rng) for o in objs]
        same = len({(o.shape, o.colour) for o in objs}) == 1
        count = NUMBER_WORDS[len(objs)]
        templates = [
            lambda: f"{' and '.join(phrases) if len(objs) == 2 else f'{phrases[0]} {phrases[1]} and {phrases[2]}'} {where}",
            lambda: f"{count} shapes {where} {phrases[0]} on the left and {phrases[-1]} on the right",
        ]
        if len(objs) == 2:
            templates += [
                lambda: f"{phrases[0]} to the left of {phrases[1]} {where}",
                lambda: f"{phrases[1]} to the right of {phrases[0]} {where}",
                lambda: f"{where} {phrases[0]} is next to {phrases[1]}",
            ]
        else:
            templates += [
                lambda: f"{phrases[1]} between {phrases[0]} and {phrases[2]} {where}",
                lambda: f"from left to right {phrases[0]} {phrases[1]} and {phrases[2]}",
            ]
        if same:
            plural = _pick(rng, SHAPES[objs[0].shape][1])
            templates += [
                lambda: f"{count} {objs[0].colour} {plural} {where}",
                lambda: f"{where} there are {count} {objs[0].colour} {plural}",
            ]
    return _pick(rng, templates)()


# ---- checking captions -------------------------------------------------------------------------------------

_SHAPE_OF_WORD = {word: shape for shape, (singular, plural) in SHAPES.items() for word in singular + plural}


def shape_words_right(scene: Scene, words: list[str]) -> tuple[int, int]:
    """-> (objects named, objects named with the right shape). An object counts as named when the caption says
    its colour followed by a shape word; only objects whose colour is unique in the scene are checked, so the
    word can be pinned to one object. BLEU barely moves when every shape is wrong (shape words are a small part of
    each caption), so this says what BLEU does not."""
    named = right = 0
    for obj in scene.objects:
        if sum(other.colour == obj.colour for other in scene.objects) != 1:
            continue
        said = next((_SHAPE_OF_WORD[b] for a, b in pairwise(words) if a == obj.colour and b in _SHAPE_OF_WORD),
                    None)
        if said is not None:
            named += 1
            right += said == obj.shape
    return named, right


def caption_mistakes(scene: Scene, caption: str) -> list[str]:
    """What a caption gets wrong about a scene, in words (empty: nothing). Every shape it names must have the
    colour and the shape it says; every object must be named, unless the caption counts them ("three shapes in the
    snow, a green triangle on the left and ..." names the ends only); a count must be right; no colour the scene
    lacks may be named; where it says where the shapes are, that must be this scene's background."""
    words = caption.split()
    mistakes = []
    count = NUMBER_WORDS.get(len(scene.objects))
    counted = count is not None and count in words
    for obj in scene.objects:
        shapes = [_SHAPE_OF_WORD[b] for a, b in pairwise(words) if a == obj.colour and b in _SHAPE_OF_WORD]
        if shapes and obj.shape not in shapes:
            mistakes.append(f"the {obj.colour} {obj.shape} is called a {shapes[0]}")
        elif not shapes and not counted:
            mistakes.append(f"the {obj.colour} {obj.shape} is not named")
    for word in set(words) & set(NUMBER_WORDS.values()) - {count}:
        mistakes.append(f"there are not {word} shapes")
    for colour in set(words) & set(COLOURS) - {o.colour for o in scene.objects}:
        mistakes.append(f"there is no {colour} shape")
    for background, (phrases, _) in BACKGROUNDS.items():
        if background != scene.background and any(f" {p} " in f" {caption} " for p in phrases):
            mistakes.append(f"the background is {scene.background}, not {background}")
    return mistakes
