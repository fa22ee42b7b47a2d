"""`vidcap import`: a checkpoint of the "PyTorch Tutorial to Image Captioning" (Show, Attend and Tell), made here
in exactly its format (its models.py's classes, pickled whole by torch.save with optimizers and bleu-4; random
weights; a small word map), imported, and decoded by vidcap to the same captions as the published architecture's
own decoding, written below from the tutorial's models.py and caption.py. No code from the file runs on import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidcap.captioner import Captioner
from vidcap.errors import CheckpointError
from vidcap.model import CaptionModel, load_checkpoint
from vidcap.preprocess import to_model_input
from vidcap.published import import_checkpoint

from conftest import VIDCAP, cli_env, synthetic_images

# The tutorial's models.py (its published architecture), with a backbone argument so tests can use small ones.
TUTORIAL_MODELS = '''
import torch
import torchvision
from torch import nn


class Encoder(nn.Module):
    def __init__(self, encoded_image_size=14, backbone="resnet101"):
        super(Encoder, self).__init__()
        self.enc_image_size = encoded_image_size
        resnet = getattr(torchvision.models, backbone)(weights=None)
        modules = list(resnet.children())[:-2]
        self.resnet = nn.Sequential(*modules)
        self.adaptive_pool = nn.AdaptiveAvgPool2d((encoded_image_size, encoded_image_size))

    def forward(self, images):
        out = self.resnet(images)
        out = self.adaptive_pool(out)
        out = out.permute(0, 2, 3, 1)
        return out


class Attention(nn.Module):
    def __init__(self, encoder_dim, decoder_dim, attention_dim):
        super(Attention, self).__init__()
        self.encoder_att = nn.Linear(encoder_dim, attention_dim)
        self.decoder_att = nn.Linear(decoder_dim, attention_dim)
        self.full_att = nn.Linear(attention_dim, 1)
        self.relu = nn.ReLU()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, encoder_out, decoder_hidden):
        att1 = self.encoder_att(encoder_out)
        att2 = self.decoder_att(decoder_hidden)
        att = self.full_att(self.relu(att1 + att2.unsqueeze(1))).squeeze(2)
        alpha = self.softmax(att)
        attention_weighted_encoding = (encoder_out * alpha.unsqueeze(2)).sum(dim=1)
        return attention_weighted_encoding, alpha


class DecoderWithAttention(nn.Module):
    def __init__(self, attention_dim, embed_dim, decoder_dim, vocab_size, encoder_dim=2048, dropout=0.5):
        super(DecoderWithAttention, self).__init__()
        self.encoder_dim = encoder_dim
        self.attention_dim = attention_dim
        self.embed_dim = embed_dim
        self.decoder_dim = decoder_dim
        self.vocab_size = vocab_size
        self.dropout = dropout
        self.attention = Attention(encoder_dim, decoder_dim, attention_dim)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.dropout = nn.Dropout(p=self.dropout)
        self.decode_step = nn.LSTMCell(embed_dim + encoder_dim, decoder_dim, bias=True)
        self.init_h = nn.Linear(encoder_dim, decoder_dim)
        self.init_c = nn.Linear(encoder_dim, decoder_dim)
        self.f_beta = nn.Linear(decoder_dim, encoder_dim)
        self.sigmoid = nn.Sigmoid()
        self.fc = nn.Linear(decoder_dim, vocab_size)

    def init_hidden_state(self, encoder_out):
        mean_encoder_out = encoder_out.mean(dim=1)
        h = self.init_h(mean_encoder_out)
        c = self.init_c(mean_encoder_out)
        return h, c
'''

WORDS = ["a", "man", "dog", "red", "bus", "on", "street", "with", "the", "of", "sitting", "two", "people", "plate",
         "food", "table", "riding", "bike", "near", "water"]


def tutorial_word_map(words: list[str]) -> dict[str, int]:
    """As the tutorial's create_input_files: words from 1, then <unk>, <start>, <end>, and <pad> = 0."""
    word_map = {w: i + 1 for i, w in enumerate(words)}
    word_map["<unk>"] = len(word_map) + 1
    word_map["<start>"] = len(word_map) + 1
    word_map["<end>"] = len(word_map) + 1
    word_map["<pad>"] = 0
    return word_map


