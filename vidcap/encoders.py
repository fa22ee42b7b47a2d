"""Encoder runtimes: where the ResNet trunk runs. One small ABC, one class per runtime, a registry of what is
usable on this machine, and an `auto` choice backed by bench/throughput.py (docs/performance.md).

Every runtime runs the trunk only and hands its feature map to `Encoder.regions` (pooling to SxS and flattening),
so the region features mean the same whichever runtime made them. The caption decoder (LSTM) always runs in PyTorch.

| name          | runtime                                   | where | numbers                                  |
| torch         | PyTorch eager, fp32, channels_last        | any   | exact reference                          |
| torch-bf16    | PyTorch eager, bf16 autocast              | any   | bf16 activations                         |
| openvino      | OpenVINO, its default precision           | CPU   | bf16 on CPUs with native bf16, else fp32 |
| openvino-f32  | OpenVINO, fp32 forced                     | CPU   | fp32                                     |
| openvino-int8 | OpenVINO, int8 post-training quantisation | CPU   | int8 weights and activations (NNCF)      |
| onnxruntime   | ONNX Runtime, fp32                        | CPU   | fp32                                     |
| tensorrt      | Torch-TensorRT, FP16, dynamic batch 1-32  | CUDA  | fp16                                     |

The ONNX files, OpenVINO's compiled networks and TensorRT engines are cached on disk (`$VIDCAP_CACHE`, default ~/.cache/vidcap) under a key
made of the encoder's configuration and weights, so a changed model is rebuilt and an unchanged one is not.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import os
import threading
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from vidcap.errors import UnavailableError
from vidcap.fileio import write_atomic
from vidcap.model import Encoder, ModelConfig

log = logging.getLogger(__name__)

# `auto`, by device type: the first usable runtime wins. Chosen by measurement (bench/throughput.py,
# docs/performance.md): on the 2-core AVX-512-BF16 build machine OpenVINO ran the ResNet-152 trunk 2.5x faster
# than eager fp32 with the same demo-model BLEU-4; TensorRT FP16 is the GPU's standard.
AUTO_ORDER = {"cpu": ("openvino", "torch"), "cuda": ("tensorrt", "torch")}


def cache_dir() -> Path:
    return Path(os.environ.get("VIDCAP_CACHE") or Path.home() / ".cache" / "vidcap") / "encoders"


def encoder_key(encoder: Encoder, config: ModelConfig, extra: str = "") -> str:
    """A digest of what the compiled artefact depends on: the architecture and every weight."""
    digest = hashlib.sha256(json.dumps([config.backbone, config.stages, config.image_size, extra]).encode())
    for name, tensor in sorted(encoder.trunk_weights().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


class EncoderRuntime(ABC):
    """Runs an Encoder's trunk: (B, 3, H, W) normalised float32 images -> (B, S*S, C) float32 region features."""

    NAME: ClassVar[str]
    DEVICE_TYPES: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    REQUIRES: ClassVar[tuple[tuple[str, str], ...]] = ()  # (module, pip package or extra that provides it)

    def __init__(self, encoder: Encoder, config: ModelConfig, device: torch.device):
        self.encoder, self.config, self.device = encoder, config, device

    @classmethod
    def unavailable_reason(cls, device: torch.device) -> str | None:
        """None when this runtime can run on `device` here, otherwise why not (shown to the user)."""
        if device.type not in cls.DEVICE_TYPES:
            return f"{cls.NAME} runs on {' or '.join(cls.DEVICE_TYPES)}, not {device.type}"
        if device.type == "cuda" and not torch.cuda.is_available():
            return "no CUDA GPU"
        for module, package in cls.REQUIRES:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install {package!r})"
        return None

    @abstractmethod
    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> the trunk's (B, C, h, w) feature map, any float dtype, on self.device."""

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.regions(self.trunk(images).float())

    def describe(self) -> str:
        return self.NAME

    VERIFY_BATCH = 3  # not a compiled runtime's example or optimal batch: a fixed-batch artefact fails here

    def verify(self) -> None:
        """One small inference right after the runtime is built, so a runtime that cannot run this model (a
        static-batch engine, a missing kernel, a wrong shape) fails here, where `auto` can still fall back,
        and not on the first request. Raises UnavailableError with the reason."""
        side, regions = self.config.image_size, self.config.encoded_size ** 2
        probe = torch.rand(self.VERIFY_BATCH, 3, side, side, generator=torch.Generator().manual_seed(0))
        try:
            out = self(probe.to(self.device))
        except Exception as exc:
            raise UnavailableError(f"encoder runtime {self.NAME} failed a test inference: "
                                   f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
        expected = (self.VERIFY_BATCH, regions, self.config.feature_dim)
        if tuple(out.shape) != expected or not bool(torch.isfinite(out).all()):
            raise UnavailableError(f"encoder runtime {self.NAME} gave a wrong test result: shape "
                                   f"{tuple(out.shape)} (expected {expected}), finite: {bool(torch.isfinite(out).all())}")


class TorchEncoder(EncoderRuntime):
    NAME = "torch"

    def __init__(self, encoder: Encoder, config: ModelConfig, device: torch.device):
        super().__init__(encoder, config, device)
        # channels_last: oneDNN's preferred layout on CPU (1.3x on ResNet-152 here), tensor cores' on GPU.
        self._trunk = encoder.require_trunk().to(device, memory_format=torch.channels_last)

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        return self._trunk(images.contiguous(memory_format=torch.channels_last))


class TorchBF16Encoder(TorchEncoder):
    NAME = "torch-bf16"

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            return super().trunk(images)


def _onnx_file(encoder: Encoder, config: ModelConfig) -> Path:
    """The trunk exported to ONNX with a dynamic batch axis, cached by its key."""
    path = cache_dir() / f"trunk-{config.backbone}-{encoder_key(encoder, config, 'onnx')}.onnx"
    if path.is_file():
        return path
    import io

    trunk = copy.deepcopy(encoder.require_trunk()).float().cpu().eval()
    example = torch.zeros(1, 3, config.image_size, config.image_size)
    buffer = io.BytesIO()
    # The TorchScript exporter: deprecated, but fast and complete for a ResNet trunk (10 s for ResNet-152 here).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(trunk, (example,), buffer, input_names=["images"], output_names=["fmap"],
                          dynamic_axes={"images": {0: "batch"}, "fmap": {0: "batch"}}, dynamo=False)
    write_atomic(path, buffer.getvalue())
    log.info("exported the encoder trunk to %s", path)
    return path


