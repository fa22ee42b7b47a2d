"""The Video tab's timeline, as HTML the page renders: the dissimilarity plot with a marker per moment, the moment
cards and the table of captions, linked by the page's script (TIMELINE_SCRIPT): a click on a marker, a point of the
plot, a card or a row moves the player there; while the video plays, a cursor on the plot follows it, and the card
of the moment and the row of the frame at the player's position are highlighted.

Plain strings from frames and moments, no Gradio: every element that stands for a time carries it in `data-t`,
which is all the script reads. Every text from the service is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from vidcap.video.novelty import Moment
from vidcap.video.pipeline import FrameResult

WIDTH, HEIGHT = 1000, 240  # the plot's viewBox; the page scales it to its column
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 26, 30  # margins inside the viewBox: axis labels and the markers' row
REASONS = {  # a moment's reason -> (colour, marker shape), one look per reason in the plot, the cards and the legend
    "cut": ("#d62728", "triangle"),
    "caption change": ("#1f77b4", "circle"),
    "visual change": ("#ff7f0e", "square"),
}
OTHER = ("#7f7f7f", "circle")


def _escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def _marker(shape: str, x: float, y: float, colour: str, size: float = 7.0) -> str:
    if shape == "triangle":  # points down at the moment
        return (f"<polygon points='{x - size:.1f},{y - size:.1f} {x + size:.1f},{y - size:.1f} {x:.1f},{y + size:.1f}'"
                f" fill='{colour}'/>")
    if shape == "square":
        return f"<rect x='{x - size * 0.8:.1f}' y='{y - size * 0.8:.1f}' width='{size * 1.6:.1f}' " \
               f"height='{size * 1.6:.1f}' fill='{colour}'/>"
    return f"<circle cx='{x:.1f}' cy='{y:.1f}' r='{size * 0.85:.1f}' fill='{colour}'/>"


def _ticks(span: float, count: int = 8) -> list[float]:
    """Round steps (1, 2, 5 x 10^k) with about `count` of them over span."""
    if span <= 0:
        return [0.0]
    raw = span / count
    step = min((m * 10 ** e for e in range(-2, 7) for m in (1, 2, 5) if m * 10 ** e >= raw), default=raw)
    return [i * step for i in range(int(span / step) + 1)]


def timeline_svg(frames: Sequence[FrameResult], moments: Sequence[Moment], duration: float,
                 note: str = "") -> str:
    """The dissimilarity over time with the moments marked: an SVG the page's script links to the player."""
    end = max(duration, frames[-1].t if frames else 0.0, 1e-6)
    top = max((f.score for f in frames), default=0.0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    x = lambda t: LEFT + plot_w * t / end  # noqa: E731
    y = lambda score: TOP + plot_h * (1 - score / (top * 1.05))  # noqa: E731
    parts = [f"<svg id='vc-plot' viewBox='0 0 {WIDTH} {HEIGHT}' data-end='{end:.4f}' data-left='{LEFT}' "
             f"data-width='{plot_w}' role='img' aria-label='dissimilarity over time with {len(moments)} moments' "
             f"preserveAspectRatio='none'>",
             f"<rect class='vc-area' x='{LEFT}' y='{TOP}' width='{plot_w}' height='{plot_h}' fill='#fafafa' "
             f"stroke='#ddd'/>"]
    for t in _ticks(end):
        parts.append(f"<line x1='{x(t):.1f}' y1='{TOP + plot_h}' x2='{x(t):.1f}' y2='{TOP + plot_h + 4}' "
                     f"stroke='#888'/><text x='{x(t):.1f}' y='{HEIGHT - 12}' text-anchor='middle' "
                     f"class='vc-axis'>{t:g}</text>")
    parts.append(f"<text x='{LEFT + plot_w / 2}' y='{HEIGHT - 1}' text-anchor='middle' class='vc-axis'>time (s)"
                 f"</text><text x='{LEFT - 6}' y='{TOP + 8}' text-anchor='end' class='vc-axis'>{top:.2g}</text>"
                 f"<text x='{LEFT - 6}' y='{TOP + plot_h}' text-anchor='end' class='vc-axis'>0</text>")
    for m in moments:
        colour, shape = REASONS.get(m.reason, OTHER)
        parts.append(f"<g class='vc-marker' data-t='{m.t:.4f}' data-reason='{_escape(m.reason)}' tabindex='0'>"
                     f"<title>{_escape(_moment_line(m))}</title>"
                     f"<line x1='{x(m.t):.1f}' y1='{TOP}' x2='{x(m.t):.1f}' y2='{TOP + plot_h}' "
                     f"stroke='{colour}' stroke-dasharray='4 3' stroke-width='1.5'/>"
                     f"<rect x='{x(m.t) - 9:.1f}' y='2' width='18' height='{TOP + plot_h}' fill='transparent'/>"
                     f"{_marker(shape, x(m.t), TOP - 12, colour)}</g>")
    if frames:
        points = " ".join(f"{x(f.t):.1f},{y(f.score):.1f}" for f in frames)
        parts.append(f"<polyline points='{points}' fill='none' stroke='#333' stroke-width='1.5' "
                     f"pointer-events='none'/>")
        if len(frames) <= 600:  # a dot per sample while they can be told apart
            parts += [f"<circle class='vc-point' data-t='{f.t:.4f}' cx='{x(f.t):.1f}' cy='{y(f.score):.1f}' r='3' "
                      f"fill='#333'><title>{f.t:.2f} s · {f.score:.3f} · {_escape(f.caption)}</title></circle>"
                      for f in frames]
    parts.append(f"<line id='vc-cursor' x1='{LEFT}' y1='{TOP}' x2='{LEFT}' y2='{TOP + plot_h}' stroke='#2ca02c' "
                 f"stroke-width='2' visibility='hidden' pointer-events='none'/></svg>")
    legend = " ".join(f"<span class='vc-key'><svg width='16' height='16' viewBox='0 0 16 16'>"
                      f"{_marker(shape, 8, 8, colour, 6)}</svg>{reason}</span>"
                      for reason, (colour, shape) in REASONS.items())
    caption = (f"{len(moments)} moment{'s' if len(moments) != 1 else ''}; click a marker or a point to play "
               f"from there" if frames else "The plot grows here while the frames are analysed.")
    return (f"<div class='vc-timeline'>{''.join(parts)}<div class='vc-legend'>{legend} "
            f"<span class='vc-hint'>{_escape(caption)}</span>{note}</div></div>")


def _moment_line(m: Moment) -> str:
    return f"{m.t:.2f} s · {m.reason} · {m.score:.2f} — {m.previous_caption or '(start)'} → {m.caption}"


def moment_cards(moments: Sequence[Moment], thumbnails: dict[float, str], waiting: bool) -> str:
    """A card per moment: its thumbnail (an image URL, written once), time, reason, score and the caption before
    and after, all of it readable."""
    if not moments:
        text = ("Moments appear here as soon as they are decided." if waiting else
                "No moments: nothing in this video is unlike what came before it.")
        return f"<div class='vc-cards vc-empty'>{text}</div>"
    cards = []
    for m in moments:
        colour, shape = REASONS.get(m.reason, OTHER)
        url = thumbnails.get(round(m.t, 4))
        image = (f"<img src='{_escape(url)}' alt='the frame at {m.t:.2f} s' loading='lazy'>" if url else
                 "<div class='vc-noimage'>no picture</div>")
        cards.append(f"<div class='vc-card' data-t='{m.t:.4f}' data-reason='{_escape(m.reason)}' tabindex='0'>"
                     f"{image}<div class='vc-card-text'>"
                     f"<div class='vc-card-head'><svg width='14' height='14' viewBox='0 0 16 16'>"
                     f"{_marker(shape, 8, 8, colour, 6)}</svg> <b>{m.t:.1f} s</b> · {_escape(m.reason)} · "
                     f"{m.score:.2f}</div><div class='vc-before'>{_escape(m.previous_caption or '(start)')}</div>"
                     f"<div class='vc-after'>→ {_escape(m.caption)}</div></div></div>")
    return f"<div class='vc-cards'>{''.join(cards)}</div>"


def caption_table(frames: Sequence[FrameResult], moments: Sequence[Moment], rows: int | None = None) -> str:
    """The captions, a row per sampled frame (the last `rows` while streaming)."""
    if not frames:
        return "<div class='vc-table vc-empty'>The captions appear here, a row per sampled frame.</div>"
    reasons = {m.index: m.reason for m in moments}
    shown = frames[-rows:] if rows else frames
    body = "".join(f"<tr data-t='{f.t:.4f}'><td>{f.t:.2f}</td><td>{f.score:.4f}</td><td>{_escape(f.caption)}</td>"
                   f"<td>{_escape(reasons.get(f.index, ''))}</td><td>{'reused' if f.reused else ''}</td></tr>"
                   for f in shown)
    more = f"<caption>the last {len(shown)} of {len(frames)} frames</caption>" if len(shown) < len(frames) else ""
    return (f"<div class='vc-table'><table>{more}<thead><tr><th>t (s)</th><th>score</th><th>caption</th>"
            f"<th>moment</th><th>still</th></tr></thead><tbody>{body}</tbody></table></div>")


TIMELINE_CSS = """
.vc-timeline svg#vc-plot { width: 100%; height: 240px; cursor: pointer; }
.vc-axis { font: 12px sans-serif; fill: #555; }
.vc-marker { cursor: pointer; }
.vc-marker:hover line, .vc-marker:focus line { stroke-width: 3; }
.vc-legend { font-size: 13px; color: #444; display: flex; gap: 14px; flex-wrap: wrap; align-items: center; }
.vc-key svg { vertical-align: middle; margin-right: 3px; }
.vc-cards { display: flex; flex-direction: column; gap: 8px; max-height: 560px; overflow-y: auto; }
.vc-card { display: flex; gap: 10px; padding: 6px; border: 1px solid #ddd; border-radius: 6px; cursor: pointer;
           background: #fff; color: #222; }
.vc-card:hover, .vc-card:focus { border-color: #888; }
.vc-card.vc-current { border-color: #2ca02c; box-shadow: 0 0 0 2px #2ca02c55; }
.vc-card img, .vc-noimage { width: 160px; height: 90px; object-fit: cover; border-radius: 4px; flex: none;
                            background: #eee; }
.vc-noimage { display: flex; align-items: center; justify-content: center; color: #777; font-size: 12px; }
.vc-card-text { font-size: 13px; line-height: 1.35; overflow-wrap: anywhere; }
.vc-before { color: #666; }
.vc-after { color: #111; font-weight: 600; }
.vc-empty { color: #666; padding: 12px; border: 1px dashed #ccc; border-radius: 6px; }
.vc-table { max-height: 360px; overflow-y: auto; }
.vc-table table { width: 100%; border-collapse: collapse; font-size: 13px; color: #222; }
.vc-table th { position: sticky; top: 0; background: #f3f3f3; text-align: left; }
.vc-table td, .vc-table th { padding: 3px 6px; border-bottom: 1px solid #eee; }
.vc-table tr[data-t] { cursor: pointer; }
.vc-table tr.vc-current td { background: #e6f4e6; }
.vc-field-error { color: #a40000; font-size: 14px; margin-top: 4px; }
.vc-field-error:empty { display: none; }
.vc-warning { color: #7a4d00; background: #fff4e0; border: 1px solid #f0c36d; padding: 8px 10px; border-radius: 6px; }
"""

# The links, by event delegation on the document: the page's HTML is replaced on every update, the handlers stay.
TIMELINE_SCRIPT = """
<script>
(() => {
  const player = () => document.querySelector('#video-input video');
  const seek = (t) => {
    const v = player();
    if (!v || !isFinite(t)) return;
    v.currentTime = t;
    v.play().catch(() => {});
    follow(t);
  };
  const plotTime = (svg, event) => {
    const box = svg.getBoundingClientRect(), width = +svg.dataset.width, left = +svg.dataset.left;
    const x = (event.clientX - box.left) * 1000 / box.width;
    return Math.max(0, Math.min(1, (x - left) / width)) * +svg.dataset.end;
  };
  const lastAtOrBefore = (elements, t) => {
    let found = null;
    for (const e of elements) { if (+e.dataset.t <= t + 1e-3) found = e; else break; }
    return found;
  };
  const mark = (container, t) => {
    if (!container) return;
    container.querySelectorAll('.vc-current').forEach((e) => e.classList.remove('vc-current'));
    const current = lastAtOrBefore(container.querySelectorAll('[data-t]'), t);
    if (!current) return;
    current.classList.add('vc-current');
    const box = container.querySelector('.vc-cards, .vc-table') || container;
    const outer = box.getBoundingClientRect(), inner = current.getBoundingClientRect();
    if (inner.top < outer.top || inner.bottom > outer.bottom) {  // scroll the list, never the page
      box.scrollTop += inner.top - outer.top - box.clientHeight / 3;
    }
  };
  const follow = (t) => {
    const svg = document.querySelector('#vc-plot'), cursor = document.querySelector('#vc-cursor');
    if (svg && cursor) {
      const x = +svg.dataset.left + +svg.dataset.width * Math.min(1, t / +svg.dataset.end);
      cursor.setAttribute('x1', x); cursor.setAttribute('x2', x); cursor.setAttribute('visibility', 'visible');
    }
    mark(document.querySelector('#moment-cards'), t);
    mark(document.querySelector('#captions'), t);
    document.body.dataset.playerTime = t.toFixed(3);
  };
  document.addEventListener('click', (event) => {
    const target = event.target.closest('#vc-plot [data-t], #moment-cards [data-t], #captions tr[data-t]');
    if (target) { seek(+target.dataset.t); return; }
    const svg = event.target.closest('#vc-plot');
    if (svg) seek(plotTime(svg, event));
  });
  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter') return;
    const target = event.target.closest && event.target.closest('.vc-marker, .vc-card');
    if (target) seek(+target.dataset.t);
  });
  // Media events do not bubble: listen while they are captured on the way down.
  document.addEventListener('timeupdate', (event) => {
    if (event.target === player()) follow(event.target.currentTime);
  }, true);
  document.addEventListener('seeked', (event) => {
    if (event.target === player()) follow(event.target.currentTime);
  }, true);
})();
</script>
"""
