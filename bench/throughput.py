"""Throughput benchmark: the old project's path, the encoder's ceiling, vidcap in-process and through the server
stack, and PySceneDetect, on the same video with the same ResNet-152 models, in one run; then whole processes.

    python bench/throughput.py                     # 60 s 1280x720 H.264 at one frame per second, 3 repeats
    python bench/throughput.py --quick             # 20 s of video, 1 repeat: a smoke run

Rows (sampled frames per second and video seconds per wall second, medians of the repeats):
  (a) the old project's path, re-created: OpenCV seeks to every sample, one frame at a time, PyTorch eager fp32,
      greedy decoding;
  (b) the encoder alone, at the best of every usable runtime and batch size (the ceiling);
  (c) vidcap in-process (`analyze`: PyAV keyframe-aware decoding, batches, the `auto` encoder, beam 3), and
      (c8) the same with the opt-in int8 encoder where OpenVINO + NNCF are installed;
  (d) vidcap through the server stack: gRPC + TorchServe (the worker decodes and captions);
  (e) PySceneDetect's ContentDetector on the same file (no captions: the cost of looking at every frame).
Rows a, c, c8 and d run with two ResNet-152 models (below): "worst" and "realistic".
Ratios: c/a, c/b, d/c, c/e (realtime factors). Targets on a 2-core CPU: c/a >= 5 (realistic model),
c/b >= 0.8, c/e >= 1.
Then the demo model through `vidcap analyze`'s path: the realtime factor at 1 fps on 720p (target >= 20), and
whole processes as a user runs them: `vidcap analyze` (demo model, one frame per second) against the
`scenedetect` CLI on a 40 s and a 10-minute 720p video (target: vidcap at least as fast).

Both ResNet-152 models have the `coco` preset's shape (14x14 regions, 512-d decoder) and the same encoder, with
random weights (no pretrained weights or COCO can be downloaded here) and batch-norm statistics set from
synthetic frames so the activations have a realistic scale. "worst": its untrained decoder never emits <end>, so
every caption runs to the 30-word cap. "realistic": its decoder trained briefly (400 steps, a few minutes, once;
cached) on synthetic scenes' captions over the frozen features, so it ends captions as a trained model does.
On a GPU (CUDA) the table adds TensorRT FP16 against eager.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from serving import bench_video, start_stack, stop_stack  # noqa: E402
from vidcap.captioner import DEMO_MODEL, Captioner  # noqa: E402
from vidcap.client import VidcapClient  # noqa: E402
from vidcap.encoders import available_encoders, make_encoder  # noqa: E402
from vidcap.model import CaptionModel, ModelConfig  # noqa: E402
from vidcap.preprocess import as_tensor, to_model_input  # noqa: E402
from vidcap.synthetic import random_scene, render_scene  # noqa: E402
from vidcap.video.opener import available_sources  # noqa: E402
from vidcap.video.novelty import CaptionedFrame, SeedScorer  # noqa: E402
from vidcap.analysis.session import analyze  # noqa: E402
from vidcap.video.pipeline import AnalysisParams  # noqa: E402
from vidcap.video.synth import random_segments, write_video  # noqa: E402
from vidcap.vocab import Vocabulary  # noqa: E402

CACHE = REPO / "bench" / ".cache"


def resnet152_model(path: Path, backbone: str = "resnet152") -> Path:
    """The coco-shaped model with random weights and batch-norm statistics taken from synthetic frames."""
    if path.is_file():
        return path
    from vidcap.synthetic import describe_scene

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    scenes = [random_scene(rng) for _ in range(64)]
    vocab = Vocabulary.build([describe_scene(s, rng, 5) for s in scenes])
    model = CaptionModel(ModelConfig(backbone=backbone), vocab)
    frames = torch.cat([to_model_input(as_tensor(render_scene(s, 320, 180)), model.config.image_size)
                        for s in scenes[:16]])
    for module in model.encoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batch
            module.reset_running_stats()
    model.encoder.train()
    with torch.no_grad():
        model.encoder(frames)
    model.eval().save(path)
    return path


def resnet152_realistic_model(path: Path, random_model: Path, scenes: int = 256, steps: int = 400) -> Path:
    """The same ResNet-152 encoder (random weights, the same batch-norm calibration) with a decoder trained briefly
    on synthetic scenes' captions over its frozen features: it has learnt the captions' grammar and to end them
    (about 10 words), so decoding costs what a trained model's does, not the 30-word worst case."""
    if path.is_file():
        return path
    from vidcap.model import caption_loss
    from vidcap.synthetic import describe_scene
    from vidcap.vocab import tokenize

    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    drawn = [random_scene(rng) for _ in range(scenes)]
    references = [[tokenize(c) for c in describe_scene(s, rng, 5)] for s in drawn]
    vocab = Vocabulary.build(c for refs in references for c in refs)
    worst = CaptionModel.from_checkpoint(random_model)
    model = CaptionModel(ModelConfig.from_dict(vars(worst.config)), vocab)
    model.encoder.load_state_dict(worst.encoder.state_dict())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).encoder.eval()
    with torch.no_grad():
        features = torch.cat([model.encoder(torch.cat([to_model_input(as_tensor(render_scene(s, 320, 180)),
                                                                      model.config.image_size) for s in batch]
                                                      ).to(device))
                              for batch in (drawn[i : i + 16] for i in range(0, scenes, 16))])
    optimizer = torch.optim.Adam(model.decoder.parameters(), lr=1e-3)
    model.decoder.train()
    for step in range(steps):
        rows = rng.integers(scenes, size=32)
        encoded = [vocab.encode(references[r][rng.integers(len(references[r]))]) for r in rows]
        captions = torch.zeros(len(rows), max(map(len, encoded)), dtype=torch.long)
        for i, ids in enumerate(encoded):
            captions[i, : len(ids)] = torch.tensor(ids)
        logits, alphas = model.decoder(features[torch.as_tensor(rows, device=device)], captions.to(device))
        loss, _ = caption_loss(logits, alphas, captions.to(device), alpha_c=1 / features.size(1))  # as the demo preset
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"  realistic ResNet-152 decoder: step {step}, loss {loss.item():.2f}", file=sys.stderr)
    model.cpu().eval().save(path)
    return path