class OpenVINOEncoder(EncoderRuntime):
    NAME = "openvino"
    DEVICE_TYPES = ("cpu",)
    REQUIRES = (("openvino", "vidcap[cpu-accel]"),)
    PRECISION: ClassVar[str | None] = None  # None: OpenVINO's default for this CPU (bf16 where it is native)

    def __init__(self, encoder: Encoder, config: ModelConfig, device: torch.device):
        super().__init__(encoder, config, device)
        import openvino as ov

        properties = {"PERFORMANCE_HINT": "LATENCY"}  # one stream on all cores: a sync request per batch
        if self.PRECISION:
            properties["INFERENCE_PRECISION_HINT"] = self.PRECISION
        core = ov.Core()
        core.set_property({"CACHE_DIR": str(cache_dir() / "openvino")})  # compiled blobs: a later start loads them
        self._model = core.compile_model(self._network(ov, encoder, config), "CPU", properties)
        self._request = self._model.create_infer_request()
        self._lock = threading.Lock()  # an infer request serves one call at a time
        self.precision = self._model.get_property("INFERENCE_PRECISION_HINT").to_string()  # "bf16", "f32"

    def _network(self, ov, encoder: Encoder, config: ModelConfig) -> str:
        """The file OpenVINO compiles (it reads ONNX directly)."""
        return str(_onnx_file(encoder, config))

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        with self._lock:
            out = self._request.infer({0: images.detach().cpu().float().numpy()})
            return torch.from_numpy(np.array(out[0]))  # a copy: the request reuses its output buffer

    def describe(self) -> str:
        return f"{self.NAME} ({self.precision})"


