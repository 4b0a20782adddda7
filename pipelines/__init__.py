"""The ML of the app, without any UI: one package per task (`classification/`, `text/`,
`image/`), what they share in `core/`, and the task table that names them (`tasks.py`).
Progress and cancellation reach a pipeline as plain callbacks and a `threading.Event`."""
