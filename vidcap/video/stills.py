"""Still frames: a sampled frame that shows what the last captioned frame showed, within sensor noise, takes that
frame's caption and features instead of running the encoder and beam search again.

Real footage is often still (a lecture, a parked camera, a slide). The test is deliberately strict, so that
nothing a viewer or the novelty scorer would notice is skipped over: the frame as the model sees it is averaged
over a GRID x GRID grid of cells, and every cell's mean, in every colour channel, must be within TOLERANCE grey
levels (of 255) of the last captioned frame's. Averaging a cell of the model's input (7x7 pixels and more) cuts
sensor noise about sevenfold, while a flash, a shake of a pixel, or a small object changing colour moves some
cell by tens of levels. The comparison is with the last *captioned* frame, not the previous sample, so a slow
drift adds up until it is captioned afresh.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

GRID = 16
TOLERANCE = 6.0  # grey levels; bench/novelty.py's "still" set measures what it saves, its other sets what it costs


def signature(pixels: np.ndarray | torch.Tensor, grid: int = GRID) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, grid, grid) cell means, on the frame's own device (a GPU frame stays there)."""
    if isinstance(pixels, torch.Tensor):
        image = pixels.float()
    else:  # a float copy: decoded frames may be read-only arrays
        image = torch.from_numpy(np.array(pixels, dtype=np.float32))
    image = image.permute(2, 0, 1).unsqueeze(0)
    return F.adaptive_avg_pool2d(image, grid)[0]


class StillFrames:
    """Follows one video's sampled frames in order and says which show nothing new since the last captioned one."""

    def __init__(self, tolerance: float = TOLERANCE, grid: int = GRID, anchor: torch.Tensor | None = None):
        self.tolerance, self.grid = tolerance, grid
        self.anchor = anchor  # the last captioned frame's signature (given: where a stopped analysis left it)

    def is_still(self, pixels: np.ndarray | torch.Tensor) -> bool:
        """True when this frame may reuse the last captioned frame's caption; False makes it the new reference
        (the caller must caption it)."""
        current = signature(pixels, self.grid)
        if self.anchor is not None:
            self.anchor = self.anchor.to(current.device)  # a resumed anchor comes from the CPU
            if float((current - self.anchor).abs().max()) <= self.tolerance:
                return True
        self.anchor = current
        return False
