"""File output shared by the bundle, its handlers and the scripts."""

from hermes_monai.io.atomic import atomic_path, write_json_atomic, write_text_atomic

__all__ = ["atomic_path", "write_json_atomic", "write_text_atomic"]
