"""The example images say what they show: the demo model captions each one correctly (the first thing a newcomer
tries is `vidcap caption examples/*.jpg`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vidcap.synthetic import Scene, SceneObject, caption_mistakes

from conftest import cli_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _scenes() -> dict[str, Scene]:
    data = json.loads((EXAMPLES / "scenes.json").read_text())
    return {name: Scene(s["background"], tuple(SceneObject(**o) for o in s["objects"]), s["texture_seed"])
            for name, s in data.items()}


def test_every_example_has_its_scene_written_down():
    images = sorted(p.name for p in EXAMPLES.glob("*.jpg"))
    assert images and images == sorted(_scenes())


@pytest.mark.integration  # starts vidcap processes
def test_the_demo_model_captions_every_example_correctly():
    """Through the command a newcomer runs first, on the JPEG files as they ship."""
    scenes = _scenes()
    out = subprocess.run([sys.executable, "-m", "vidcap.cli", "caption", "--json",
                          *[str(EXAMPLES / name) for name in scenes]],
                         capture_output=True, text=True, env=cli_env(), timeout=300, check=True).stdout
    captions = [item["caption"] for item in json.loads(out)]
    assert len(captions) == len(scenes)
    for (name, scene), caption in zip(scenes.items(), captions):
        assert not caption_mistakes(scene, caption), (name, caption, caption_mistakes(scene, caption))


@pytest.mark.parametrize("caption, wrong", [
    ("on a grassy field there are two blue circles", True),     # what the old example got: wrong in every way
    ("two shapes on a sandy beach a red circle on the left and a big blue square on the right", False),
    ("a red circle to the left of a blue square on sand", False),
    ("a red square to the left of a blue square on sand", True),
    ("three shapes on sand a red circle on the left and a blue square on the right", True),
    ("a red circle and a blue square in the snow", True),
    ("there is a red circle on sand", True),                    # the blue square is not named
])
def test_the_check_catches_what_is_wrong(caption, wrong):
    scene = Scene("sand", (SceneObject("circle", "red", "large", 0, 0.2, 0.5),
                           SceneObject("square", "blue", "large", 2, 0.8, 0.5)))
    assert bool(caption_mistakes(scene, caption)) == wrong