@pytest.fixture(scope="module")
def tutorial():
    """The tutorial's modules, importable as `models` while the checkpoints are written (as its train.py has them)."""
    module = types.ModuleType("models")
    exec(compile(TUTORIAL_MODELS, "models.py", "exec"), module.__dict__)
    sys.modules["models"] = module
    yield module
    del sys.modules["models"]


def make_tutorial_model(tutorial, backbone: str, seed: int = 0, encoded_size: int = 14):
    torch.manual_seed(seed)
    word_map = tutorial_word_map(WORDS)
    encoder = tutorial.Encoder(encoded_size, backbone)
    _settle_batch_norm(encoder)
    feature_dim = 512 if backbone in ("resnet18", "resnet34") else 2048
    decoder = tutorial.DecoderWithAttention(512, 512, 512, len(word_map), feature_dim, 0.5).eval()
    with torch.no_grad():  # as a trained model: it never says <pad> or <start> (a random one would)
        decoder.fc.bias[word_map["<pad>"]] = decoder.fc.bias[word_map["<start>"]] = -100.0
        decoder.fc.bias[word_map["<end>"]] += END_BIAS
    return encoder, decoder, word_map


END_BIAS = 0.0  # random weights end early enough (and a beam that does not end is capped alike)


@torch.no_grad()
def _settle_batch_norm(encoder) -> None:
    """Random weights with the batch statistics they give (as training leaves them): features of a sane size,
    not the 1e4 that untrained running statistics let a 101-layer trunk reach."""
    for module in encoder.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # a plain average over the batches below
    encoder.train()
    for seed in range(3):
        encoder(images(4, seed))
    encoder.eval()


def save_tutorial_checkpoint(path: Path, encoder, decoder, bleu4: float = 0.3329) -> None:
    """The tutorial's utils.save_checkpoint: the modules themselves, pickled whole."""
    decoder_optimizer = torch.optim.Adam(params=filter(lambda p: p.requires_grad, decoder.parameters()), lr=4e-4)
    state = {"epoch": 12, "epochs_since_improvement": 0, "bleu-4": bleu4, "encoder": encoder, "decoder": decoder,
             "encoder_optimizer": None, "decoder_optimizer": decoder_optimizer}
    torch.save(state, path)


# ---- the published decoding (caption.py), the reference ---------------------------------------------------------


@torch.no_grad()
def reference_beam_search(encoder, decoder, image: torch.Tensor, word_map: dict[str, int], beam_size: int
                          ) -> list[int] | None:
    """caption_image_beam_search of the tutorial's caption.py, on an already normalised (3, H, W) image."""
    k = beam_size
    vocab_size = len(word_map)
    encoder_out = encoder(image.unsqueeze(0))
    encoder_dim = encoder_out.size(3)
    encoder_out = encoder_out.view(1, -1, encoder_dim)
    num_pixels = encoder_out.size(1)
    encoder_out = encoder_out.expand(k, num_pixels, encoder_dim)
    k_prev_words = torch.LongTensor([[word_map["<start>"]]] * k)
    seqs = k_prev_words
    top_k_scores = torch.zeros(k, 1)
    complete_seqs, complete_seqs_scores = [], []
    step = 1
    h, c = decoder.init_hidden_state(encoder_out)
    while True:
        embeddings = decoder.embedding(k_prev_words).squeeze(1)
        awe, alpha = decoder.attention(encoder_out, h)
        gate = decoder.sigmoid(decoder.f_beta(h))
        awe = gate * awe
        h, c = decoder.decode_step(torch.cat([embeddings, awe], dim=1), (h, c))
        scores = F.log_softmax(decoder.fc(h), dim=1)
        scores = top_k_scores.expand_as(scores) + scores
        if step == 1:
            top_k_scores, top_k_words = scores[0].topk(k, 0, True, True)
        else:
            top_k_scores, top_k_words = scores.view(-1).topk(k, 0, True, True)
        prev_word_inds = top_k_words // vocab_size
        next_word_inds = top_k_words % vocab_size
        seqs = torch.cat([seqs[prev_word_inds], next_word_inds.unsqueeze(1)], dim=1)
        incomplete_inds = [i for i, w in enumerate(next_word_inds) if w != word_map["<end>"]]
        complete_inds = list(set(range(len(next_word_inds))) - set(incomplete_inds))
        if complete_inds:
            complete_seqs.extend(seqs[complete_inds].tolist())
            complete_seqs_scores.extend(top_k_scores[complete_inds])
        k -= len(complete_inds)
        if k == 0:
            break
        seqs = seqs[incomplete_inds]
        h = h[prev_word_inds[incomplete_inds]]
        c = c[prev_word_inds[incomplete_inds]]
        encoder_out = encoder_out[prev_word_inds[incomplete_inds]]
        top_k_scores = top_k_scores[incomplete_inds].unsqueeze(1)
        k_prev_words = next_word_inds[incomplete_inds].unsqueeze(1)
        if step > 50:
            break
        step += 1
    if not complete_seqs:  # the published code fails here (max of nothing): no reference to compare with
        return None
    i = complete_seqs_scores.index(max(complete_seqs_scores))
    return complete_seqs[i]


