"""Classification tab: spam detection for one message."""

from __future__ import annotations

import gradio as gr

from pipelines.config import AppConfig
from pipelines.gpu import classification_seconds, on_gpu
from pipelines.registry import ModelRegistry
from ui.common import describe_model, model_dropdown, show_errors

EXAMPLES = [
    ["WINNER!! You have been selected to receive a £900 prize reward! To claim call 09061701461. Valid 12 hours only."],
    ["Hey, are we still on for dinner tonight? I can pick you up at 7."],
    ["Your parcel is waiting for delivery. Please confirm your address here: bit.ly/2xYz to avoid return."],
]


def build(config: AppConfig, registry: ModelRegistry) -> None:
    names = config.names("classification")
    default = config.entry("classification", names[0])

    @on_gpu(classification_seconds)  # ZeroGPU: a GPU for as long as the request needs; a no-op elsewhere
    @show_errors
    def classify(message: str, model_name: str, threshold: float, progress=gr.Progress(track_tqdm=True)):
        """Classify one SMS message as spam or ham.

        Returns the confidence of each class and the verdict at the given spam threshold.
        """
        classifier = registry.get("classification", model_name)
        result = classifier([message], threshold=threshold)[0]
        scores = result["scores"]
        verdict = f"**{result['label'].upper()}** — spam score {scores['spam']:.3f} (threshold {float(threshold):.2f})"
        if result["truncated"]:
            verdict += f"<br>Note: the message was longer than {classifier.max_length} tokens and was truncated."
        return scores, verdict

    def show_model(model_name: str):
        return describe_model(config.entry("classification", model_name))

    with gr.Tab("Classification", id="classification"):
        gr.Markdown("Spam detection with a fine-tuned transformer: paste a message, get ham or spam.")
        with gr.Row():
            with gr.Column(scale=3):
                message = gr.Textbox(label="Message", lines=4, placeholder="Paste an SMS or e-mail text…")
                with gr.Row():
                    model = model_dropdown(names)
                    threshold = gr.Slider(0.0, 1.0, value=default.defaults.threshold, step=0.01, label="Spam threshold")
                button = gr.Button("Classify", variant="primary")
                model_info = gr.Markdown(describe_model(default))
            with gr.Column(scale=2):
                label = gr.Label(label="Confidence per class", num_top_classes=2)
                verdict = gr.Markdown(label="Verdict")
        gr.Examples(EXAMPLES, inputs=[message], label="Examples")

        gr.on(
            [button.click, message.submit], classify, inputs=[message, model, threshold], outputs=[label, verdict],
            api_name="classify", concurrency_id="classification",
        )
        model.change(show_model, model, model_info, api_visibility="private", queue=False)
