"""Offline sweep runner for the W&B sweep YAMLs in sweeps/ (no W&B server needed). See t5kit/sweep.py.

python sweep.py sweeps/glue_sst2.yaml --count 20
python sweep.py sweeps/glue_sst2.yaml --count 3 --launcher python --sweep_dir runs/sweeps/sst2
"""

import sys

from t5kit.sweep import main

if __name__ == "__main__":
    sys.exit(main())
