"""Run small torch computations on one thread."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def one_torch_thread():
    """Run torch on one thread inside the block, and restore the setting after it.

    The tensors of the book's tiny models are far too small to gain from parallel kernels, and
    waking a second thread for every operation made a slider's training run up to ten times
    slower on a busy two-core machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
