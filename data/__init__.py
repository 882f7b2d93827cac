"""Data: one `Sample` schema for every source; `load_dataset_by_name` dispatches `--data NAME`."""
from .loaders import DataError, load_dataset_by_name, load_fixture, load_image
from .sample import R1_SYSTEM_PROMPT, Sample, make_messages

__all__ = ["DataError", "load_dataset_by_name", "load_fixture", "load_image", "R1_SYSTEM_PROMPT", "Sample",
           "make_messages"]
