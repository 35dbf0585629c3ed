"""``interp-import``: a Hugging Face GPT-2 or GPT-NeoX (Pythia) folder as a browsable run.

discover.py (which folders are steps), config_map.py (config.json -> ModelConfig),
layouts.py (tensor names, shapes and the mapping to ours), weights.py (safetensors headers
checked, tensors read as float32), convert.py (one folder), series.py (a run written whole),
cli.py. docs/plans/hf-import.md has the research behind each mapping.
"""

from training.hf_import.convert import HFCheckpoint, load_hf_folder
from training.hf_import.errors import HFImportError
from training.hf_import.series import import_series

__all__ = ["HFCheckpoint", "HFImportError", "import_series", "load_hf_folder"]
