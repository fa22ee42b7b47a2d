"""Render the example images in examples/ and keep only renderings the demo model captions correctly.

    python scripts/make_examples.py        # rewrites examples/*.jpg and examples/scenes.json

Each example is a fixed scene (its file name says what it shows); the texture and the exact positions vary with a
seed, tried in order until the demo model's caption names every shape with its colour and, where it says where
they are, the right background (vidcap.synthetic.caption_mistakes). tests/test_examples.py checks the same of
whatever examples/ holds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from PIL import Image

from vidcap.captioner import Captioner
from vidcap.synthetic import Scene, SceneObject, caption_mistakes, render_scene

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WIDTH, HEIGHT = 640, 480
SCENES = {
    "red-circle-left-of-blue-square.jpg": Scene("sand", (SceneObject("circle", "red", "large", 0, 1 / 6, 0.5),
                                                          SceneObject("square", "blue", "large", 2, 5 / 6, 0.5))),
    "three-shapes-in-the-snow.jpg": Scene("snow", (SceneObject("triangle", "green", "large", 0, 1 / 6, 0.5),
                                                    SceneObject("diamond", "purple", "large", 1, 0.5, 0.5),
                                                    SceneObject("circle", "black", "large", 2, 5 / 6, 0.5))),
    "yellow-star-at-night.jpg": Scene("night", (SceneObject("star", "yellow", "large", 1, 0.5, 0.5),)),
}


def variant(scene: Scene, seed: int) -> Scene:
    rng = np.random.default_rng(seed)
    objects = tuple(replace(o, x=(o.column + 0.5) / 3 + float(rng.uniform(-0.04, 0.04)),
                            y=float(rng.uniform(0.38, 0.62))) for o in scene.objects)
    return Scene(scene.background, objects, int(rng.integers(2**31)))


def main() -> None:
    captioner = Captioner.load(device="cpu")
    truth = {}
    for name, scene in SCENES.items():
        for seed in range(200):
            candidate = variant(scene, seed)
            pixels = render_scene(candidate, WIDTH, HEIGHT)
            path = EXAMPLES / name
            Image.fromarray(pixels).save(path, quality=92)
            caption = captioner.caption_files([path])[0].text  # the JPEG, as a user's command reads it
            if not caption_mistakes(candidate, caption):
                break
        else:
            raise SystemExit(f"no rendering of {name} is captioned correctly by the demo model")
        print(f"{name}: seed {seed}: {caption}")
        truth[name] = asdict(candidate)
    (EXAMPLES / "scenes.json").write_text(json.dumps(truth, indent=1) + "\n")


if __name__ == "__main__":
    main()
