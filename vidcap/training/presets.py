"""Named training recipes. Each published number in docs/ and model_store/ names the preset that made it."""

from __future__ import annotations

from dataclasses import dataclass, field

from vidcap.config import ModelConfig


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: str = "synthetic"
    train_size: int | None = None  # synthetic only: images per epoch
    val_size: int | None = None  # synthetic only
    min_word_freq: int = 1  # rarer training words become <unk>
    max_train_words: int = 50  # longer training captions are cut
    epochs: int = 20
    batch_size: int = 32
    decoder_lr: float = 4e-4
    encoder_lr: float = 1e-4
    fine_tune_from: int | None = None  # encoder stage to fine-tune from (1 = all of it); None = frozen
    encoder_pretrain_steps: int = 0  # synthetic only: scene-classification steps before captioning (pretrain.py)
    encoder_pretrain_lr: float = 2e-3
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    alpha_c: float = 1.0  # weight of the doubly stochastic attention penalty
    warmup_steps: int = 0
    cosine: bool = False  # cosine decay of both learning rates over all planned steps
    val_beam: int = 3
    val_images: int | None = 500  # validation BLEU on this many images (None = all)
    patience: int = 5  # early stopping: epochs without a better validation BLEU-4
    max_minutes: float | None = None  # stop (and keep the best checkpoint) after this much training time


PRESETS: dict[str, TrainConfig] = {
    # Small enough for 2 CPU cores in ~20 minutes: ResNet-18 trained from scratch (no pretrained weights can be
    # downloaded here), three stages (stride 16) on 112 px -> 7x7 regions. alpha_c = 1/49: the summed penalty
    # over 49 regions at weight 1 kept attention diffuse and the model never learned shapes (docs/training.md);
    # 1/49 equals the popular mean-over-regions implementation at weight 1.
    "demo": TrainConfig(
        model=ModelConfig(
            backbone="resnet18",
            stages=3,
            image_size=112,
            encoded_size=7,
            embed_dim=128,
            attention_dim=128,
            decoder_dim=256,
            dropout=0.3,
            max_caption_len=30,
        ),
        dataset="synthetic",
        train_size=7000,
        val_size=200,
        epochs=6,
        alpha_c=1 / 49,
        batch_size=32,
        decoder_lr=2e-3,
        encoder_lr=2e-3,
        fine_tune_from=1,
        # Caption loss alone never taught the random-init encoder shapes (training/pretrain.py): ~6 minutes of
        # classifying the renderer's labels first, as the paper starts from an ImageNet-trained encoder.
        encoder_pretrain_steps=800,
        warmup_steps=50,
        cosine=True,
        val_images=200,
        patience=4,
        max_minutes=14.0,  # the time cap on training steps; validation adds well under a minute
    ),
    # Paper-like recipe (Xu et al. 2015 and the common PyTorch re-implementations): ResNet-152 at 256 px pooled
    # to 14x14, 512-d everything, dropout 0.5, Adam 4e-4 (decoder) / 1e-4 (encoder, last stages only),
    # alpha_c = 1, gradient clipping 5, words seen fewer than 5 times dropped, early stopping on BLEU-4.
    "coco": TrainConfig(
        model=ModelConfig(),
        dataset="coco",
        min_word_freq=5,
        epochs=20,
        batch_size=32,
        decoder_lr=4e-4,
        encoder_lr=1e-4,
        fine_tune_from=None,
        val_images=5000,
        patience=5,
    ),
}
