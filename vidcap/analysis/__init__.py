"""One analysis and one way to the model, for every door.

- `hosts.py`: `ModelHost`, the declared interface of a model as the doors use it (caption an image, analyse a
  video file or a live source into frame results), and `InProcessHost`, the model in this process. The TorchServe
  host (vidcap/serving/hosts.py) implements the same interface.
- `session.py`: `AnalysisSession`, frame results in, moments out as they are decided (one moment picker), the
  summary and the domain at the end; `analyze`, a whole file through a model host and a session.
"""
