"""phasegate: gated, resumable AWS cost-migration flows on Prefect."""

__version__ = "0.1.0"