class OpenVINOF32Encoder(OpenVINOEncoder):
    NAME = "openvino-f32"
    PRECISION = "f32"


class OpenVINOInt8Encoder(OpenVINOEncoder):
    """Post-training int8 quantisation with NNCF, calibrated on CALIBRATION_IMAGES rendered synthetic scenes
    (seeded, so the same model always gets the same quantised network). 2x OpenVINO bf16 on ResNet-152 here; the
    caption quality it costs is measured on the synthetic test split (docs/performance.md). Opt-in: `auto` never
    picks it. A model for another domain should be calibrated on its own frames."""

    NAME = "openvino-int8"
    REQUIRES = (("openvino", "vidcap[cpu-accel]"), ("nncf", "vidcap[cpu-accel]"))
    CALIBRATION_IMAGES = 64

    def _network(self, ov, encoder: Encoder, config: ModelConfig) -> str:
        key = encoder_key(encoder, config, f"int8-synthetic-{self.CALIBRATION_IMAGES}")
        path = cache_dir() / f"trunk-{config.backbone}-{key}.xml"
        if path.is_file():
            return str(path)
        import nncf

        from vidcap.preprocess import as_tensor, to_model_input
        from vidcap.synthetic import random_scene, render_scene

        rng = np.random.default_rng(0)
        calibration = [to_model_input(as_tensor(render_scene(random_scene(rng), 320, 180)), config.image_size)
                       .numpy() for _ in range(self.CALIBRATION_IMAGES)]
        log.info("quantising the encoder to int8 (once per model)...")
        network = ov.Core().read_model(super()._network(ov, encoder, config))
        quantised = nncf.quantize(network, nncf.Dataset(calibration), subset_size=self.CALIBRATION_IMAGES,
                                  preset=nncf.QuantizationPreset.PERFORMANCE)
        partial = path.with_name(f".partial-{os.getpid()}-{path.name}")  # unique: workers may race
        ov.save_model(quantised, str(partial))
        partial.with_suffix(".bin").replace(path.with_suffix(".bin"))
        partial.replace(path)
        return str(path)

    def describe(self) -> str:
        return f"{self.NAME} (int8, {self.precision} elsewhere)"


class ONNXRuntimeEncoder(EncoderRuntime):
    NAME = "onnxruntime"
    DEVICE_TYPES = ("cpu",)
    REQUIRES = (("onnxruntime", "vidcap[cpu-accel]"),)

    def __init__(self, encoder: Encoder, config: ModelConfig, device: torch.device):
        super().__init__(encoder, config, device)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self._session = ort.InferenceSession(str(_onnx_file(encoder, config)), options,
                                             providers=["CPUExecutionProvider"])

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._session.run(None, {"images": images.detach().cpu().float().numpy()})[0])


def export_with_dynamic_batch(trunk: torch.nn.Module, example: torch.Tensor, max_batch: int):
    """torch.export of a trunk with its batch axis dynamic, 1..max_batch -> (ExportedProgram, dynamic_shapes).
    What TensorRT compiles and what its saved engine is re-exported with: without the dynamic axis the saved
    program is specialised to the example's batch and every other batch size fails."""
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    dynamic_shapes = ({0: batch},)
    with torch.no_grad():
        return torch.export.export(trunk, (example,), dynamic_shapes=dynamic_shapes), dynamic_shapes


