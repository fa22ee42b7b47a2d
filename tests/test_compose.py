"""docker-compose.yml cannot run here (no Docker engine): check it against the code instead."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml

from vidcap.cli import build_parser

from conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
GPU = yaml.safe_load((REPO / "docker-compose.gpu.yml").read_text())
SERVE_DEFAULTS = build_parser().parse_args(["serve"])


def published(service: str) -> dict[int, str]:
    """container port -> host address"""
    out = {}
    for mapping in COMPOSE["services"][service]["ports"]:
        host, host_port, container_port = mapping.split(":")
        assert host_port == container_port
        out[int(container_port)] = host
    return out


def test_services_dockerfiles_and_copied_paths_exist():
    assert set(COMPOSE["services"]) == {"torchserve", "api", "ui"}
    for service in COMPOSE["services"].values():
        build = service["build"]
        dockerfile = REPO / build["context"] / build["dockerfile"]
        assert dockerfile.is_file()
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY ") and "--from=" not in line:
                for source in shlex.split(line)[1:-1]:
                    assert (REPO / build["context"] / source).exists(), source
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), source
            else:
                assert source in COMPOSE["volumes"]


def test_ports_are_loopback_only_and_agree_with_vidcap_serve():
    api = COMPOSE["services"]["api"]
    args = build_parser().parse_args(api["command"][1:])
    assert args.command == "serve" and args.model_host == "torchserve"
    assert (args.grpc_port, args.http_port) == (SERVE_DEFAULTS.grpc_port, SERVE_DEFAULTS.http_port) == (50051, 8888)
    assert published("api") == {50051: "127.0.0.1", 8888: "127.0.0.1"}
    properties = (REPO / "docker" / "torchserve.properties").read_text()
    port = lambda key: int(re.search(rf"^{key}=.*?(\d+)$", properties, re.M).group(1))  # noqa: E731
    base = SERVE_DEFAULTS.torchserve_port
    assert (port("inference_address"), port("management_address"), port("metrics_address")) == (base, base + 1, base + 2)
    assert published("torchserve") == {base: "127.0.0.1", base + 1: "127.0.0.1", base + 2: "127.0.0.1"}
    assert args.torchserve_url == f"http://torchserve:{base}"


def test_the_ui_service_talks_to_the_api_services_grpc_port():
    ui = build_parser().parse_args(COMPOSE["services"]["ui"]["command"][1:])
    api = build_parser().parse_args(COMPOSE["services"]["api"]["command"][1:])
    assert ui.command == "ui" and ui.grpc == f"api:{api.grpc_port}" and ui.host == "0.0.0.0"
    assert api.no_ui  # one UI, in its own service
    assert published("ui") == {ui.port: "127.0.0.1"} and ui.port == SERVE_DEFAULTS.ui_port == 7860
    assert "api" in COMPOSE["services"]["ui"]["depends_on"]


def test_shared_volumes_connect_the_services():
    ts, api = COMPOSE["services"]["torchserve"], COMPOSE["services"]["api"]
    ts_command, api_args = ts["command"], build_parser().parse_args(api["command"][1:])
    assert ts["working_dir"] == "/keys" and "keys:/keys:ro" in api["volumes"]  # TorchServe's key_file.json
    assert api_args.torchserve_key_file == "/keys/key_file.json"
    assert "media:/media" in ts["volumes"] and api_args.media_dir == "/media"
    assert ts["environment"]["VIDCAP_MEDIA_DIR"] == "/media"  # the worker reads uploads from the same folder
    config = ts_command[ts_command.index("--ts-config") + 1]
    assert any(v.endswith(f":{config}:ro") for v in ts["volumes"])
    assert "vidcap=vidcap.mar" in ts_command and "vidcap-video=vidcap-video.mar" in ts_command
    assert "vidcap archive --out /model_store" in (REPO / "docker" / "Dockerfile").read_text()


def test_the_image_installs_the_wheel_built_from_everything_the_build_needs():
    """The image's first stage builds the wheel from copied paths; they must be all that pyproject.toml and
    setup.py read (a package left out there would be left out of the image, as vidcap.library once was)."""
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    stage = dockerfile.split("FROM ")[1]
    copied = {Path(source).name for line in stage.splitlines() if line.startswith("COPY ")
              for source in shlex.split(line)[1:-1]}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = {"pyproject.toml", "setup.py", project["project"]["readme"], "vidcap",
              *project["tool"]["setuptools"]["package-dir"].values()}
    assert needed <= copied, needed - copied
    assert "pip wheel" in stage and '/dist/vidcap-*.whl)[serving,ui,cpu-accel]' in dockerfile
    assert not re.search(r"pip install[^\n]* \.(\s|$|\[)", dockerfile)  # never the source tree itself


def test_services_beyond_loopback_have_a_key_and_run_unprivileged():
    for name in ("api", "ui"):  # they listen on 0.0.0.0 inside their containers
        assert "VIDCAP_API_KEY" in COMPOSE["services"][name]["environment"]
        args = build_parser().parse_args(COMPOSE["services"][name]["command"][1:])
        assert {"localhost", "127.0.0.1"} <= set(args.allow_host)  # Host checked: no DNS rebinding
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert re.search(r"^USER vidcap$", dockerfile, re.M) and "cpu-accel" in dockerfile
    assert " -e " not in dockerfile  # an installed package, not the source tree


def test_gpu_override_reserves_a_gpu_for_torchserve_only():
    devices = GPU["services"]["torchserve"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert set(GPU["services"]) == {"torchserve"}
