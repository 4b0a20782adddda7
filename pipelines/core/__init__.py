"""What every task shares: errors, typed parameters, config and registry, devices, the Hub,
ZeroGPU, the worker threads models run on, and the client of a remote app. It knows no task
(it imports neither the task table nor a task package): what it needs of one is given to it
(`pipelines/studio.py` gives it the table's)."""
