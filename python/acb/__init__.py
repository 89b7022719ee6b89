"""acb, the AI computing broker: share GPUs between unmodified PyTorch processes.

`import acb` starts nothing and imports nothing heavy; `acb.enable()` joins
the process to a broker (starting an embedded local one when none answers).
"""

__version__ = "0.1.0"