def median_rate(run, repeats: int) -> tuple[float, list[float]]:
    """run() -> (items, seconds); the median of items/second over the repeats."""
    rates = []
    for _ in range(repeats):
        items, seconds = run()
        rates.append(items / seconds)
    return statistics.median(rates), rates


# ---- (a) the old project's path ------------------------------------------------------------------------------


def old_path(video: Path, model: CaptionModel, every: float) -> tuple[int, float]:
    """Like the old Flask server: cv2 seeks to each sample time, one frame through the eager fp32 encoder and
    greedy decoding, then the rolling mean-embedding distance."""
    import cv2

    start = time.perf_counter()
    capture = cv2.VideoCapture(str(video))
    duration = capture.get(cv2.CAP_PROP_FRAME_COUNT) / capture.get(cv2.CAP_PROP_FPS)
    scorer, n, t = SeedScorer(window=5, metric="euclidean"), 0, 0.0
    with torch.no_grad():
        while t < duration:
            capture.set(cv2.CAP_PROP_POS_MSEC, t * 1000)
            ok, bgr = capture.read()
            if not ok:
                break
            image = to_model_input(as_tensor(np.ascontiguousarray(bgr[:, :, ::-1])), model.config.image_size)
            caption = model.greedy(model.encoder(image))[0]
            scorer.push(CaptionedFrame(t, caption.words, caption.embeddings.numpy()))
            n, t = n + 1, t + every
    capture.release()
    return n, time.perf_counter() - start


# ---- (b) the encoder's ceiling -------------------------------------------------------------------------------


