"""The trainer's command line: ``python -m llmtrain.pretraining.train --data FILE --out DIR``.

The trainer itself is :mod:`llmtrain.pretraining.trainer`; ``--help`` lists the options, one per
field of :class:`~llmtrain.pretraining.TrainConfig`. Launched as
``torchrun --nproc_per_node=N -m llmtrain.pretraining.train ...``, the same command trains
data-parallel on N processes. (The package imports ``trainer``, not this module, so that
running it with ``python -m`` finds it freshly imported.)
"""

import sys

from .trainer import main

if __name__ == "__main__":
    sys.exit(main())
