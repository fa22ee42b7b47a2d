"""Encoder runtimes: every runtime usable here gives the PyTorch reference's region features, artefacts are cached
by model, and the ones that cannot run here say why."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from vidcap.captioner import Captioner
from vidcap.encoders import ENCODER_RUNTIMES, available_encoders, make_encoder
from vidcap.errors import UnavailableError
from vidcap.preprocess import as_tensor, to_model_input

from conftest import DEMO_MODEL, cli_env, synthetic_images, tiny_model

CPU = torch.device("cpu")
EXACT = {"torch", "openvino-f32", "onnxruntime"}  # fp32 all the way
usable_here = [name for name, reason in available_encoders(CPU).items() if reason is None]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDCAP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "encoders"


def _images(model, n: int = 3) -> torch.Tensor:
    """Rendered scenes, normalised: what the encoders see (and the int8 calibration's domain)."""
    return torch.cat([to_model_input(as_tensor(pixels), model.config.image_size)
                      for pixels, _ in synthetic_images(n, seed=9, size=(160, 96))])


def test_the_cpu_runtimes_are_installed_here():
    # CI installs the cpu-accel extra: if these go missing, the rest of this file would test nothing.
    assert {"torch", "torch-bf16", "openvino", "openvino-f32", "openvino-int8", "onnxruntime"} <= set(usable_here)


@pytest.mark.parametrize("name", usable_here)
def test_each_backend_gives_the_reference_region_features(name):
    model = tiny_model(stages=3, image_size=64, encoded_size=4)
    images = _images(model)
    with torch.no_grad():
        reference = model.encoder(images)
    backend = make_encoder(name, model.encoder, model.config, CPU)
    for batch in (images, images[:1]):  # the batch axis is dynamic
        got = backend(batch)
        assert got.shape == reference[: len(batch)].shape and got.dtype == torch.float32
        error = (got - reference[: len(batch)]).abs()
        if name == "openvino-int8":  # 256 levels for weights and activations: close on average, not everywhere
            assert error.mean() <= 0.1 * reference.abs().mean(), (name, error.mean(), reference.abs().mean())
        else:  # bf16 keeps 8 bits of mantissa
            tolerance = 1e-4 if name in EXACT else 3e-2
            assert error.max() <= tolerance * reference.abs().max(), name


def test_compiled_artefacts_are_cached_by_model_and_rebuilt_when_it_changes(private_cache):
    model = tiny_model(stages=3, image_size=64, encoded_size=4)
    make_encoder("onnxruntime", model.encoder, model.config, CPU)
    files = sorted(private_cache.glob("*.onnx"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    make_encoder("openvino-f32", model.encoder, model.config, CPU)  # same model: same file, not rewritten
    assert sorted(private_cache.glob("*.onnx")) == files and files[0].stat().st_mtime_ns == stamp
    with torch.no_grad():
        model.encoder.trunk[0].weight.mul_(0.5)  # a changed model gets its own file
    backend = make_encoder("onnxruntime", model.encoder, model.config, CPU)
    assert len(list(private_cache.glob("*.onnx"))) == 2
    with torch.no_grad():
        assert torch.allclose(backend(_images(model)), model.encoder(_images(model)), atol=1e-4)


def test_unusable_and_unknown_backends_say_why():
    model = tiny_model()
    with pytest.raises(UnavailableError, match="unknown encoder runtime 'magic'"):
        make_encoder("magic", model.encoder, model.config, CPU)
    reasons = available_encoders(CPU)
    assert "cuda" in reasons["tensorrt"]  # a GPU runtime, on a CPU device
    with pytest.raises(UnavailableError, match="tensorrt is not usable here"):
        make_encoder("tensorrt", model.encoder, model.config, CPU)
    assert make_encoder("auto", model.encoder, model.config, CPU).NAME in usable_here


def test_the_cli_offers_exactly_the_registered_backends():
    from vidcap.cli import ENCODER_NAMES

    assert list(ENCODER_NAMES) == ["auto", *ENCODER_RUNTIMES]


def test_the_demo_model_captions_the_same_with_openvino_as_with_torch():
    """The quality check behind `auto` picking OpenVINO (bf16 on this CPU): on 1,000 test images BLEU-4 moved
    from 72.67 to 72.59 (docs/performance.md); here, most captions must come out word for word the same."""
    if "openvino" not in usable_here:
        pytest.skip(available_encoders(CPU)["openvino"])
    images = [pixels for pixels, _ in synthetic_images(40, seed=3, size=(160, 96))]
    reference = [c.words for c in Captioner.load(DEMO_MODEL, encoder="torch").caption(images)]
    openvino = [c.words for c in Captioner.load(DEMO_MODEL, encoder="openvino").caption(images)]
    assert sum(a == b for a, b in zip(reference, openvino)) >= 36


@pytest.mark.gpu
def test_tensorrt_fp16_matches_the_reference_on_a_gpu():
    reason = available_encoders(torch.device("cuda"))["tensorrt"]
    if reason:
        pytest.skip(f"TensorRT: {reason}")
    model = tiny_model(stages=3, image_size=64, encoded_size=4).cuda()
    images = _images(model).cuda()
    with torch.no_grad():
        reference = model.encoder(images)
    got = make_encoder("tensorrt", model.encoder, model.config, torch.device("cuda"))(images)
    assert (got - reference).abs().max() <= 2e-2 * reference.abs().max()


def test_a_cached_compiled_trunk_starts_without_building_the_pytorch_one(private_cache, tmp_path):
    """Startup: once OpenVINO's file for a model is cached, loading it builds no torchvision ResNet (importing
    torchvision costs a second), and the captions are those of a load that builds everything."""
    if "openvino" not in usable_here:
        pytest.skip(available_encoders(CPU)["openvino"])
    model = tiny_model(stages=3, image_size=64, encoded_size=4)
    model.save(tmp_path / "m.pt")
    images = [pixels for pixels, _ in synthetic_images(4, seed=5, size=(160, 96))]
    first = Captioner.load(tmp_path / "m.pt", encoder="openvino-f32")  # cache miss: builds and exports
    assert first.model.encoder.trunk is not None and len(list(private_cache.glob("*.onnx"))) == 1
    probe = ("import sys\nfrom vidcap.captioner import Captioner\n"
             f"c = Captioner.load({str(tmp_path / 'm.pt')!r}, encoder='openvino-f32')\n"
             "print(c.model.encoder.trunk is None, 'torchvision' in sys.modules)")
    env = {**cli_env(), "VIDCAP_CACHE": str(private_cache.parent)}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.split() == ["True", "False"], result.stderr
    second = Captioner.load(tmp_path / "m.pt", encoder="openvino-f32")
    assert second.model.encoder.trunk is None
    assert [c.words for c in second.caption(images)] == [c.words for c in first.caption(images)]
    torch_runtime = Captioner.load(tmp_path / "m.pt", encoder="torch")  # a runtime that needs it builds it
    assert torch_runtime.model.encoder.trunk is not None
    assert [c.words for c in torch_runtime.caption(images)] == [c.words for c in first.caption(images)]


def test_an_unbuilt_trunk_with_wrong_weights_is_a_checkpoint_error(tmp_path):
    from vidcap.errors import CheckpointError
    from vidcap.model import CaptionModel

    ckpt = tiny_model(stages=3, image_size=64, encoded_size=4).checkpoint()
    del ckpt["model"]["encoder.trunk.0.weight"]
    model = CaptionModel.from_checkpoint(ckpt, build_trunk=False)  # the decoder loads; the trunk waits
    with pytest.raises(CheckpointError, match="do not match"):
        model.encoder.require_trunk()


def test_the_export_tensorrt_compiles_keeps_its_batch_axis_dynamic():
    """The TensorRT engine is built from this export and saved with its dynamic_shapes: on CPU, the same export
    must run at batch sizes other than its example's, up to the engine's maximum, and match eager."""
    from vidcap.encoders import TensorRTEncoder, export_with_dynamic_batch

    model = tiny_model(stages=3, image_size=64, encoded_size=4)
    trunk = model.encoder.require_trunk().eval()
    exported, _ = export_with_dynamic_batch(trunk, torch.zeros(TensorRTEncoder.OPT_BATCH, 3, 64, 64),
                                            TensorRTEncoder.MAX_BATCH)
    program = exported.module()
    for batch in (1, 3, TensorRTEncoder.MAX_BATCH):
        images = torch.rand(batch, 3, 64, 64)
        with torch.no_grad():
            assert torch.allclose(program(images), trunk(images), atol=1e-5), batch
    with pytest.raises(Exception):
        program(torch.rand(TensorRTEncoder.MAX_BATCH + 1, 3, 64, 64))  # beyond the profile: refused, not wrong


def test_a_runtime_that_fails_its_test_inference_is_skipped_by_auto_and_refused_by_name(monkeypatch, caplog):
    """Each compiled runtime runs one inference when it is built (at a batch size no artefact was built for), so
    a broken one is found at startup: `auto` falls back to the next runtime, a named one is refused."""
    if "openvino" not in usable_here:
        pytest.skip(available_encoders(CPU)["openvino"])
    from vidcap import encoders

    class CroppedOpenVINO(encoders.OpenVINOEncoder):  # a real OpenVINO runtime whose output lost a channel
        def trunk(self, images):
            return super().trunk(images)[:, :-1]

    monkeypatch.setitem(encoders.ENCODER_RUNTIMES, "openvino", CroppedOpenVINO)
    model = tiny_model(stages=3, image_size=64, encoded_size=4)
    with caplog.at_level("WARNING"):
        runtime = make_encoder("auto", model.encoder, model.config, CPU)
    assert runtime.NAME == "torch" and "openvino failed to start" in caplog.text
    assert "wrong test result" in caplog.text
    with pytest.raises(UnavailableError, match="openvino gave a wrong test result"):
        make_encoder("openvino", model.encoder, model.config, CPU)
