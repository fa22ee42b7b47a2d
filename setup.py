"""The package list, found rather than written by hand (pyproject.toml holds everything else): every package
under vidcap/, TorchServe's two top-level folders and the docs installed inside it (pyproject's package-dir)."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["vidcap", "vidcap.*"]) + ["vidcap.handlers", "vidcap.model_store", "vidcap.docs"])
