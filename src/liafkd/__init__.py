"""liafkd: distil large object detectors into small ones (LIAF-KD and its rivals)."""

__version__ = "0.1.0"
