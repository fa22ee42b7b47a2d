"""Vocabulary, synthetic scenes and the Karpathy-format loader, on data the tests make themselves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vidcap.data import KarpathyDataset, SyntheticDataset, collate_for_training, open_dataset
from vidcap.errors import DatasetError
from vidcap.synthetic import BACKGROUNDS, COLOURS, SHAPES, Scene, SceneObject, describe_scene, random_scene, render_scene
from vidcap.vocab import Vocabulary, tokenize

from conftest import write_karpathy


def test_vocabulary_round_trip_and_unknown_words():
    vocab = Vocabulary.build([["a", "red", "circle"], ["a", "blue", "circle"], ["rare"]], min_freq=2)
    assert vocab.words[:4] == ["<pad>", "<start>", "<end>", "<unk>"]
    assert "rare" not in vocab.index
    ids = vocab.encode(["a", "rare", "circle"])
    assert ids[0] == vocab.start_id and ids[-1] == vocab.end_id
    assert vocab.decode(ids) == ["a", "<unk>", "circle"]
    assert vocab.decode([vocab.start_id, vocab.index["a"], vocab.end_id, vocab.index["circle"]]) == ["a"]
    assert Vocabulary.build([["b", "a", "a"]]).words == Vocabulary.build([["a", "b", "a"]]).words


def test_tokenize_needs_no_nltk_data():
    assert tokenize("A Red circle, on the lawn!") == ["a", "red", "circle", "on", "the", "lawn"]


def test_synthetic_scenes_are_deterministic_by_seed():
    a = SyntheticDataset("test", 5, 64, seed=3)
    b = SyntheticDataset("test", 5, 64, seed=3)
    other = SyntheticDataset("test", 5, 64, seed=4)
    for i in range(5):
        assert np.array_equal(a.pixels(i), b.pixels(i))
        assert a.references(i) == b.references(i)
    assert any(not np.array_equal(a.pixels(i), other.pixels(i)) for i in range(5))
    train, test = SyntheticDataset("train", 5, 64), SyntheticDataset("test", 5, 64)
    assert all(not np.array_equal(train.pixels(i), test.pixels(i)) for i in range(5))


def test_synthetic_captions_are_varied_and_say_what_is_there():
    all_shape_words = {w: shape for shape, (singular, plural) in SHAPES.items() for w in (*singular, *plural)}
    rng = np.random.default_rng(0)
    for _ in range(200):
        scene = random_scene(rng)
        captions = describe_scene(scene, rng, 5)
        assert len(captions) == 5 and len(set(captions)) == 5
        colours = {o.colour for o in scene.objects}
        shapes = {o.shape for o in scene.objects}
        for caption in captions:
            for phrase in BACKGROUNDS[scene.background][0]:  # "on a white background" names no object
                caption = caption.replace(phrase, "")
            words = caption.split()
            assert {w for w in words if w in COLOURS} <= colours, (caption, scene)  # nothing made up
            assert {all_shape_words[w] for w in words if w in all_shape_words} <= shapes, (caption, scene)
        for obj in scene.objects:  # every object is named (one template names only the outer two of three)
            assert any(obj.colour in c.split() for c in captions), (captions, scene)


def test_spatial_relations_match_the_picture():
    left = SceneObject("circle", "red", "large", 0, 0.17, 0.5)
    right = SceneObject("square", "blue", "large", 2, 0.83, 0.5)
    scene = Scene("grass", (left, right))
    pixels = render_scene(scene, 120, 90)
    assert tuple(pixels[45, 20]) == COLOURS["red"] and tuple(pixels[45, 100]) == COLOURS["blue"]
    rng = np.random.default_rng(1)
    captions = {c for _ in range(30) for c in describe_scene(scene, rng, 5)}
    for c in captions:
        if "to the left of" in c:
            assert c.index("red") < c.index("blue")
        if "to the right of" in c:
            assert c.index("blue") < c.index("red")
    assert any("to the left of" in c for c in captions) and any("to the right of" in c for c in captions)


def test_karpathy_loader_reads_a_tiny_coco_style_dataset(tmp_path):
    write_karpathy(tmp_path, "coco", {"train": 4, "restval": 2, "val": 3, "test": 1})
    train = open_dataset("coco", "train", 64, tmp_path)
    val = open_dataset("coco", "val", 64, tmp_path)
    assert len(train) == 6  # restval counts as train
    assert len(val) == 3
    image, refs = train[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert len(refs) == 5 and all(isinstance(t, str) for t in refs[0])
    vocab = Vocabulary.build(t for i in range(len(train)) for t in train.references(i))
    images, ids = collate_for_training([train[0], train[1]], vocab, max_len=50)
    assert images.shape == (2, 3, 64, 64) and ids[:, 0].tolist() == [vocab.start_id] * 2


def test_karpathy_loader_flickr_layout_and_raw_sentences(tmp_path):
    path = write_karpathy(tmp_path, "flickr8k", {"train": 2, "val": 1, "test": 1})
    data = json.loads(path.read_text())
    for entry in data["images"]:  # Flickr files have no filepath; tokens may be missing: use raw
        for sentence in entry["sentences"]:
            del sentence["tokens"]
    path.write_text(json.dumps(data))
    test = KarpathyDataset(path, tmp_path, "test", 32)
    assert len(test) == 1
    raw = data["images"][-1]["sentences"][0]["raw"]
    assert test.references(0)[0] == tokenize(raw)


def test_karpathy_loader_reports_missing_images_and_bad_files(tmp_path):
    write_karpathy(tmp_path, "coco", {"train": 3, "val": 1, "test": 1})
    (tmp_path / "val2014" / "img_0001.jpg").unlink()
    with pytest.raises(DatasetError, match="1 of 3 train images are missing"):
        open_dataset("coco", "train", 64, tmp_path)
    with pytest.raises(DatasetError, match="needs --data"):
        open_dataset("flickr30k", "train", 64, None)
    with pytest.raises(DatasetError, match="annotation file not found"):
        open_dataset("flickr30k", "train", 64, tmp_path)
    (tmp_path / "dataset_flickr8k.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not a Karpathy split file"):
        open_dataset("flickr8k", "train", 64, tmp_path)
