"""The "loaded models" panel under the tabs: which models are in memory, where, and how much.

Shared by every tab: it reads the registry, so a model loaded, evicted (memory budget) or
unloaded (idle timeout) by any tab shows here. It refreshes itself every few seconds and
with its Refresh button (private events).
"""

from __future__ import annotations

import gradio as gr
import psutil

from ui.common import markdown_text
from ui.handlers import TabState, bind, handler

# Seconds between automatic refreshes while a page is open: soon after a generation or a
# classification ends, without polling the server much.
REFRESH_EVERY_S = 5.0


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def render(config, registry) -> str:
    """Markdown: one row per loaded model, the memory budget, the idle timeout, the process's memory."""
    loaded = registry.status()
    settings = config.settings
    total_mb = sum(m["memory_mb"] for m in loaded)
    idle = (
        f"unloaded after {settings.idle_unload_minutes:g} min unused"
        if settings.idle_unload_minutes > 0
        else "never unloaded when idle"
    )
    lines = [
        f"**Loaded models:** {len(loaded)} · {total_mb:,.0f} MB of the {settings.memory_budget_mb:,} MB budget "
        f"(least recently used evicted first; {idle}) · this process: {psutil.Process().memory_info().rss / 2**20:,.0f} MB resident",
    ]
    if not loaded:
        lines.append("\nNo model loaded yet: each loads on its first request.")
        return "\n".join(lines)
    lines += ["", "| task | model | device / dtype | weights | idle |", "|---|---|---|---|---|"]
    for m in reversed(loaded):  # most recently used first
        weights = f"{m['memory_mb']:,.0f}" if m["memory_mb"] >= 10 else f"{m['memory_mb']:.1f}"
        name = markdown_text(m["name"])  # a trained model's name is a visitor's
        lines.append(f"| {m['task']} | {name} | {m['placement']} | {weights} MB | {_duration(m['idle_s'])} |")
    return "\n".join(lines)


@handler(private=True)
def update(tab: TabState) -> str:
    return render(tab.config, tab.registry)


def build(demo: gr.Blocks, config, registry) -> gr.Markdown:
    with gr.Accordion("Loaded models", open=False):
        panel = gr.Markdown(render(config, registry))
        refresh = gr.Button("Refresh", size="sm")
    timer = gr.Timer(REFRESH_EVERY_S)
    # On page load too: the panel rendered when the app was built is stale for every page opened later.
    gr.on(
        [refresh.click, timer.tick, demo.load],
        bind(update, TabState(config, registry)),
        None,
        panel,
        api_visibility="private",
        queue=False,
        show_progress="hidden",
    )
    return panel
