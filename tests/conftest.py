import os

# The scripts and t5kit are installed (`make setup`: pip install -e .); tests never reach the hub or W&B.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# absl's TestCase helpers (create_tempdir) read flags; pytest never parses them.
from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()
