"""What every task shares: errors, typed parameters, config and registry, devices, the Hub,
ZeroGPU, the worker threads models run on, and the client of a remote app."""
