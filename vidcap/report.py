"""Writing an analysis out: JSON, CSV, a plot, and the text summary."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from pathlib import Path

from vidcap.video.pipeline import Analysis
from vidcap.wire import analysis_to_json


def to_json(analysis: Analysis) -> str:
    return json.dumps(analysis_to_json(analysis), indent=1)


def to_csv(analysis: Analysis) -> str:
    reasons = {m.index: m.reason for m in analysis.moments}
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["t", "score", "caption", "moment", "reason", "cut", "reused", "in_domain"])
    for f in analysis.frames:
        writer.writerow([f"{f.t:.4f}", f"{f.score:.6f}", f.caption, int(f.index in reasons), reasons.get(f.index, ""),
                         f"{f.cut:.4f}", int(f.reused), "" if f.in_domain is None else f"{f.in_domain:.4f}"])
    return buf.getvalue()


def to_png(analysis: Analysis) -> bytes:
    """Score over time, moments marked, their captions annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4.5), dpi=100)
    ax.plot([f.t for f in analysis.frames], [f.score for f in analysis.frames], color="#3465a4", lw=1.4,
            label=f"novelty ({analysis.params['scorer']}, {analysis.params['metric']})")
    top = max([f.score for f in analysis.frames] + [1e-9])
    for n, m in enumerate(analysis.moments):
        ax.axvline(m.t, color="#cc0000", alpha=0.35, lw=1)
        ax.plot([m.t], [m.score], "o", color="#cc0000")
        ax.annotate("\n".join(textwrap.wrap(m.caption, 28)), (m.t, m.score), xytext=(4, -4 - 18 * (n % 3)),
                    textcoords="offset points", fontsize=7, va="top", color="#a40000")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("dissimilarity")
    ax.set_ylim(0, top * 1.25)
    ax.set_title(f"{Path(analysis.video).name}: {len(analysis.moments)} moments")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def summary(analysis: Analysis) -> str:
    reused = sum(f.reused for f in analysis.frames)
    still = f" ({reused} still, caption reused)" if reused else ""
    lines = [f"{analysis.video}: {len(analysis.frames)} frames{still} over {analysis.duration:.1f} s analysed in "
             f"{analysis.seconds:.1f} s; {len(analysis.moments)} moments"]
    if analysis.domain is not None:
        lines.append(f"  {100 * analysis.domain.out_of_domain_share:.0f}% of the frames are outside the model's "
                     f"domain ({analysis.domain.trained_on})")
        if analysis.domain.warning():
            lines.append(f"WARNING: {analysis.domain.warning()}")
    for m in analysis.moments:
        lines.append(f"  {_clock(m.t)}  {m.reason:<14}  score {m.score:.3f}  {m.previous_caption or '(start)'}  ->  "
                     f"{m.caption}")
    return "\n".join(lines)


def _clock(t: float) -> str:
    minutes, seconds = divmod(t, 60)
    return f"{int(minutes):02d}:{seconds:05.2f}"
