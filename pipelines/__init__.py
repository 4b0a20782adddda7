"""The ML of the app, without any UI: one package per task (`classification/`, `text/`,
`image/`), what they share in `core/` (which knows no task), the task table that names them
(`tasks.py`), and `studio.py`, which gives `core/` the table's tasks (the app's config schema,
registry and ZeroGPU durations).
Progress and cancellation reach a pipeline as plain callbacks and a `threading.Event`."""