def encoder_ceiling(model: CaptionModel, device: torch.device, batches: list[int], repeats: int
                    ) -> tuple[str, int, float, dict]:
    """images/s of every usable runtime at every batch size -> (best runtime, best batch, its rate, all)."""
    rng = np.random.default_rng(1)
    pixels = [render_scene(random_scene(rng), 1280, 720) for _ in range(max(batches))]
    images = torch.cat([to_model_input(as_tensor(p).to(device), model.config.image_size) for p in pixels])
    table = {}
    for name, reason in available_encoders(device).items():
        if reason:
            table[name] = reason
            continue
        runtime = make_encoder(name, model.encoder, model.config, device)
        for batch in batches:
            x = images[:batch]
            runtime(x), runtime(x)  # warm-up: the first passes are 2.5-6 s outliers

            def run() -> tuple[int, float]:
                t = time.perf_counter()
                runtime(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                return batch, time.perf_counter() - t

            table[f"{name} @{batch}"] = median_rate(run, max(3, repeats))[0]
    rates = {k: v for k, v in table.items() if isinstance(v, float)}
    best = max(rates, key=rates.get)
    name, batch = best.split(" @")
    return name, int(batch), rates[best], table


def backbone_table(batches: list[int], repeats: int, device: torch.device) -> None:
    """Every usable encoder runtime on ResNet-101 and ResNet-152, side by side in one run (images/s, medians)."""
    print(f"machine: {machine()}", flush=True)
    tables = {}
    for backbone in ("resnet101", "resnet152"):
        model = CaptionModel.from_checkpoint(resnet152_model(CACHE / f"{backbone}-random.pt", backbone)).eval()
        tables[backbone] = encoder_ceiling(model.to(device), device, batches, repeats)[3]
    print(f"{'runtime @ batch':24s} {'ResNet-101':>11s} {'ResNet-152':>11s} {'101/152':>8s}  (images/s, 256x256)")
    for key in tables["resnet101"]:
        a, b = tables["resnet101"][key], tables["resnet152"].get(key)
        if isinstance(a, float) and isinstance(b, float):
            print(f"{key:24s} {a:11.2f} {b:11.2f} {a / b:8.2f}")
        else:
            print(f"{key:24s} not usable here: {a}")


# ---- (c), (d), (e) -------------------------------------------------------------------------------------------


def in_process(video: Path, captioner: Captioner, every: float) -> tuple[int, float]:
    t = time.perf_counter()
    analysis = analyze(captioner, video, AnalysisParams(every_n_seconds=every))
    return len(analysis.frames), time.perf_counter() - t


def through_torchserve(address: str, name: str, every: float) -> tuple[int, float]:
    with VidcapClient(address, timeout=3600) as client:
        t = time.perf_counter()
        frames = sum(r.WhichOneof("kind") == "frame" for r in client.analyze_path(name, every_n_seconds=every))
        return frames, time.perf_counter() - t


def scenedetect_rate(video: Path, duration: float) -> tuple[float, float]:
    """PySceneDetect's ContentDetector (defaults) over every frame -> (video seconds, wall seconds)."""
    from scenedetect import ContentDetector, detect

    t = time.perf_counter()
    detect(str(video), ContentDetector())
    return duration, time.perf_counter() - t


# ---- report ---------------------------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def whole_process(video: Path, repeats: int) -> dict[str, float]:
    """`vidcap analyze` (demo model, one frame per second) and the `scenedetect` CLI (ContentDetector, its
    defaults) as whole processes on one file, as a user runs them -> median wall seconds of each."""
    commands = {"vidcap": [sys.executable, "-m", "vidcap.cli", "analyze", str(video), "--every", "1",
                           "--no-progress"],
                "scenedetect": [str(Path(sys.executable).with_name("scenedetect")), "-i", str(video), "-q",
                                "detect-content"]}
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():  # interleaved: a slow minute of a shared machine hits both
            t = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=REPO, env={**os.environ, "PYTHONPATH":
                                                                                     str(REPO)})
            walls[name].append(time.perf_counter() - t)
    return {name: statistics.median(values) for name, values in walls.items()}


