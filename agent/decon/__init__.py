"""decon: training-data decontamination on self-cleaning EC2 spot fleets."""

__version__ = "0.1.0"
