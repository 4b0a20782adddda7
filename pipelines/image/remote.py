"""An image model served by another instance of this app (or a Space): its /generate_image."""

from __future__ import annotations

import threading
from dataclasses import asdict
from pathlib import Path

from pipelines.core.remote import GradioRemote
from pipelines.image.contract import ImageGenerator, ImageParams, PreviewCallback, StepCallback, denoising_steps


class GradioImageGenerator(GradioRemote, ImageGenerator):
    """`/generate_image` of a remote app: its PNGs read back as PIL images, its step progress
    relayed while polling."""

    endpoint = "/generate_image"
    task = "image"

    def generate(
        self,
        prompt: str,
        params: ImageParams,
        seeds: list[int],
        on_step: StepCallback,
        on_preview: PreviewCallback | None,
        stop: threading.Event,
        init=None,
    ) -> list:
        from gradio_client import handle_file
        from PIL import Image

        reported = []

        def relay_progress(status):
            for unit in status.progress_data or []:
                if unit.index is not None and unit.length:
                    reported.append((int(unit.index), int(unit.length)))
                    on_step(*reported[-1])

        arguments = asdict(params) | {"prompt": prompt, "seed": seeds[0], "preview_every": 0}  # previews stay remote
        # the initial image goes as the file the user gave; the remote converts it the same way
        arguments["init_image"] = handle_file(init.path) if init is not None else None
        job = self.submit(defaults=asdict(ImageParams()) | {"init_image": None}, **arguments)
        for _ in self.follow(job, stop, relay_progress):
            pass
        if stop.is_set():
            return []
        gallery, _details = self.result(job)
        total = denoising_steps(params)
        if reported[-1:] != [(total, total)]:
            on_step(total, total)  # a fast remote may finish between two polls
        images = []
        for item in gallery:
            path = item["image"] if isinstance(item, dict) else item
            with Image.open(path) as png:
                images.append(png.copy())
            Path(path).unlink(missing_ok=True)
        return images
