"""The captioning model: attention, decoding, the loss, checkpoints, and that it can actually learn."""

from __future__ import annotations

import math

import pytest
import torch

from vidcap.data import collate_for_training
from vidcap.errors import CheckpointError
from vidcap.model import CaptionModel, caption_loss
from vidcap.preprocess import to_model_input
from vidcap.vocab import tokenize

from conftest import synthetic_images, tiny_model


def _batch(model: CaptionModel, n: int = 3, seed: int = 0) -> torch.Tensor:
    pixels = [p for p, _ in synthetic_images(n, seed)]
    return torch.cat([to_model_input(p, model.config.image_size) for p in pixels])


def test_attention_weights_sum_to_one_over_regions():
    model = tiny_model()
    caption = model.caption_images(_batch(model), beam_size=3)[0]
    s = model.config.encoded_size
    assert caption.attention.shape == (len(caption.words), s, s)
    sums = caption.attention.flatten(1).sum(dim=1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    assert (caption.attention >= 0).all()


def test_beam_size_one_equals_greedy():
    model = tiny_model(seed=3)
    images = _batch(model, 4)
    greedy = model.caption_images(images, beam_size=1)  # the plain arg-max loop
    beam = model.beam_search(model.encoder(images), beam_size=1)
    for g, b in zip(greedy, beam):
        assert g.token_ids == b.token_ids
        assert math.isclose(g.log_prob, b.log_prob, rel_tol=1e-5, abs_tol=1e-5)


def test_beam_search_is_batched_and_deterministic():
    """Decoding a batch gives what decoding each image alone gives, and the same on every call."""
    model = tiny_model(seed=5)
    images = _batch(model, 3)
    together = model.caption_images(images, beam_size=4)
    alone = [model.caption_images(images[i : i + 1], beam_size=4)[0] for i in range(3)]
    again = model.caption_images(images, beam_size=4)
    assert [c.token_ids for c in together] == [c.token_ids for c in alone] == [c.token_ids for c in again]
    for t, a in zip(together, alone):
        assert math.isclose(t.log_prob, a.log_prob, rel_tol=1e-4, abs_tol=1e-4)


def test_beam_search_without_end_returns_best_partial_caption():
    model = tiny_model(seed=1)
    with torch.no_grad():  # make <end> (and <pad>) impossible: no beam can finish inside the cap
        model.decoder.classifier.bias[model.vocab.end_id] = -1e4
        model.decoder.classifier.bias[model.vocab.pad_id] = -1e4
    images = _batch(model, 2)
    for beam in (1, 3):
        for caption in model.caption_images(images, beam_size=beam):
            assert len(caption.words) == model.config.max_caption_len
            assert caption.attention.shape[0] == caption.embeddings.shape[0] == model.config.max_caption_len
            assert math.isfinite(caption.log_prob)


def test_beam_search_returns_the_other_beams_as_distinct_alternatives():
    model = tiny_model(seed=2)
    caption = model.caption_images(_batch(model, 1), beam_size=4)[0]
    assert len(caption.alternatives) == 3
    hypotheses = {tuple(caption.words), *map(tuple, caption.alternatives)}
    assert len(hypotheses) == 4


def test_caption_outputs_embeddings_and_pooled_feature():
    model = tiny_model()
    caption = model.caption_images(_batch(model, 1), beam_size=2)[0]
    assert torch.equal(caption.embeddings, model.decoder.embedding.weight[caption.token_ids].detach())
    assert caption.feature.shape == (model.config.feature_dim,)
    assert caption.words == [model.vocab.words[i] for i in caption.token_ids]


def test_loss_penalty_is_summed_over_regions():
    """alpha_c * sum over regions of (1 - sum over real steps of alpha)^2, by hand."""
    captions = torch.tensor([[1, 5, 2, 0]])  # <start> w <end> <pad>: 2 real targets, 1 padding
    alphas = torch.tensor([[[0.5, 0.5], [0.25, 0.75], [1.0, 0.0]]])  # (B=1, T-1=3, P=2); last step is padding
    logits = torch.zeros(1, 3, 8)
    total, xent = caption_loss(logits, alphas, captions, alpha_c=2.0)
    penalty = (1 - 0.75) ** 2 + (1 - 1.25) ** 2  # padding step ignored
    assert math.isclose(float(xent), math.log(8), rel_tol=1e-6)
    assert math.isclose(float(total - xent), 2.0 * penalty, rel_tol=1e-6)


def test_checkpoint_round_trip_gives_identical_captions(tmp_path):
    model = tiny_model(seed=7)
    images = _batch(model, 3)
    before = model.caption_images(images, beam_size=3)
    model.save(tmp_path / "m.pt")
    loaded = CaptionModel.from_checkpoint(tmp_path / "m.pt")
    after = loaded.caption_images(images, beam_size=3)
    assert loaded.vocab.words == model.vocab.words
    assert loaded.config == model.config
    assert [c.words for c in before] == [c.words for c in after]
    assert [c.log_prob for c in before] == pytest.approx([c.log_prob for c in after], abs=1e-6)
    assert not (tmp_path / "m.pt.tmp").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated zip"])
def test_corrupt_checkpoint_gives_checkpoint_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        CaptionModel.from_checkpoint(path)


def test_foreign_and_missing_checkpoints(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a vidcap checkpoint"):
        CaptionModel.from_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not found"):
        CaptionModel.from_checkpoint(tmp_path / "missing.pt")


def test_model_overfits_a_handful_of_images_and_reproduces_their_captions():
    samples = synthetic_images(4, seed=11)
    captions = [tokenize(refs[0]) for _, refs in samples]
    model = tiny_model([w for c in captions for w in c], seed=0, max_caption_len=30).train()
    images = torch.cat([to_model_input(p, model.config.image_size) for p, _ in samples])
    batch = [(img, [c]) for img, c in zip(images, captions)]
    _, ids = collate_for_training(batch, model.vocab, max_len=30)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        logits, alphas = model(images, ids)
        loss, xent = caption_loss(logits, alphas, ids, alpha_c=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if xent.item() < 0.01:
            break
    assert xent.item() < 0.05
    model.eval()
    for beam in (1, 3):
        decoded = [c.words for c in model.caption_images(images, beam_size=beam)]
        assert decoded == captions
