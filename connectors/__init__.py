"""Customer-side platform connectors: wire format in and out, nothing else."""
