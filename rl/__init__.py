"""The RL side: config, trainer, rollout, algorithms, checkpoints, memory planner."""
import logging

# transformers imports torchao (--optim adamw_8bit_bf16) whenever it is installed; on a machine without its CUDA
# build, torchao logs each extension it cannot load, and torch logs deprecation notes for torchao's enums. On a CPU
# with AVX-512 bf16, bitsandbytes logs that it found no Hugging Face `kernels` package for a 4-bit CPU matmul we never
# run. None of them concerns a run of ours.
for _name in ("torchao", "torch.utils._pytree", "bitsandbytes.backends.cpu.ops"):
    logging.getLogger(_name).setLevel(logging.ERROR)