@torch.no_grad()
def reference_greedy(encoder, decoder, image: torch.Tensor, word_map: dict[str, int]) -> list[int]:
    encoder_out = encoder(image.unsqueeze(0))
    encoder_out = encoder_out.view(1, -1, encoder_out.size(3))
    h, c = decoder.init_hidden_state(encoder_out)
    word, seq = word_map["<start>"], [word_map["<start>"]]
    for _ in range(50):  # vidcap's length cap: 50 words
        awe, _ = decoder.attention(encoder_out, h)
        awe = decoder.sigmoid(decoder.f_beta(h)) * awe
        h, c = decoder.decode_step(torch.cat([decoder.embedding(torch.tensor([word])), awe], dim=1), (h, c))
        word = int(decoder.fc(h).argmax(dim=1))
        seq.append(word)
        if word == word_map["<end>"]:
            break
    return seq


def words_of(seq: list[int], word_map: dict[str, int]) -> list[str]:
    rev = {i: w for w, i in word_map.items()}
    return [rev[i] for i in seq if rev[i] not in ("<start>", "<end>", "<pad>")]


def images(n: int = 4, seed: int = 21) -> torch.Tensor:
    return torch.cat([to_model_input(pixels, 256) for pixels, _ in synthetic_images(n, seed=seed, size=(160, 112))])


