"""Does pre-training help? Fine-tune several models on several tasks with several seeds and compare them
(t5kit/suite.py has the details).

    python finetune_suite.py --models runs/pt random_init:runs/pt --tasks glue/sst2 glue/cola glue/rte superglue/cb \\
        --seeds 0 1 2 --config configs/finetune_cpu.yaml --set data_dir=DATA --suite_dir runs/suite
"""

import sys

from t5kit.suite import main

if __name__ == "__main__":
    sys.exit(main())