def whole_process_video(folder: Path, seconds: float) -> Path:
    """720p30 H.264 (x264 defaults), a scene every 6.7 s, cached."""
    video = folder / f"whole-{seconds:g}s-1280x720.mp4"
    if not video.exists():
        scenes = max(2, round(seconds / 6.7))
        write_video(video, random_segments(scenes, seed=4, min_seconds=seconds / scenes,
                                           max_seconds=seconds / scenes), fps=30, size=(1280, 720))
    return video


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--size", default="1280x720")
    p.add_argument("--every", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batches", default="1,4,8,16", help="batch sizes tried for the encoder ceiling")
    p.add_argument("--skip", default="", help="rows to leave out, e.g. d,e,whole")
    p.add_argument("--whole", default="40,600", help="video lengths in seconds for the whole-process rows")
    p.add_argument("--quick", action="store_true", help="20 s of video, 1 repeat, whole process on 40 s only")
    p.add_argument("--gpu-table", action="store_true",
                   help="what bench/gpu_check.sh prints: the encoder runtimes (eager vs TensorRT FP16), vidcap "
                        "in-process (DALI + TensorRT) with the realistic ResNet-152 and the demo model, and the "
                        "whole `analyze` process on 40 s; leaves out the old path, TorchServe and the in-process PySceneDetect row")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--resnet101", action="store_true",
                   help="only the encoder table of ResNet-101 (an imported PyTorch-tutorial model's encoder) and "
                        "ResNet-152 side by side: images/s of every usable runtime and batch size")
    args = p.parse_args()
    if args.quick:
        args.seconds, args.repeats, args.whole = 20, 1, "40"
    if args.gpu_table:
        args.skip, args.whole, args.batches = "a,c8,d,e", "40", "1,8,32"
    torch.set_num_threads(int(os.environ.get("VIDCAP_THREADS", str(min(os.cpu_count() or 1, 16)))))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.resnet101:
        return backbone_table([int(b) for b in args.batches.split(",")], args.repeats, device)
    media = CACHE / "throughput-media"
    video = bench_video(media, args.seconds, args.size)
    duration = args.seconds
    worst_path = resnet152_model(CACHE / "resnet152-random.pt")
    models = {"worst": worst_path,
              "realistic": resnet152_realistic_model(CACHE / "resnet152-realistic.pt", worst_path)}
    skip = set(args.skip.split(","))
    fps: dict[str, float] = {}
    words: dict[str, float] = {}
    auto_encoder = frame_source = ""
    print(f"machine: {machine()}", flush=True)

    for kind, model_path in models.items():
        if args.gpu_table and kind == "worst":  # the encoder ceiling still comes from the worst-case model
            model = CaptionModel.from_checkpoint(model_path).eval().to(device)
            best_name, best_batch, fps["b"], ceiling = encoder_ceiling(
                model, device, [int(b) for b in args.batches.split(",")], args.repeats)
            continue
        model = CaptionModel.from_checkpoint(model_path).eval().to(device)
        if "a" not in skip:
            fps[f"a {kind}"], _ = median_rate(lambda: old_path(video, model, args.every), args.repeats)
            print(f"(a, {kind}) done: {fps[f'a {kind}']:.2f} frames/s", flush=True)
        if kind == "worst":  # the encoder is the same in both models
            best_name, best_batch, fps["b"], ceiling = encoder_ceiling(
                model, device, [int(b) for b in args.batches.split(",")], args.repeats)
            print(f"(b) done: {best_name} at batch {best_batch}: {fps['b']:.2f} images/s", flush=True)
        captioner = Captioner(model, device=str(device))  # encoder "auto"
        words[kind] = statistics.mean(len(f.words) for f in analyze(captioner, video, AnalysisParams(
            every_n_seconds=args.every)).frames)  # also the warm-up (and the ONNX export / engine build, cached)
        fps[f"c {kind}"], _ = median_rate(lambda: in_process(video, captioner, args.every), args.repeats)
        auto_encoder = captioner.encoder.describe()
        frame_source = next(iter(available_sources()))  # what `auto` decodes with here: dali on a GPU
        print(f"(c, {kind}) done: {fps[f'c {kind}']:.2f} frames/s with {auto_encoder}, "
              f"{words[kind]:.1f} words a caption", flush=True)
        if "c8" not in skip and available_encoders(device).get("openvino-int8") is None:
            int8 = Captioner(model, device=str(device), encoder="openvino-int8")
            in_process(video, int8, args.every)
            fps[f"c8 {kind}"], _ = median_rate(lambda: in_process(video, int8, args.every), args.repeats)
            print(f"(c8, {kind}) done: {fps[f'c8 {kind}']:.2f} frames/s", flush=True)
        if "d" not in skip:
            proc, address = start_stack("torchserve", media, "--model", str(model_path))
            try:
                through_torchserve(address, video.name, args.every)  # warm-up
                fps[f"d {kind}"], _ = median_rate(lambda: through_torchserve(address, video.name, args.every),
                                                  args.repeats)
            finally:
                stop_stack(proc)
            print(f"(d, {kind}) done: {fps[f'd {kind}']:.2f} frames/s", flush=True)
    if "e" not in skip:
        realtime_e = statistics.median(duration / w for w in
                                       (scenedetect_rate(video, duration)[1] for _ in range(args.repeats)))
    demo = Captioner.load(DEMO_MODEL, device=str(device))
    in_process(video, demo, args.every)
    demo_fps, _ = median_rate(lambda: in_process(video, demo, args.every), args.repeats)
    whole = {}
    if "whole" not in skip:
        for seconds in (float(s) for s in args.whole.split(",")):
            whole[seconds] = whole_process(whole_process_video(media, seconds), args.repeats)
            print(f"(whole process, {seconds:g} s) done: {whole[seconds]}", flush=True)

    frames_per_video_second = 1 / args.every
    labels = {"a": "old path: OpenCV seek, batch 1, eager fp32, greedy",
              "b": f"encoder alone: {best_name}, batch {best_batch} (ceiling)",
              "c": f"vidcap in-process (analyze, auto encoder = {auto_encoder}, frame source {frame_source}, beam 3)",
              "c8": "vidcap in-process, encoder openvino-int8 (opt-in), beam 3",
              "d": "vidcap gRPC + TorchServe",
              "e": "PySceneDetect ContentDetector (no captions)"}
    realtime = {k: v / frames_per_video_second for k, v in fps.items()}
    if "e" not in skip:
        realtime["e"] = realtime_e
    print(f"\nThroughput: {duration:g} s {args.size} H.264 (30 fps, x264 defaults) at one frame every "
          f"{args.every:g} s; ResNet-152 (coco shape, random encoder weights): 'worst' = random decoder, every "
          f"caption {words.get('worst', 0):.0f} words; 'realistic' = decoder trained briefly on synthetic scenes, "
          f"{words.get('realistic', 0):.1f} words a caption; medians of {args.repeats}\n")
    print("| row | path | model | sampled frames/s | video s per wall s |\n|---|---|---|---|---|")
    for key in realtime:
        row, _, kind = key.partition(" ")
        rate = f"{fps[key]:.2f}" if key in fps else "-"
        print(f"| {row} | {labels[row]} | {kind or '-'} | {rate} | {realtime[key]:.2f} |")
    ratios = {}
    for num, den, target in (("c worst", "a worst", None), ("c realistic", "a realistic", 5.0),
                             ("c8 realistic", "a realistic", 5.0), ("c realistic", "b", 0.8),
                             ("d realistic", "c realistic", None), ("c realistic", "e", 1.0)):
        if num in realtime and den in realtime:
            ratios[f"{num} / {den}"] = realtime[num] / realtime[den]
            goal = f" (target >= {target:g})" if target else ""
            print(f"{num} / {den} = {ratios[f'{num} / {den}']:.2f}{goal}")
    print(f"\ndemo model, in-process, 1 frame every {args.every:g} s of {args.size}: {demo_fps:.1f} frames/s = "
          f"realtime x{demo_fps / frames_per_video_second:.1f} (target >= 20), encoder {demo.encoder.describe()}")
    if whole:
        print("\nwhole processes, 720p30 H.264, demo model at one frame per second vs `scenedetect detect-content`:")
        print("| video | vidcap analyze s | scenedetect s | vidcap speed / PySceneDetect's (target >= 1) |")
        print("|---|---|---|---|")
        for seconds, walls in whole.items():
            print(f"| {seconds:g} s | {walls['vidcap']:.2f} | {walls['scenedetect']:.2f} | "
                  f"{walls['scenedetect'] / walls['vidcap']:.2f}x |")
    print("\nencoder images/s by runtime and batch size:")
    for key, value in ceiling.items():
        print(f"  {key:22s} {value:.2f}" if isinstance(value, float) else f"  {key:22s} unavailable: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "args": vars(args), "fps": fps,
                                               "realtime": realtime, "ratios": ratios, "encoder": ceiling,
                                               "demo_fps": demo_fps, "words": words,
                                               "whole_process": {str(k): v for k, v in whole.items()}}, indent=1))


if __name__ == "__main__":
    main()
