"""The package list, found rather than written by hand (pyproject.toml holds everything else): every package
under vidcap/, and TorchServe's two top-level folders installed inside it (pyproject's package-dir)."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["vidcap", "vidcap.*"]) + ["vidcap.handlers", "vidcap.model_store"])
