"""vidcap's own Prometheus metrics (TorchServe exports its own on its metrics port). Served at /metrics on the
HTTP API's port. Frames analysed per second is `rate(vidcap_frames_analysed_total[1m])`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

FRAMES = Counter("vidcap_frames_analysed", "Sampled video frames captioned and scored", ["api"])
VIDEOS_IN_FLIGHT = Gauge("vidcap_videos_in_flight", "Video analyses running now", ["api"])
MOMENTS = Counter("vidcap_moments_found", "Moments reported", ["api"])
IMAGES = Counter("vidcap_images_captioned", "Images captioned", ["api"])
ERRORS = Counter("vidcap_errors", "Requests that ended in an error, by kind", ["api", "kind"])