# ---- tests ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_tutorial_checkpoint_imports_and_decodes_as_the_published_model(tutorial, tmp_path):
    encoder, decoder, word_map = make_tutorial_model(tutorial, "resnet101")
    save_tutorial_checkpoint(tmp_path / "BEST_checkpoint_coco_5_cap_per_img_5_min_word_freq.pth.tar", encoder,
                             decoder)
    (tmp_path / "WORDMAP_coco.json").write_text(json.dumps(word_map))
    done = subprocess.run([*VIDCAP, "import", str(tmp_path / "BEST_checkpoint_coco_5_cap_per_img_5_min_word_freq.pth.tar"),
                           "--word-map", str(tmp_path / "WORDMAP_coco.json"), "--out", str(tmp_path / "sat.pt")],
                          capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resnet101" in done.stdout and "0.3329" in done.stdout
    checkpoint = load_checkpoint(tmp_path / "sat.pt")  # vidcap's own weights-only loader reads it
    assert checkpoint["card"]["reported"]["bleu-4"] == pytest.approx(0.3329)
    assert checkpoint["card"]["source"].startswith("PyTorch Tutorial to Image Captioning")
    model = CaptionModel.from_checkpoint(checkpoint)
    assert model.config.backbone == "resnet101" and model.config.encoded_size == 14
    batch = images(8)
    greedy = model.caption_images(batch, beam_size=1)
    for i in range(len(batch)):
        assert greedy[i].words == words_of(reference_greedy(encoder, decoder, batch[i], word_map), word_map), i
    compared = [len(c.words) for c in greedy]
    for size in (3, 5):
        beams = model.caption_images(batch, beam_size=size)
        for i in range(len(batch)):
            reference = reference_beam_search(encoder, decoder, batch[i], word_map, size)
            if reference is not None:  # the published search ended (it fails when no beam says <end> in 50 words)
                assert beams[i].words == words_of(reference, word_map), (size, i)
                compared.append(len(beams[i].words))
    assert sum(n >= 2 for n in compared) >= 5, compared  # captions were compared, not only empty ones
    captioner = Captioner.load(tmp_path / "sat.pt", encoder="torch")
    assert captioner.model.config.backbone == "resnet101"


def test_a_plain_state_dict_imports_to_the_same_model(tutorial, tmp_path):
    encoder, decoder, word_map = make_tutorial_model(tutorial, "resnet18", seed=3, encoded_size=7)
    save_tutorial_checkpoint(tmp_path / "modules.pth.tar", encoder, decoder)
    torch.save({"encoder": encoder.state_dict(), "decoder": decoder.state_dict()}, tmp_path / "state.pth")
    (tmp_path / "WORDMAP.json").write_text(json.dumps(word_map))
    import_checkpoint(tmp_path / "modules.pth.tar", tmp_path / "WORDMAP.json", tmp_path / "a.pt")
    import_checkpoint(tmp_path / "state.pth", tmp_path / "WORDMAP.json", tmp_path / "b.pt", encoded_size=7)
    a, b = CaptionModel.from_checkpoint(tmp_path / "a.pt"), CaptionModel.from_checkpoint(tmp_path / "b.pt")
    assert a.config.encoded_size == 7  # read from the pickled pool
    batch = images(2)
    assert [c.words for c in a.caption_images(batch, 3)] == [c.words for c in b.caption_images(batch, 3)]
    assert [c.words for c in a.caption_images(batch, 1)] == [
        words_of(reference_greedy(encoder, decoder, batch[i], word_map), word_map) for i in range(2)]


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(tutorial, tmp_path):
    encoder, decoder, word_map = make_tutorial_model(tutorial, "resnet18")
    marker = tmp_path / "ran"
    torch.save({"encoder": encoder, "decoder": decoder, "bleu-4": 0.3, "payload": _Exploit(marker)},
               tmp_path / "evil.pth.tar")
    (tmp_path / "WORDMAP.json").write_text(json.dumps(word_map))
    with pytest.raises(CheckpointError, match=r"refused: the checkpoint holds (posix|os)\.system"):
        import_checkpoint(tmp_path / "evil.pth.tar", tmp_path / "WORDMAP.json", tmp_path / "evil.pt")
    assert not marker.exists() and not (tmp_path / "evil.pt").exists()
    other = tmp_path / "other.pth.tar"  # any class outside the format: a torch module of another kind
    torch.save({"encoder": encoder, "decoder": decoder, "extra": nn.GRU(4, 4)}, other)
    with pytest.raises(CheckpointError, match=r"torch\.nn\.modules\.rnn\.GRU"):
        import_checkpoint(other, tmp_path / "WORDMAP.json", tmp_path / "other.pt")
    run = subprocess.run([*VIDCAP, "import", str(tmp_path / "evil.pth.tar"), "--word-map",
                          str(tmp_path / "WORDMAP.json"), "--out", str(tmp_path / "evil.pt")],
                         capture_output=True, text=True, env=cli_env(), timeout=120)
    assert run.returncode == 2 and "system" in run.stderr and "Traceback" not in run.stderr
    assert not marker.exists()


def test_wrong_keys_shapes_and_word_maps_are_named(tutorial, tmp_path):
    encoder, decoder, word_map = make_tutorial_model(tutorial, "resnet18")
    (tmp_path / "WORDMAP.json").write_text(json.dumps(word_map))
    state = {"encoder": encoder.state_dict(), "decoder": dict(decoder.state_dict())}
    del state["decoder"]["init_c.bias"]
    state["decoder"]["f_beta.weight"] = torch.zeros(3, 3)
    state["decoder"]["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        import_checkpoint(tmp_path / "bad.pth", tmp_path / "WORDMAP.json", tmp_path / "bad.pt")
    message = str(info.value)
    assert "missing: decoder.init_c.bias" in message and "unexpected: decoder.extra.weight" in message
    assert "mis-shaped: decoder.beta_gate.weight (3, 3)" in message
    (tmp_path / "small.json").write_text(json.dumps(tutorial_word_map(WORDS[:5])))
    torch.save({"encoder": encoder.state_dict(), "decoder": decoder.state_dict()}, tmp_path / "ok.pth")
    with pytest.raises(CheckpointError, match="not its word map"):
        import_checkpoint(tmp_path / "ok.pth", tmp_path / "small.json", tmp_path / "x.pt")
    (tmp_path / "nomap.json").write_text(json.dumps({"a": 0}))
    with pytest.raises(CheckpointError, match="lacks"):
        import_checkpoint(tmp_path / "ok.pth", tmp_path / "nomap.json", tmp_path / "x.pt")
