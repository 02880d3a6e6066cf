"""dope_stream: synthetic data for DOPE-style pose estimation, rendered and streamed on the fly."""

__version__ = "0.1.0"
