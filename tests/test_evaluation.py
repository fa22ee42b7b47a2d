"""Scores: BLEU on the 0-100 scale from nltk, CIDEr/ROUGE-L from pycocoevalcap."""

from __future__ import annotations

import pytest

from vidcap.evaluation import bleu_scores, coco_scores
from vidcap.synthetic import Scene, SceneObject, shape_words_right


def test_bleu_of_identical_captions_is_100():
    refs = [[["a", "red", "circle", "on", "the", "grass"]], [["two", "blue", "squares", "in", "the", "snow"]]]
    hyps = [r[0] for r in refs]
    assert bleu_scores(refs, hyps) == pytest.approx({"bleu1": 100.0, "bleu2": 100.0, "bleu3": 100.0, "bleu4": 100.0})


def test_bleu_uses_all_references_and_falls_with_errors():
    refs = [[["a", "red", "circle", "on", "grass"], ["a", "red", "disc", "on", "the", "lawn"]]]
    assert bleu_scores(refs, [["a", "red", "disc", "on", "the", "lawn"]])["bleu4"] == pytest.approx(100.0)
    wrong = bleu_scores(refs, [["a", "blue", "square", "in", "the", "sky"]])
    assert wrong["bleu1"] < 50 and wrong["bleu4"] == 0.0  # reported as 0, not nltk's 1e-229


@pytest.mark.integration  # pycocoevalcap runs Java (METEOR, SPICE tokenizer)
def test_coco_scores_rank_a_good_caption_above_a_bad_one():
    pytest.importorskip("pycocoevalcap", reason="pycocoevalcap is installed by the dev extra")
    refs = [[["a", "red", "circle", "on", "grass"], ["a", "red", "disc", "on", "the", "lawn"]],
            [["two", "blue", "squares", "in", "the", "snow"], ["two", "blue", "blocks", "on", "snow"]],
            [["a", "star", "at", "night"], ["a", "yellow", "star", "in", "the", "dark"]]]
    good = coco_scores(refs, [["a", "red", "circle", "on", "grass"], ["two", "blue", "squares", "on", "snow"],
                              ["a", "yellow", "star", "at", "night"]])
    bad = coco_scores(refs, [["a", "green", "cross"], ["a", "red", "star"], ["sand"]])
    assert good["cider"] > bad["cider"] and good["rouge_l"] > bad["rouge_l"]



def test_shape_words_are_checked_against_the_scene():
    scene = Scene("grass", (SceneObject("star", "red", "small", 0, 0.2, 0.5),
                            SceneObject("square", "blue", "large", 1, 0.5, 0.5),
                            SceneObject("circle", "blue", "large", 2, 0.8, 0.5)))
    # red is unique: checked; blue is on two objects: left out; synonyms and plurals count
    assert shape_words_right(scene, "a little red star on grass".split()) == (1, 1)
    assert shape_words_right(scene, "a red cross to the left of a blue block".split()) == (1, 0)
    assert shape_words_right(scene, "three shapes on grass".split()) == (0, 0)
    single = Scene("sand", (SceneObject("square", "purple", "large", 1, 0.5, 0.5),))
    assert shape_words_right(single, "a big purple block in the desert".split()) == (1, 1)
    assert shape_words_right(single, "two purple blocks in the desert".split()) == (1, 1)
