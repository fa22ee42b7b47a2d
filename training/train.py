"""Train a Show, Attend and Tell captioner: the script form of `vidcap train` (the code is vidcap.training).

    python training/train.py --preset demo
    torchrun --nproc_per_node 8 training/train.py --preset coco --data /data/coco   # multi-GPU (DDP)
"""

from vidcap.training.args import get_args_parser
from vidcap.training.train import main

if __name__ == "__main__":
    main(get_args_parser().parse_args())