class TensorRTEncoder(EncoderRuntime):
    """Torch-TensorRT (dynamo, ahead of time), FP16 weights and inputs, batch 1..MAX_BATCH in one engine, saved
    as an ExportedProgram with the batch axis dynamic. In Torch-TensorRT 2.14 `enabled_precisions` is ignored on
    the dynamo path, hence half weights and inputs. Built, loaded and run on the captioner's own GPU (a
    TorchServe worker's may not be GPU 0)."""

    NAME = "tensorrt"
    DEVICE_TYPES = ("cuda",)
    REQUIRES = (("torch_tensorrt", "vidcap[gpu]"),)
    MAX_BATCH = 32
    OPT_BATCH = 8

    def __init__(self, encoder: Encoder, config: ModelConfig, device: torch.device):
        super().__init__(encoder, config, device)
        import torch_tensorrt

        gpu = torch.cuda.get_device_name(device).replace(" ", "_")
        key = encoder_key(encoder, config, f"trt-fp16-dyn-{torch_tensorrt.__version__}-{gpu}-{self.MAX_BATCH}")
        path = cache_dir() / f"trunk-{config.backbone}-{key}.ep"
        with torch.cuda.device(device):
            if not path.is_file():
                self._build(torch_tensorrt, path)
            self._module = torch.export.load(str(path)).module()

    def _build(self, torch_tensorrt, path: Path) -> None:
        side = self.config.image_size
        trunk = copy.deepcopy(self.encoder.require_trunk()).eval().half().to(self.device)
        example = torch.zeros(self.OPT_BATCH, 3, side, side, dtype=torch.half, device=self.device)
        exported, dynamic_shapes = export_with_dynamic_batch(trunk, example, self.MAX_BATCH)
        inputs = [torch_tensorrt.Input(min_shape=(1, 3, side, side), opt_shape=(self.OPT_BATCH, 3, side, side),
                                       max_shape=(self.MAX_BATCH, 3, side, side), dtype=torch.half)]
        log.info("building a TensorRT FP16 engine for the encoder (once per model and GPU)...")
        compiled = torch_tensorrt.dynamo.compile(exported, inputs=inputs)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".partial-{os.getpid()}-{path.name}")  # unique: workers may race
        torch_tensorrt.save(compiled, str(partial), output_format="exported_program", arg_inputs=[example],
                            dynamic_shapes=dynamic_shapes)
        partial.replace(path)

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        with torch.cuda.device(self.device):
            for start in range(0, len(images), self.MAX_BATCH):  # the engine's profile ends at MAX_BATCH
                out.append(self._module(images[start : start + self.MAX_BATCH].to(self.device).half()))
        return torch.cat(out)


ENCODER_RUNTIMES: dict[str, type[EncoderRuntime]] = {
    cls.NAME: cls for cls in (TorchEncoder, TorchBF16Encoder, OpenVINOEncoder, OpenVINOF32Encoder,
                              OpenVINOInt8Encoder, ONNXRuntimeEncoder, TensorRTEncoder)
}


def available_encoders(device: torch.device) -> dict[str, str | None]:
    """Every runtime -> None when usable on `device` here, else the reason it is not."""
    return {name: cls.unavailable_reason(device) for name, cls in ENCODER_RUNTIMES.items()}


def make_encoder(name: str, encoder: Encoder, config: ModelConfig, device: torch.device) -> EncoderRuntime:
    """The named runtime, or with "auto" the first usable one of AUTO_ORDER for the device. Every runtime but the
    PyTorch reference runs a test inference first (EncoderRuntime.verify): with "auto" one that fails is
    skipped with a warning, a named one is an UnavailableError."""
    if name == "auto":
        for candidate in AUTO_ORDER.get(device.type, ("torch",)):
            if ENCODER_RUNTIMES[candidate].unavailable_reason(device) is None:
                try:
                    return _built(ENCODER_RUNTIMES[candidate], encoder, config, device)
                except Exception as exc:  # a runtime that cannot take this model: the next one will
                    log.warning("encoder runtime %s failed to start (%s); trying the next one", candidate, exc)
        return TorchEncoder(encoder, config, device)
    if name not in ENCODER_RUNTIMES:
        raise UnavailableError(f"unknown encoder runtime {name!r}; choose auto or one of "
                                      f"{', '.join(ENCODER_RUNTIMES)}")
    reason = ENCODER_RUNTIMES[name].unavailable_reason(device)
    if reason:
        raise UnavailableError(f"encoder runtime {name} is not usable here: {reason}")
    return _built(ENCODER_RUNTIMES[name], encoder, config, device)


def _built(cls: type[EncoderRuntime], encoder: Encoder, config: ModelConfig, device: torch.device) -> EncoderRuntime:
    runtime = cls(encoder, config, device)
    if not isinstance(runtime, TorchEncoder):  # the reference needs no check, and is the last resort
        runtime.verify()
    return runtime
